"""The two interfaces every deploy target implements.

Steps, the switch and the CLI drive targets only through these protocols,
which are each target's whole interface (mypy checks every concrete target
against its protocol in `factory.py`), so no caller knows whether it talks to a
local process, a Docker host over SSH, a Swarm service, a Rasa server or Rasa X.
No target imports another target or the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LogSink = Callable[[str], None]
"""Receives one plain line of progress; the caller redacts secrets."""

# What a server's `health()` says (agent/supervise.py watches them):
ALIVE = "alive"  # its process runs and it answered
SLOW = "slow"  # its process runs and accepts connections, but did not answer in time: busy
DEAD = "dead"  # its process is gone, or nothing accepts connections on its port


@dataclass(frozen=True)
class Health:
    """One server a target runs, as seen now. Only DEAD is ever restarted: a SLOW
    server still owns its port, and a second one there would die at bind."""

    part: str  # e.g. "rasa server", "front proxy", "action server", "forwarder"
    state: str  # ALIVE, SLOW or DEAD
    detail: str = ""


@dataclass(frozen=True)
class ActionServerSpec:
    """What to run as the action server of one release."""

    release_id: str
    commit: str
    worktree: Path
    required_actions: frozenset[str]
    image: str | None = None  # set by the build step for Docker targets
    digest: str | None = None


@dataclass(frozen=True)
class ActionServerDeployment:
    """A running action server, as the journal keeps it for rollback."""

    release_id: str
    url: str  # the webhook URL a Rasa server's action_endpoint points at
    served_actions: frozenset[str]
    handle: dict[str, str] = field(default_factory=dict)  # target-specific ids


class ActionServerTarget(Protocol):
    name: str

    @property
    def url(self) -> str:
        """The stable webhook URL a Rasa server's action_endpoint points at."""

    def deploy(self, spec: ActionServerSpec, log: LogSink) -> ActionServerDeployment:
        """Start the release beside the live one, switch only once /health
        answers and /actions lists every required action, then stop the old one.
        Raises DeployError and leaves the live server serving otherwise."""

    def live(self) -> ActionServerDeployment | None:
        """The deployment that serves now, read from the real server."""

    def served_actions(self) -> frozenset[str]:
        """Names listed by GET /actions of the live server."""

    def reactivate(self, deployment: ActionServerDeployment, log: LogSink) -> None:
        """Make a kept earlier deployment live again (rollback)."""

    def stop_all(self, log: LogSink) -> None:
        """Stop every server this target started on this host (`agent stop`); a
        target whose servers outlive the agent by design does nothing."""

    def health(self) -> list[Health]:
        """Each server this target runs on this host now (the live action server,
        the forwarder), quickly and without retries; [] when it runs none, or when
        something else restarts them (Docker's restart policy)."""

    def revive(self, log: LogSink) -> list[str]:
        """Start again the target's own plumbing that died (the forwarder); what
        it started. The live release's server comes back through `reactivate`
        (switch.revive picks the journal's production). DeployError if it can't."""

    def secrets(self) -> list[str]:
        """Values this target made or holds that must never be shown (redacted)."""


@dataclass(frozen=True)
class ModelRef:
    release_id: str
    model_id: str  # what the target reports as live once active (e.g. /status model_id)
    location: str  # path or URL the target loaded it from
    # The release's worktree: where the bot's endpoints.yml and credentials.yml
    # come from for a target that starts its own Rasa server ("" = none known).
    bot_dir: str = ""


class ModelTarget(Protocol):
    name: str

    def upload(self, release_id: str, model: Path, log: LogSink,
               bot_dir: Path | None = None) -> ModelRef:
        """Make the model file available to the server, without activating it.
        `bot_dir` is the release's worktree (its endpoints.yml/credentials.yml);
        a target that serves with its own fixed config ignores it."""

    def activate(self, ref: ModelRef, log: LogSink) -> None:
        """Make the uploaded model the live one (tag production)."""

    def live_model_id(self) -> str | None:
        """What the server reports as live now, or None if nothing is loaded.
        Raises DeployError when no server answers (a proxy's 503 included)."""

    def serves(self, ref: ModelRef) -> bool:
        """Whether `ref` is what serves now: its model and, for a target that
        serves the bot's own endpoints.yml/credentials.yml (`ref.bot_dir`), that
        config too, so a config-only change counts as a switch to undo.
        Raises DeployError when what serves can't be known (server down)."""

    def talk(self, sender: str, text: str) -> list[str]:
        """One message to the live bot as `sender`; its text replies (smoke test)."""

    def server_answers(self) -> bool:
        """Whether the server answers at all (doctor), without retries."""

    def ensure_server(self, log: LogSink) -> bool:
        """Start the server this target manages when it does not answer; True when
        it started it. A target that manages no server does nothing: False.
        Raises DeployError when a managed server can't be started."""

    def stop_all(self, log: LogSink) -> None:
        """Stop the server this target started (`agent stop`); else nothing."""

    def health(self) -> list[Health]:
        """Each server this target manages (the live Rasa server, the front
        proxy), quickly and without retries; [] for a server it does not manage
        or before anything was started. A dead one comes back through
        `ensure_server`/`activate` (switch.revive), never while one is SLOW."""

    def secrets(self) -> list[str]:
        """Values this target made or holds that must never be shown (redacted)."""


class DeployError(Exception):
    """A target could not do what was asked; the live state is unchanged."""
