"""The one way a step runs: journaled, logged, timed, with its kill points.

`run_step` records the step's start and result in the journal, writes its full
log under `logs/release-N/<step>.log`, drops the noise Rasa's dependencies print,
redacts every line, turns any failure into `ReleaseStopped` and marks the kill
points `step.<name>.start` / `.end`. The release runner and the switch both
run their steps here, so a gate and a switch look the same in `agent logs`.
"""

from __future__ import annotations

import re

from agent import faults
from agent.journal import StepStatus
from agent.pipeline import Step
from agent.runtime import Agent
from agent.steps import ABANDONED, FAILED, Abandoned, StepContext, StepFailed
from hooks.core.child_env import commit_environment, passed_env
from hooks.core.errors import FatalError


class ReleaseStopped(Exception):
    """A step failed: the release (or the promotion) stops at `step`."""

    def __init__(self, step: str, summary: str) -> None:
        super().__init__(f"{step}: {summary}")
        self.step = step
        self.summary = summary


def run_step(agent: Agent, ctx: StepContext, step: Step) -> None:
    journal, progress = agent.journal, agent.progress
    name = ctx.step_prefix + step.NAME
    if agent.stop_requested and step.LONG:
        raise Abandoned()  # a deploy switch, once begun, is finished instead
    lines: list[str] = []
    noise = NoiseFilter()

    def log(line: str) -> None:
        if noise.drop(line):
            return
        clean = progress.redact(line)
        lines.append(clean)
        progress.line(clean)

    ctx.log = log
    journal.start_step(ctx.release_id, name)
    faults.kill_point(f"step.{name}.start")
    progress.step_started(ctx.release_id, name)
    failure: str | None = None
    status, summary = FAILED, ""
    try:
        # Set inside the try: an Abandoned (SIGTERM, or the supersede guard's
        # signal) is raised only while the step waits for its child process
        # (hooks/core/interrupt.py), and then still finishes the step's row.
        agent.in_long_step = step.LONG
        # Steps run the commit's code (custom components, action code): what
        # they start gets none of the agent's variables, its secrets included,
        # only those `pipeline.env` names for the bot.
        with commit_environment(passed_env(ctx.config["pipeline.env"])):
            outcome = step.run(ctx)
        status, summary = outcome.status, outcome.summary
    except StepFailed as exc:
        failure = exc.summary
    except FatalError as exc:
        failure = str(exc)
    except Abandoned as exc:  # SIGTERM, or Superseded: a newer commit arrived
        agent.in_long_step = False
        why = str(exc) or "the agent was asked to stop"
        finish_step(agent, ctx, name, ABANDONED, f"abandoned: {why}", lines)
        raise
    except Exception as exc:  # a bug must not leave the release `running`
        failure = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        agent.in_long_step = False
    if failure is not None:
        summary = progress.redact(failure)
        finish_step(agent, ctx, name, FAILED, summary, lines)
        raise ReleaseStopped(name, summary)
    finish_step(agent, ctx, name, status, summary, lines)
    faults.kill_point(f"step.{name}.end")


class NoiseFilter:
    """Drops the Python warnings Rasa's dependencies print on every start-up
    (a `file.py:N: SomeWarning: ...` line and the source line under it), so
    that logs and journal excerpts keep what matters."""

    WARNING = re.compile(r"^\S.*\.py:\d+: \w*(Warning|Deprecated)\w*:")
    KNOWN = ("Implementing implicit namespace packages", "declare_namespace(pkg)")

    def __init__(self) -> None:
        self._after_warning = False

    def drop(self, line: str) -> bool:
        if self.WARNING.search(line):
            self._after_warning = True
            return True
        if self._after_warning and line[:1].isspace():
            return True
        self._after_warning = False
        return any(known in line for known in self.KNOWN)


def finish_step(agent: Agent, ctx: StepContext, name: str, status: StepStatus, summary: str,
                lines: list[str]) -> None:
    text = "\n".join(lines)
    log_dir = agent.config.work_dir / "logs" / f"release-{ctx.release_id}"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{name}.log").write_text(text + "\n", encoding="utf-8")
    except OSError as exc:  # a full disk must not hide the step's verdict
        text += f"\n(could not write the full log: {exc.strerror})"
    agent.journal.finish_step(ctx.release_id, name, status, summary, text)
    step = next(s for s in agent.journal.steps(ctx.release_id) if s.name == name)
    agent.progress.step_finished(ctx.release_id, name, status, step.duration or 0.0, summary)
