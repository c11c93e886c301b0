"""The SQLite plumbing under the journal: the tables, opening, transactions, events.

The journal file is the agent's memory across crashes, so it is opened in WAL
mode with full fsync, and every write runs inside `BEGIN IMMEDIATE ... COMMIT`:
a crash or an error leaves nothing half-written. `owner_id` names this process
as `host:pid`, the way locks and running releases record who holds them.
Every transaction can add to the audit trail of events (who did what, when).
The events are also the notifications' outbox: `notify_cursor` keeps, per sink,
the last event it took (agent/notify.py).
A journal file outlives agent versions; `SCHEMA_VERSION` is kept in `meta`, and
every statement is `IF NOT EXISTS`, so opening an existing journal only adds what
is missing (a table a newer agent added, such as `notify_cursor`), never changes data.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.journal.records import RECORD_KINDS, Event, event_from_row
from hooks.core.errors import FatalError

SCHEMA_VERSION = 1

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
CREATE TABLE IF NOT EXISTS notify_cursor (
    sink TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL
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


class Database:
    """One journal file: a connection and its one-transaction writes."""

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
    def transaction(self) -> Iterator[Transaction]:
        """BEGIN IMMEDIATE ... COMMIT; a crash or an error leaves nothing half-written."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise FatalError(f"{self.path}: journal is busy or unwritable: {exc}") from None
        try:
            yield Transaction(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # e.g. disk full
                self._db.execute("ROLLBACK")
                raise FatalError(f"{self.path}: cannot write the journal: {exc}") from None

    # ---------------------------------------------------------------- events

    def event(self, kind: str, release_id: int | None = None, environment: str | None = None,
              actor: str = "", detail: str = "") -> None:
        with self.transaction() as tx:
            tx.event(kind, release_id, environment, actor, detail)

    def prune_events(self, keep: int) -> int:
        """Delete all but the newest `keep` events (`journal.keep_events`); how many.
        Events that record where a release went live, was verified or waits
        (RECORD_KINDS) are kept: rollback and promotion decide by them."""
        marks = ",".join("?" * len(RECORD_KINDS))
        with self.transaction() as tx:
            return tx.execute(
                "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ? "
                f"AND kind NOT IN ({marks})", (keep, *sorted(RECORD_KINDS)),
            ).rowcount

    def events(self, limit: int = 100, release_id: int | None = None,
               environment: str | None = None, before: int | None = None,
               kind: str | None = None) -> list[Event]:
        """Newest first (older than event `before`, if given). An event journaled
        without an environment (`release.failed`) belongs to its release's, so
        `environment` filters on either."""
        where: list[str] = []
        args: list[Any] = []
        if before is not None:
            where.append("e.id < ?")
            args.append(before)
        if release_id is not None:
            where.append("e.release_id = ?")
            args.append(release_id)
        if kind is not None:
            where.append("e.kind = ?")
            args.append(kind)
        if environment is not None:
            where.append("COALESCE(e.environment, r.environment) = ?")
            args.append(environment)
        rows = self._db.execute(
            "SELECT e.* FROM events e LEFT JOIN releases r ON r.id = e.release_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY e.id DESC LIMIT ?", (*args, limit),
        )
        return [event_from_row(row) for row in rows]

    # ------------------------------------------------ the notification outbox

    def events_after(self, event_id: int, limit: int = 100) -> list[Event]:
        """The events newer than `event_id`, oldest first: what a sink still owes."""
        rows = self._db.execute("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                (event_id, limit))
        return [event_from_row(row) for row in rows]

    def notify_cursor(self, sink: str) -> int:
        """The last event delivered to `sink`; a sink seen for the first time starts
        at the newest event (it is told what happens from now on, not the past)."""
        with self.transaction() as tx:
            row = tx.execute("SELECT event_id FROM notify_cursor WHERE sink = ?",
                             (sink,)).fetchone()
            if row is not None:
                return int(row["event_id"])
            newest = tx.execute("SELECT COALESCE(MAX(id), 0) AS id FROM events").fetchone()
            tx.execute("INSERT INTO notify_cursor (sink, event_id) VALUES (?, ?)",
                       (sink, newest["id"]))
            return int(newest["id"])

    def set_notify_cursor(self, sink: str, event_id: int) -> None:
        with self.transaction() as tx:
            tx.execute("INSERT INTO notify_cursor (sink, event_id) VALUES (?, ?) ON CONFLICT"
                       " (sink) DO UPDATE SET event_id = excluded.event_id", (sink, event_id))


class Transaction:
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
