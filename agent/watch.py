"""When to look at the branch again.

A local bare repository is watched with `watchdog`: `git push` renames
`refs/heads/<branch>.lock` onto the ref (or rewrites `packed-refs`), and that
file event wakes the agent at once. A remote is polled with `git fetch` every
`poll_interval` seconds, with jitter so that many agents don't fetch in step.
Either way, `agent sync` touches a trigger file in the work dir that wakes the
agent now. Coalescing happens downstream: whatever woke us, the tick deploys
only the newest commit. A push also sets `pushed`, which the supersede guard
(`agent.supersede`) waits on while a release is in its gates.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

SYNC_FILE = "sync-request"
WRITE_EVENTS = {"created", "modified", "moved", "deleted", "closed"}


class _Handler(FileSystemEventHandler):  # type: ignore[misc]
    def __init__(self, wanted: set[Path], wake: Wakeup, reason: str,
                 also: threading.Event | None = None) -> None:
        self.wanted = wanted
        self.wake = wake
        self.reason = reason
        self.also = also

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Only writes count: watchdog also reports opens and reads, and the
        # agent's own `git fetch` reads the ref it watches.
        if event.event_type not in WRITE_EVENTS:
            return
        for attr in ("src_path", "dest_path"):
            raw = getattr(event, attr, "")
            if raw and Path(str(raw)) in self.wanted:
                self.wake.set(self.reason)
                if self.also is not None:
                    self.also.set()
                return


class Wakeup:
    """A latch that remembers why it was set and when."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reasons: list[str] = []
        self.first_set_at: float | None = None

    def set(self, reason: str) -> None:
        with self._lock:
            if self.first_set_at is None:
                self.first_set_at = time.monotonic()
            if reason not in self.reasons:
                self.reasons.append(reason)
        self._event.set()

    def wait(self, timeout: float | None) -> list[str]:
        """Block until set or timeout; return (and clear) the reasons."""
        self._event.wait(timeout)
        with self._lock:
            reasons, self.reasons = self.reasons, []
            self.first_set_at = None
            self._event.clear()
        return reasons


class Watcher:
    """Wakes the agent on a push (local bare repo), on `agent sync`, or on a poll timer."""

    def __init__(self, work_dir: Path, *, local_repo: Path | None, branch: str,
                 poll_interval: float, jitter: float = 0.1) -> None:
        self.wakeup = Wakeup()
        # Set on every push too, for the supersede guard, which must not take the
        # wakeup's reasons from the daemon's loop.
        self.pushed = threading.Event()
        self.local_repo = local_repo
        self.branch = branch
        self.poll_interval = poll_interval
        self.jitter = jitter
        self.work_dir = work_dir
        self._observer: Any = None

    def start(self) -> None:
        observer = Observer()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        sync = _Handler({self.work_dir / SYNC_FILE}, self.wakeup, "sync")
        observer.schedule(sync, str(self.work_dir), recursive=False)
        if self.local_repo is not None:
            ref = self.local_repo / "refs" / "heads" / self.branch
            ref.parent.mkdir(parents=True, exist_ok=True)
            push = _Handler({ref, self.local_repo / "packed-refs"}, self.wakeup, "push",
                            also=self.pushed)
            observer.schedule(push, str(self.local_repo / "refs" / "heads"), recursive=True)
            observer.schedule(push, str(self.local_repo), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def next_poll_in(self) -> float:
        """Seconds until the next poll; a local repo needs none but gets a slow safety net."""
        base = self.poll_interval if self.local_repo is None else max(self.poll_interval, 300)
        return base * (1 + random.uniform(-self.jitter, self.jitter))

    def wait(self, timeout: float | None = None) -> list[str]:
        wait_for = self.next_poll_in() if timeout is None else timeout
        reasons = self.wakeup.wait(wait_for)
        return reasons or ["poll"]


def request_sync(work_dir: Path) -> None:
    """What `agent sync` does: touch the trigger file the daemon watches."""
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / SYNC_FILE).write_text(f"{time.time()}\n", encoding="utf-8")
