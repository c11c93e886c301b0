"""The journal: releases, their steps, the production pointers, recovery.

Production is whatever this file says is promoted; targets are reconciled
against it, never the other way round. Every state change is one transaction
(`db.py`, which also keeps the audit trail of events), so the journal never
shows a half-finished change; the deploy lock is in `locks.py`, what a row means
in `records.py`. Statuses are written as their plain string values.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from agent.journal.db import owner_alive, owner_id
from agent.journal.locks import Locks
from agent.journal.records import (
    VERIFIED,
    WENT_LIVE,
    Production,
    Release,
    ReleaseStatus,
    Step,
    StepStatus,
    production_from_row,
    release_from_row,
    step_from_row,
)
from hooks.core.errors import FatalError

LOG_EXCERPT_CHARS = 8000


class Journal(Locks):
    """All reads and writes of the agent's state. Every write is one transaction."""

    # -------------------------------------------------------------- releases

    def new_release(self, *, environment: str, commit: str, branch: str, author: str,
                    message: str, retry_of: int | None = None) -> Release:
        with self.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO releases (environment, commit_sha, branch, author, message, status,"
                " created_at, retry_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (environment, commit, branch, author, message, ReleaseStatus.QUEUED, time.time(),
                 retry_of),
            )
            release_id = _inserted_id(cur)
            tx.event("release.queued", release_id, environment, detail=commit)
        return self.release(release_id)

    def record_skipped(self, *, environment: str, commit: str, branch: str, author: str,
                       message: str, superseded_by: str) -> Release:
        now = time.time()
        with self.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO releases (environment, commit_sha, branch, author, message, status,"
                " reason, created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (environment, commit, branch, author, message, ReleaseStatus.SKIPPED,
                 f"superseded by {superseded_by[:8]}", now, now),
            )
            release_id = _inserted_id(cur)
            tx.event("release.skipped", release_id, environment, detail=superseded_by)
        return self.release(release_id)

    def start_release(self, release_id: int) -> None:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE releases SET status = ?, started_at = ?, owner = ? WHERE id = ?",
                (ReleaseStatus.RUNNING, time.time(), owner_id(), release_id),
            )
            tx.event("release.started", release_id)

    def update_release(self, release_id: int, **fields: Any) -> None:
        allowed = {"worktree", "model_path", "model_fingerprint", "model_id", "model_reused",
                   "required_actions", "action_code_fingerprint", "image", "action_server"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown release fields: {sorted(unknown)}")
        encoded = {
            key: json.dumps(sorted(value) if key == "required_actions" else value)
            if key in {"required_actions", "action_server"} and value is not None else value
            for key, value in fields.items()
        }
        sets = ", ".join(f"{key} = ?" for key in encoded)
        with self.transaction() as tx:
            tx.execute(f"UPDATE releases SET {sets} WHERE id = ?", (*encoded.values(), release_id))

    def finish_release(self, release_id: int, status: ReleaseStatus, reason: str = "",
                       promote_environment: str | None = None) -> None:
        """Close a release; when promoting, move the production pointer in the same
        transaction, so the journal never shows a half-promoted release."""
        status = ReleaseStatus(status)  # a misspelt status fails here, not in a later query
        now = time.time()
        with self.transaction() as tx:
            tx.execute(
                "UPDATE releases SET status = ?, reason = ?, finished_at = ? WHERE id = ?",
                (status, reason, now, release_id),
            )
            if promote_environment is not None:
                tx.execute(
                    "INSERT INTO production (environment, release_id, since) VALUES (?, ?, ?)"
                    " ON CONFLICT (environment) DO UPDATE SET release_id = excluded.release_id,"
                    " since = excluded.since",
                    (promote_environment, release_id, now),
                )
            tx.event(f"release.{status}", release_id, promote_environment, detail=reason)

    def release(self, release_id: int) -> Release:
        row = self._db.execute("SELECT * FROM releases WHERE id = ?", (release_id,)).fetchone()
        if row is None:
            raise FatalError(f"no release {release_id} in the journal; `agent history` lists them")
        return release_from_row(row)

    def releases(self, limit: int = 50, status: ReleaseStatus | None = None) -> list[Release]:
        if status:
            rows = self._db.execute(
                "SELECT * FROM releases WHERE status = ? ORDER BY id DESC LIMIT ?",
                (ReleaseStatus(status), limit),
            )
        else:
            rows = self._db.execute("SELECT * FROM releases ORDER BY id DESC LIMIT ?", (limit,))
        return [release_from_row(row) for row in rows]

    def releases_of_commit(self, commit: str) -> list[Release]:
        rows = self._db.execute(
            "SELECT * FROM releases WHERE commit_sha = ? ORDER BY id", (commit,)
        )
        return [release_from_row(row) for row in rows]

    def last_release(self, environment: str | None = None) -> Release | None:
        """The newest release that was not merely skipped."""
        query = "SELECT * FROM releases WHERE status != ?"
        args: list[Any] = [ReleaseStatus.SKIPPED]
        if environment:
            query += " AND environment = ?"
            args.append(environment)
        row = self._db.execute(query + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return release_from_row(row) if row else None

    def in_flight(self) -> list[Release]:
        rows = self._db.execute(
            "SELECT * FROM releases WHERE status IN (?, ?) ORDER BY id",
            (ReleaseStatus.QUEUED, ReleaseStatus.RUNNING),
        )
        return [release_from_row(row) for row in rows]

    def last_failure(self) -> Release | None:
        row = self._db.execute(
            "SELECT * FROM releases WHERE status IN (?, ?) ORDER BY id DESC LIMIT 1",
            (ReleaseStatus.FAILED, ReleaseStatus.INTERRUPTED),
        ).fetchone()
        return release_from_row(row) if row else None

    def reusable_model(self, fingerprint: str) -> Release | None:
        """The newest release whose trained model has this fingerprint and still exists."""
        rows = self._db.execute(
            "SELECT * FROM releases WHERE model_fingerprint = ? AND model_path IS NOT NULL"
            " ORDER BY id DESC", (fingerprint,)
        )
        for row in rows:
            release = release_from_row(row)
            if release.model_path and Path(release.model_path).is_file():
                return release
        return None

    # ----------------------------------------------------------------- steps

    def start_step(self, release_id: int, name: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO steps (release_id, name, status, started_at)"
                " VALUES (?, ?, ?, ?)", (release_id, name, StepStatus.RUNNING, time.time()),
            )

    def finish_step(self, release_id: int, name: str, status: StepStatus, summary: str,
                    log: str) -> None:
        now = time.time()
        excerpt = log[-LOG_EXCERPT_CHARS:]
        with self.transaction() as tx:
            row = tx.execute(
                "SELECT started_at FROM steps WHERE release_id = ? AND name = ?",
                (release_id, name),
            ).fetchone()
            started = row["started_at"] if row else now
            tx.execute(
                "INSERT OR REPLACE INTO steps (release_id, name, status, started_at,"
                " finished_at, duration, summary, log_excerpt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (release_id, name, StepStatus(status), started, now, now - started, summary,
                 excerpt),
            )

    def steps(self, release_id: int) -> list[Step]:
        rows = self._db.execute(
            "SELECT * FROM steps WHERE release_id = ? ORDER BY started_at", (release_id,)
        )
        return [step_from_row(row) for row in rows]

    # ------------------------------------------------------------ production

    def production(self, environment: str) -> Production | None:
        row = self._db.execute(
            "SELECT * FROM production WHERE environment = ?", (environment,)
        ).fetchone()
        if row is None:
            return None
        return production_from_row(row)

    def production_release(self, environment: str) -> Release | None:
        pointer = self.production(environment)
        return self.release(pointer.release_id) if pointer else None

    def set_production(self, environment: str, release_id: int, *, kind: str, actor: str,
                       reason: str, pause: bool = False) -> None:
        """Move the production pointer (promote, rollback) in one transaction."""
        now = time.time()
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO production (environment, release_id, since, paused, paused_reason)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (environment) DO UPDATE SET"
                " release_id = excluded.release_id, since = excluded.since,"
                " paused = excluded.paused, paused_reason = excluded.paused_reason",
                (environment, release_id, now, int(pause), reason if pause else ""),
            )
            tx.execute(
                "UPDATE releases SET status = ?, reason = '', finished_at = COALESCE("
                "finished_at, ?) WHERE id = ? AND status = ?",
                (ReleaseStatus.PROMOTED, now, release_id, ReleaseStatus.STAGED),
            )
            tx.event(kind, release_id, environment, actor, reason)

    # The events that put a release live in an environment.
    WENT_LIVE = WENT_LIVE

    def was_live_in(self, release_id: int, environment: str) -> bool:
        """Whether `release_id` was ever live in `environment` (by its events; a
        journal from before the events were per environment: by its own row)."""
        marks = ",".join("?" * len(self.WENT_LIVE))
        row = self._db.execute(
            f"SELECT 1 FROM events WHERE release_id = ? AND environment = ? AND kind IN "
            f"({marks}) UNION SELECT 1 FROM releases WHERE id = ? AND environment = ? AND "
            "status = ? LIMIT 1",
            (release_id, environment, *self.WENT_LIVE, release_id, environment,
             ReleaseStatus.PROMOTED)).fetchone()
        return row is not None

    def was_verified_in(self, release_id: int, environment: str) -> bool:
        """Whether `release_id` passed its verification in `environment`."""
        row = self._db.execute(
            "SELECT 1 FROM events WHERE release_id = ? AND environment = ? AND kind = ? LIMIT 1",
            (release_id, environment, VERIFIED)).fetchone()
        return row is not None

    def previous_production(self, environment: str, before: int) -> Release | None:
        """The newest release older than `before` that was live in `environment`
        and whose model is still kept."""
        marks = ",".join("?" * len(self.WENT_LIVE))
        rows = self._db.execute(
            f"SELECT * FROM releases WHERE id < ? AND status = ? AND (environment = ? OR id IN"
            f" (SELECT release_id FROM events WHERE environment = ? AND kind IN ({marks})))"
            " ORDER BY id DESC",
            (before, ReleaseStatus.PROMOTED, environment, environment, *self.WENT_LIVE),
        )
        for row in rows:
            release = release_from_row(row)
            if release.model_path and Path(release.model_path).is_file():
                return release
        return None

    def set_paused(self, environment: str, paused: bool, reason: str, actor: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE production SET paused = ?, paused_reason = ? WHERE environment = ?",
                (int(paused), reason if paused else "", environment),
            )
            tx.event("production.paused" if paused else "production.resumed", None,
                     environment, actor, reason)

    # -------------------------------------------------------------- recovery

    def orphaned_releases(self) -> list[Release]:
        """Releases left `running` by an agent process that no longer exists, or by
        this very process (called between ticks, when none of ours can run)."""
        return [r for r in self.in_flight() if r.status is ReleaseStatus.RUNNING
                and (r.owner == owner_id() or not owner_alive(r.owner))]

    def mark_interrupted(self, release_id: int, reason: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE steps SET status = ?, finished_at = ?, summary = ? WHERE release_id = ?"
                " AND status = ?",
                (StepStatus.INTERRUPTED, time.time(), reason, release_id, StepStatus.RUNNING),
            )
            tx.execute(
                "UPDATE releases SET status = ?, reason = ?, finished_at = ? WHERE id = ?",
                (ReleaseStatus.INTERRUPTED, reason, time.time(), release_id),
            )
            tx.event("release.interrupted", release_id, detail=reason)
        # A lock held by the dead owner is stale by definition.
        with self.transaction() as tx:
            tx.execute("DELETE FROM locks WHERE owner = ?",
                       (self.release(release_id).owner,))

    def interrupt_stray_steps(self, reason: str) -> int:
        """Steps left `running` on a release that is not: a crashed `agent promote`
        or `rollback` ran them. Called under the deploy lock, when none can run."""
        with self.transaction() as tx:
            cursor = tx.execute(
                "UPDATE steps SET status = ?, finished_at = ?, summary = ? WHERE status = ?"
                " AND release_id IN (SELECT id FROM releases WHERE status != ?)",
                (StepStatus.INTERRUPTED, time.time(), reason, StepStatus.RUNNING,
                 ReleaseStatus.RUNNING),
            )
            return cursor.rowcount


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    """The id SQLite gave the row just inserted (always set after an INSERT)."""
    if cursor.lastrowid is None:
        raise FatalError("the journal did not return the new release's id")
    return cursor.lastrowid
