"""One small module per pipeline step.

Every step module has `NAME`, `LONG` (whether SIGTERM may abandon it midway)
and `run(ctx) -> Outcome`: it implements `agent.pipeline.Step`, and the typed
tables there make mypy check it. It raises StepFailed with a one-line summary
when the release must stop. Steps drive targets only through `ctx.targets`,
never knowing which target they talk to; the runner (`agent.runner`) journals,
logs and times them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import AgentConfig
from agent.journal import Journal, Release, StepStatus
from agent.repo import Mirror
from agent.targets.base import LogSink
from agent.targets.factory import Targets

PASSED, FAILED, SKIPPED = StepStatus.PASSED, StepStatus.FAILED, StepStatus.SKIPPED
REUSED, ABANDONED = StepStatus.REUSED, StepStatus.ABANDONED


class StepFailed(Exception):
    """The release stops here; `summary` says why in one line."""

    def __init__(self, summary: str, details: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.details = details


class Abandoned(BaseException):  # a control-flow signal, not an error
    """SIGTERM arrived during a long step; the step's subprocess is killed."""


@dataclass(frozen=True)
class Outcome:
    summary: str
    status: StepStatus = PASSED


@dataclass
class StepContext:
    config: AgentConfig
    journal: Journal
    mirror: Mirror
    targets: Targets
    release_id: int
    commit: str
    rasa_argv: list[str]
    log: LogSink
    worktree: Path = Path()
    production: Release | None = None  # what was in production when the release started
    notes: dict[str, str] = field(default_factory=dict)
    # Prefixes the journaled step names: `agent promote`/`rollback` run the switch
    # steps again on a release that already has rows for them, and its own rows
    # (and logs) from when it was released must not be overwritten.
    step_prefix: str = ""
    run_line: Callable[[str], None] | None = None
    environment: str = ""  # where the switch steps switch ("": the first environment)

    @property
    def environment_name(self) -> str:
        return self.environment or self.config.environments[0].name

    @property
    def release(self) -> Release:
        return self.journal.release(self.release_id)

    @property
    def models_dir(self) -> Path:
        return self.config.work_dir / "models"

    @property
    def timeout(self) -> float:
        return float(self.config["pipeline.step_timeout"])
