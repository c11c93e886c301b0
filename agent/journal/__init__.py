"""The journal: the agent's SQLite record of releases, steps, production and events.

`store.Journal` does every read and write; `records` says what a row means
(status Enums, Release, Step, Production, Event); `locks` holds the named
locks; `db` is the SQLite plumbing and the audit trail of events.
Everything else imports from here, so the split stays an inner detail.

The bare status names (`PROMOTED`, `FAILED`, ...) are kept as the Enum members
they now are, so code written against the old string constants still compares,
formats and stores the same values.
"""

from __future__ import annotations

from agent.journal.db import owner_alive, owner_id
from agent.journal.locks import LockHeld
from agent.journal.records import (
    FINAL,
    Event,
    Production,
    Release,
    ReleaseStatus,
    Step,
    StepStatus,
)
from agent.journal.store import LOG_EXCERPT_CHARS, Journal

QUEUED = ReleaseStatus.QUEUED
RUNNING = ReleaseStatus.RUNNING
PROMOTED = ReleaseStatus.PROMOTED
FAILED = ReleaseStatus.FAILED
SKIPPED = ReleaseStatus.SKIPPED
INTERRUPTED = ReleaseStatus.INTERRUPTED
STAGED = ReleaseStatus.STAGED
SUPERSEDED = ReleaseStatus.SUPERSEDED

__all__ = [
    "FAILED", "FINAL", "INTERRUPTED", "LOG_EXCERPT_CHARS", "PROMOTED", "QUEUED", "RUNNING",
    "SKIPPED", "STAGED", "SUPERSEDED", "Event", "Journal", "LockHeld", "Production", "Release",
    "ReleaseStatus", "Step", "StepStatus", "owner_alive", "owner_id",
]
