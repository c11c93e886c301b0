"""What the journal holds, as typed records: statuses, releases, steps, events.

The store (`store.py`) writes and reads SQLite; this module says what a row
means. Statuses are Enums so a typo is a mypy error instead of a release that
never matches, and `str` Enums so SQLite, JSON and the screen keep seeing the
same plain words (`promoted`, `passed`) they always saw.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from enum import Enum
from typing import Any


class _Status(str, Enum):
    """A status that prints, formats and serialises as its plain value.

    Python 3.10 formats a `str` Enum member as `ReleaseStatus.PROMOTED` in
    f-strings; the journal's event kinds (`release.{status}`), the CLI's tables
    and every log line need `promoted`.
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ReleaseStatus(_Status):
    """Where a release stands. `queued` and `running` are the only non-final
    states; a `running` release whose owner is gone is what a crash leaves."""

    QUEUED = "queued"
    RUNNING = "running"
    PROMOTED = "promoted"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    STAGED = "staged"
    SUPERSEDED = "superseded"


class StepStatus(_Status):
    """How one step of a release ended (`running` while it runs; `interrupted`
    when its agent died under it)."""

    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    REUSED = "reused"
    ABANDONED = "abandoned"
    INTERRUPTED = "interrupted"


# Events that are records, not news: where a release went live, was verified,
# or waits for an environment. Rollback (`was_live_in`, `previous_production`)
# and promotion through the environments (agent/placement.py) decide by them,
# so pruning the journal (`journal.keep_events`) never deletes them; there are a
# few per release.
WENT_LIVE = ("release.promoted", "production.promoted", "production.rolled_back")
VERIFIED = "release.verified"
WAITING = "release.waiting"
RECORD_KINDS = frozenset({*WENT_LIVE, VERIFIED, WAITING})

FINAL = frozenset({ReleaseStatus.PROMOTED, ReleaseStatus.FAILED, ReleaseStatus.SKIPPED,
                   ReleaseStatus.STAGED, ReleaseStatus.SUPERSEDED})


@dataclass(frozen=True)
class Step:
    release_id: int
    name: str
    status: StepStatus
    started_at: float
    finished_at: float | None
    duration: float | None
    summary: str
    log_excerpt: str


@dataclass(frozen=True)
class Release:
    id: int
    environment: str
    commit: str
    branch: str
    author: str
    message: str
    status: ReleaseStatus
    reason: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    owner: str
    retry_of: int | None
    worktree: str | None
    model_path: str | None
    model_fingerprint: str | None
    model_id: str | None
    model_reused: bool
    required_actions: tuple[str, ...]
    action_code_fingerprint: str | None
    image: str | None
    action_server: dict[str, Any] | None

    @property
    def short(self) -> str:
        return self.commit[:8]

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: statuses as their strings, actions as a list."""
        data = dict(self.__dict__)
        data["status"] = str(self.status)  # the plain word, also for a hand-made record
        data["required_actions"] = list(self.required_actions)
        return data


@dataclass(frozen=True)
class Production:
    environment: str
    release_id: int
    since: float
    paused: bool
    paused_reason: str


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    kind: str
    release_id: int | None
    environment: str | None
    actor: str
    detail: str


def release_from_row(row: sqlite3.Row) -> Release:
    actions = json.loads(row["required_actions"]) if row["required_actions"] else []
    server = json.loads(row["action_server"]) if row["action_server"] else None
    return Release(
        id=row["id"], environment=row["environment"], commit=row["commit_sha"],
        branch=row["branch"], author=row["author"], message=row["message"],
        status=ReleaseStatus(row["status"]), reason=row["reason"],
        created_at=row["created_at"], started_at=row["started_at"],
        finished_at=row["finished_at"], owner=row["owner"], retry_of=row["retry_of"],
        worktree=row["worktree"], model_path=row["model_path"],
        model_fingerprint=row["model_fingerprint"], model_id=row["model_id"],
        model_reused=bool(row["model_reused"]), required_actions=tuple(actions),
        action_code_fingerprint=row["action_code_fingerprint"], image=row["image"],
        action_server=server,
    )


def step_from_row(row: sqlite3.Row) -> Step:
    fields = dict(row)
    fields["status"] = StepStatus(fields["status"])
    return Step(**fields)


def production_from_row(row: sqlite3.Row) -> Production:
    return Production(row["environment"], row["release_id"], row["since"],
                      bool(row["paused"]), row["paused_reason"])


def event_from_row(row: sqlite3.Row) -> Event:
    return Event(**dict(row))
