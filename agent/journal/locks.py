"""The journal's named locks: one process at a time changes what serves.

A lock row names its owner as `host:pid`. A lock whose owner died on this host
is stale: it is reported as such (and `agent unlock` frees it), never silently
stolen, because a process on another host can't be checked and is assumed alive.
`acquire_lock` fails at once when the lock is taken; `wait_for_lock` waits
(bounded) while a live owner holds it, and fails at once on a stale one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.journal.db import Database, owner_alive, owner_id
from hooks.core.errors import FatalError


class LockHeld(FatalError):
    """Another process holds the deploy lock."""


def _take(tx: Any, name: str, purpose: str) -> None:
    """The lock row that says this process holds `name` (inside a transaction)."""
    host, _, pid = owner_id().rpartition(":")
    tx.execute("INSERT OR REPLACE INTO locks (name, owner, pid, host, acquired_at, purpose)"
               " VALUES (?, ?, ?, ?, ?, ?)",
               (name, owner_id(), int(pid), host, time.time(), purpose))


class Locks(Database):
    """Taking, releasing and reading the named locks, each in one transaction."""

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
            _take(tx, name, purpose)

    def wait_for_lock(self, name: str, purpose: str, *, timeout: float,
                      say: Callable[[str], None], poll: float = 0.2,
                      check: Callable[[], None] | None = None) -> None:
        """Take the named lock, waiting up to `timeout` seconds while a live owner
        holds it (said once through `say`); a stale lock raises LockHeld at once.
        `check` runs before each wait and may raise to give up waiting (SIGTERM)."""
        deadline = time.monotonic() + timeout
        said = False
        while True:
            try:
                self.acquire_lock(name, purpose)
                return
            except LockHeld as exc:
                holder = self.lock_holder(name)
                if holder is None:
                    continue  # released between the two reads: try again now
                if not owner_alive(holder["owner"]):
                    raise
                if time.monotonic() >= deadline:
                    raise LockHeld(f"{exc} Waited {timeout:.0f} s for it; try again "
                                   "when it is done.") from None
                if not said:
                    say(f"waiting for the {name} lock: {holder['purpose']} "
                        f"({holder['owner']})")
                    said = True
            if check is not None:
                check()
            time.sleep(poll)

    def release_lock(self, name: str) -> None:
        with self.transaction() as tx:
            tx.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner_id()))

    def lock_holder(self, name: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM locks WHERE name = ?", (name,)).fetchone()
        return dict(row) if row else None

    def take_lock_unless_live(self, name: str, purpose: str) -> bool:
        """Take the named lock unless a live owner (another process) holds it; a
        stale one is taken over. Only for work a crash leaves nothing half-done of
        (notification delivery: its cursor moves after each send)."""
        with self.transaction() as tx:
            row = tx.execute("SELECT * FROM locks WHERE name = ?", (name,)).fetchone()
            if row is not None and row["owner"] != owner_id() and owner_alive(row["owner"]):
                return False
            _take(tx, name, purpose)
            return True

    def force_unlock(self, name: str, actor: str) -> dict[str, Any] | None:
        with self.transaction() as tx:
            row = tx.execute("SELECT * FROM locks WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            tx.execute("DELETE FROM locks WHERE name = ?", (name,))
            tx.event("lock.released", None, None, actor, f"{name} held by {row['owner']}")
            return dict(row)
