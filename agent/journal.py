"""The journal: SQLite (WAL), one transaction per state change.

It holds releases and their steps, a production pointer per environment, the
deploy lock and an audit trail of events. Production is whatever this file
says is promoted; targets are reconciled against it, never the other way round.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooks.core.errors import FatalError

SCHEMA_VERSION = 1
LOG_EXCERPT_CHARS = 8000

# Release states. `running` is the only non-final one besides `queued`; a
# `running` release whose owner is gone is what a crash leaves behind.
QUEUED, RUNNING, PROMOTED, FAILED, SKIPPED, INTERRUPTED, STAGED, SUPERSEDED = (
    "queued", "running", "promoted", "failed", "skipped", "interrupted", "staged", "superseded"
)
FINAL = {PROMOTED, FAILED, SKIPPED, STAGED, SUPERSEDED}

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    branch TEXT NOT NULL,
    author TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    owner TEXT NOT NULL DEFAULT '',
    retry_of INTEGER,
    worktree TEXT,
    model_path TEXT,
    model_fingerprint TEXT,
    model_id TEXT,
    model_reused INTEGER NOT NULL DEFAULT 0,
    required_actions TEXT,
    action_code_fingerprint TEXT,
    image TEXT,
    action_server TEXT
);
CREATE INDEX IF NOT EXISTS releases_commit ON releases (commit_sha);
CREATE TABLE IF NOT EXISTS steps (
    release_id INTEGER NOT NULL REFERENCES releases (id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    duration REAL,
    summary TEXT NOT NULL DEFAULT '',
    log_excerpt TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (release_id, name)
);
CREATE TABLE IF NOT EXISTS production (
    environment TEXT PRIMARY KEY,
    release_id INTEGER NOT NULL REFERENCES releases (id),
    since REAL NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    paused_reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    purpose TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    release_id INTEGER,
    environment TEXT,
    actor TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
"""


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    """Whether the process named by `host:pid` still runs (same host only)."""
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return host != socket.gethostname()  # another host: assume alive, never steal
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Step:
    release_id: int
    name: str
    status: str
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
    status: str
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
        data = dict(self.__dict__)
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


def _release(row: sqlite3.Row) -> Release:
    actions = json.loads(row["required_actions"]) if row["required_actions"] else []
    server = json.loads(row["action_server"]) if row["action_server"] else None
    return Release(
        id=row["id"], environment=row["environment"], commit=row["commit_sha"],
        branch=row["branch"], author=row["author"], message=row["message"],
        status=row["status"], reason=row["reason"], created_at=row["created_at"],
        started_at=row["started_at"], finished_at=row["finished_at"], owner=row["owner"],
        retry_of=row["retry_of"], worktree=row["worktree"], model_path=row["model_path"],
        model_fingerprint=row["model_fingerprint"], model_id=row["model_id"],
        model_reused=bool(row["model_reused"]), required_actions=tuple(actions),
        action_code_fingerprint=row["action_code_fingerprint"], image=row["image"],
        action_server=server,
    )


class Journal:
    """All reads and writes of the agent's state. Every write is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(DDL)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
        except sqlite3.DatabaseError as exc:
            raise FatalError(f"{self.path}: cannot open the journal: {exc}") from None
        except OSError as exc:
            raise FatalError(f"{self.path}: cannot create the journal: {exc.strerror}") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """BEGIN IMMEDIATE ... COMMIT; a crash or an error leaves nothing half-written."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise FatalError(f"{self.path}: journal is busy or unwritable: {exc}") from None
        try:
            yield _Tx(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # e.g. disk full
                self._db.execute("ROLLBACK")
                raise FatalError(f"{self.path}: cannot write the journal: {exc}") from None

    # -------------------------------------------------------------- releases

    def new_release(self, *, environment: str, commit: str, branch: str, author: str,
                    message: str, retry_of: int | None = None) -> Release:
        with self.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO releases (environment, commit_sha, branch, author, message, status,"
                " created_at, retry_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (environment, commit, branch, author, message, QUEUED, time.time(), retry_of),
            )
            release_id = int(cur.lastrowid)
            tx.event("release.queued", release_id, environment, detail=commit)
        return self.release(release_id)

    def record_skipped(self, *, environment: str, commit: str, branch: str, author: str,
                       message: str, superseded_by: str) -> Release:
        now = time.time()
        with self.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO releases (environment, commit_sha, branch, author, message, status,"
                " reason, created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (environment, commit, branch, author, message, SKIPPED,
                 f"superseded by {superseded_by[:8]}", now, now),
            )
            release_id = int(cur.lastrowid)
            tx.event("release.skipped", release_id, environment, detail=superseded_by)
        return self.release(release_id)

    def start_release(self, release_id: int) -> None:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE releases SET status = ?, started_at = ?, owner = ? WHERE id = ?",
                (RUNNING, time.time(), owner_id(), release_id),
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

    def finish_release(self, release_id: int, status: str, reason: str = "",
                       promote_environment: str | None = None) -> None:
        """Close a release; when promoting, move the production pointer in the same
        transaction, so the journal never shows a half-promoted release."""
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
        return _release(row)

    def releases(self, limit: int = 50, status: str | None = None) -> list[Release]:
        if status:
            rows = self._db.execute(
                "SELECT * FROM releases WHERE status = ? ORDER BY id DESC LIMIT ?", (status, limit)
            )
        else:
            rows = self._db.execute("SELECT * FROM releases ORDER BY id DESC LIMIT ?", (limit,))
        return [_release(row) for row in rows]

    def releases_of_commit(self, commit: str) -> list[Release]:
        rows = self._db.execute(
            "SELECT * FROM releases WHERE commit_sha = ? ORDER BY id", (commit,)
        )
        return [_release(row) for row in rows]

    def last_release(self, environment: str | None = None) -> Release | None:
        """The newest release that was not merely skipped."""
        query = "SELECT * FROM releases WHERE status != ?"
        args: list[Any] = [SKIPPED]
        if environment:
            query += " AND environment = ?"
            args.append(environment)
        row = self._db.execute(query + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return _release(row) if row else None

    def in_flight(self) -> list[Release]:
        rows = self._db.execute(
            "SELECT * FROM releases WHERE status IN (?, ?) ORDER BY id", (QUEUED, RUNNING)
        )
        return [_release(row) for row in rows]

    def last_failure(self) -> Release | None:
        row = self._db.execute(
            "SELECT * FROM releases WHERE status IN (?, ?) ORDER BY id DESC LIMIT 1",
            (FAILED, INTERRUPTED),
        ).fetchone()
        return _release(row) if row else None

    def reusable_model(self, fingerprint: str) -> Release | None:
        """The newest release whose trained model has this fingerprint and still exists."""
        rows = self._db.execute(
            "SELECT * FROM releases WHERE model_fingerprint = ? AND model_path IS NOT NULL"
            " ORDER BY id DESC", (fingerprint,)
        )
        for row in rows:
            release = _release(row)
            if release.model_path and Path(release.model_path).is_file():
                return release
        return None

    # ----------------------------------------------------------------- steps

    def start_step(self, release_id: int, name: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO steps (release_id, name, status, started_at)"
                " VALUES (?, ?, ?, ?)", (release_id, name, RUNNING, time.time()),
            )

    def finish_step(self, release_id: int, name: str, status: str, summary: str,
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
                (release_id, name, status, started, now, now - started, summary, excerpt),
            )

    def steps(self, release_id: int) -> list[Step]:
        rows = self._db.execute(
            "SELECT * FROM steps WHERE release_id = ? ORDER BY started_at", (release_id,)
        )
        return [Step(**dict(row)) for row in rows]

    # ------------------------------------------------------------ production

    def production(self, environment: str) -> Production | None:
        row = self._db.execute(
            "SELECT * FROM production WHERE environment = ?", (environment,)
        ).fetchone()
        if row is None:
            return None
        return Production(row["environment"], row["release_id"], row["since"],
                          bool(row["paused"]), row["paused_reason"])

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
                "finished_at, ?) WHERE id = ? AND status = ?", (PROMOTED, now, release_id, STAGED),
            )
            tx.event(kind, release_id, environment, actor, reason)

    def previous_production(self, environment: str, before: int) -> Release | None:
        """The newest promoted release older than `before` whose model is still kept."""
        rows = self._db.execute(
            "SELECT * FROM releases WHERE environment = ? AND status = ? AND id < ?"
            " ORDER BY id DESC", (environment, PROMOTED, before),
        )
        for row in rows:
            release = _release(row)
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

    # ------------------------------------------------------------------ lock

    def acquire_lock(self, name: str, purpose: str) -> None:
        """Take the named lock or raise; a lock whose owner died is reported as stale."""
        with self.transaction() as tx:
            row = tx.execute("SELECT * FROM locks WHERE name = ?", (name,)).fetchone()
            if row is not None and row["owner"] != owner_id():
                stale = "" if owner_alive(row["owner"]) else (
                    " Its owner is gone (stale lock); `agent unlock` releases it."
                )
                raise LockHeld(
                    f"the {name} lock is held by {row['owner']} since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(row['acquired_at']))}"
                    f" ({row['purpose']}).{stale}"
                )
            host, _, pid = owner_id().rpartition(":")
            tx.execute(
                "INSERT OR REPLACE INTO locks (name, owner, pid, host, acquired_at, purpose)"
                " VALUES (?, ?, ?, ?, ?, ?)", (name, owner_id(), int(pid), host, time.time(),
                                               purpose),
            )

    def release_lock(self, name: str) -> None:
        with self.transaction() as tx:
            tx.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner_id()))

    def lock_holder(self, name: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM locks WHERE name = ?", (name,)).fetchone()
        return dict(row) if row else None

    def force_unlock(self, name: str, actor: str) -> dict[str, Any] | None:
        with self.transaction() as tx:
            row = tx.execute("SELECT * FROM locks WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            tx.execute("DELETE FROM locks WHERE name = ?", (name,))
            tx.event("lock.released", None, None, actor, f"{name} held by {row['owner']}")
            return dict(row)

    # ---------------------------------------------------------------- events

    def event(self, kind: str, release_id: int | None = None, environment: str | None = None,
              actor: str = "", detail: str = "") -> None:
        with self.transaction() as tx:
            tx.event(kind, release_id, environment, actor, detail)

    def events(self, limit: int = 100, release_id: int | None = None) -> list[Event]:
        if release_id is None:
            rows = self._db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._db.execute(
                "SELECT * FROM events WHERE release_id = ? ORDER BY id DESC LIMIT ?",
                (release_id, limit),
            )
        return [Event(**dict(row)) for row in rows]

    # -------------------------------------------------------------- recovery

    def orphaned_releases(self) -> list[Release]:
        """Releases left `running` by an agent process that no longer exists, or by
        this very process (called between ticks, when none of ours can run)."""
        return [r for r in self.in_flight() if r.status == RUNNING
                and (r.owner == owner_id() or not owner_alive(r.owner))]

    def mark_interrupted(self, release_id: int, reason: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE steps SET status = ?, finished_at = ?, summary = ? WHERE release_id = ?"
                " AND status = ?", (INTERRUPTED, time.time(), reason, release_id, RUNNING),
            )
            tx.execute(
                "UPDATE releases SET status = ?, reason = ?, finished_at = ? WHERE id = ?",
                (INTERRUPTED, reason, time.time(), release_id),
            )
            tx.event("release.interrupted", release_id, detail=reason)
        # A lock held by the dead owner is stale by definition.
        with self.transaction() as tx:
            tx.execute("DELETE FROM locks WHERE owner = ?",
                       (self.release(release_id).owner,))


class LockHeld(FatalError):
    """Another process holds the deploy lock."""


class _Tx:
    """The connection inside one transaction, plus an audit helper."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, args)

    def event(self, kind: str, release_id: int | None = None, environment: str | None = None,
              actor: str = "", detail: str = "") -> None:
        self._db.execute(
            "INSERT INTO events (at, kind, release_id, environment, actor, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), kind, release_id, environment, actor or _actor(), detail),
        )


def _actor() -> str:
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or owner_id()
