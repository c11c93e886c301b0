"""The newest commit wins: a release still in its gates gives way to a newer commit.

While a release runs its gates (`pipeline.gates`: checkout to the NLU gate, and
a Docker target's build and push; everything before anything serves it), a
newer commit on the branch makes it pointless. The `Guard` notices the newer
commit and abandons the release the way SIGTERM does, with `Superseded` (an
`Abandoned`): the step's child process is killed, the release runner records
the release `superseded`, and the tick releases the branch's newest commit.
Once the gates are passed the guard is disarmed: a switch always finishes.

How it notices: before each gate, the release runner asks the branch's head
(`branch_head`: `git rev-parse` in a local bare repo, milliseconds; `git
ls-remote` for a remote, a network round trip, so its answer is kept for
`poll_interval`, as often as the daemon fetches). A gate can run for an hour
(`rasa train`), so the daemon also runs the guard's thread: it asks again on
every push into a local bare repo (the watcher's event) and every
`poll_interval` for a remote, and while a long step runs it signals the main
thread (SIGUSR1). Like SIGTERM's, the handler only raises while the step waits
for its child process (hooks/core/interrupt.py), never inside a journal
transaction; the child is then killed. A step that works in-process (docker-py's
build and push) is not interrupted: the check before the next gate stops it.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType

from agent.repo import Mirror
from agent.runtime import Agent
from agent.steps import Abandoned
from hooks.core.errors import FatalError
from hooks.core.interrupt import add_check, interrupt_if_waiting, remove_check
from hooks.core.process import git

SIGNAL = signal.SIGUSR1
RESIGNAL_EVERY = 0.5  # a long step may begin just after a signal found none running
REMOTE_TIMEOUT = 15  # seconds: a remote that doesn't answer supersedes nothing


class Superseded(Abandoned):
    """A newer commit arrived while the release was in its gates."""

    def __init__(self, newer: str) -> None:
        super().__init__(f"superseded by {newer[:8]}, a newer commit of the branch")
        self.newer = newer


def branch_head(mirror: Mirror, local_repo: Path | None) -> str | None:
    """The branch's newest commit at its source now; None when it can't be read
    (then nothing is superseded: the next tick's fetch reports the cause)."""
    try:
        if local_repo is not None:
            done = git(["--git-dir", str(local_repo), "rev-parse", "--verify", "--quiet",
                        f"refs/heads/{mirror.branch}^{{commit}}"], cwd=local_repo, timeout=30)
            return (done.output.strip() or None) if done.ok else None
        if not (mirror.path / "HEAD").is_file():
            return None
        done = git(["--git-dir", str(mirror.path), "ls-remote", "origin",
                    f"refs/heads/{mirror.branch}"], cwd=mirror.path.parent,
                   timeout=REMOTE_TIMEOUT,
                   env={"GIT_TERMINAL_PROMPT": "0"})
    except FatalError:  # git missing or timed out: not a reason to stop a release
        return None
    words = done.output.split()
    return words[0] if done.ok and words else None


class Guard:
    """Watches the branch for a commit newer than the release in its gates."""

    def __init__(self, agent: Agent, *, local_repo: Path | None, interval: float,
                 pushed: threading.Event | None = None) -> None:
        self.agent = agent
        self.local_repo = local_repo
        self.interval = interval
        self.pushed = pushed or threading.Event()
        # Re-entrant: the signal handler runs in the main thread, possibly while
        # the main thread itself holds it (in arm, disarm or check).
        self._lock = threading.RLock()
        self._commit: str | None = None  # the release in its gates; None: disarmed
        self._newer: str | None = None
        self._raised = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._head: tuple[float, str | None] | None = None  # a remote's, and when asked
        self._armed = 0  # counts `arm`s: an answer asked for before one is not kept
        self._main = threading.main_thread().ident

    # ---------------------------------------------------- the release runner's side

    def arm(self, commit: str) -> None:
        with self._lock:
            self._commit, self._newer, self._raised = commit, None, False
            self._head, self._armed = None, self._armed + 1  # older than the tick's fetch
        self.pushed.set()  # the thread looks once now: a push may have come before

    def disarm(self) -> None:
        with self._lock:
            self._commit = None

    def check(self) -> None:
        """Between two gates: raise Superseded if the branch moved on."""
        with self._lock:
            commit, newer = self._commit, self._newer
        if commit is None:
            return
        if newer is None:
            head = self._branch_head(fresh=False)
            newer = head if head is not None and head != commit else None
        if newer is not None:
            with self._lock:
                self._raised = True
            raise Superseded(newer)

    def _branch_head(self, *, fresh: bool) -> str | None:
        """`branch_head`; a remote's answer is reused for `interval` unless `fresh`:
        `agent once` asks before every gate, and a gate may take a second."""
        if self.local_repo is not None:
            return branch_head(self.agent.mirror, self.local_repo)
        with self._lock:
            cached, armed = self._head, self._armed
        if not fresh and cached is not None and time.monotonic() - cached[0] < self.interval:
            return cached[1]
        head = branch_head(self.agent.mirror, None)
        with self._lock:
            if self._armed == armed:
                self._head = (time.monotonic(), head)
        return head

    # ----------------------------------------------------------- the daemon's side

    def start(self) -> None:
        """Install the signal handler (main thread only) and start watching."""
        signal.signal(SIGNAL, self._on_signal)
        add_check(self._raise_if_superseded)
        self._thread = threading.Thread(target=self._watch, name="supersede-guard",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.pushed.set()
        remove_check(self._raise_if_superseded)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread, between two bytecodes of whatever runs there:
        # it raises only while a long step waits for its child (the thread
        # recorded the newer commit; entering that wait raises for it too).
        interrupt_if_waiting()

    def _raise_if_superseded(self) -> None:
        # Only a long gate is abandoned, never a switch, nor a gate of another
        # release than the one the thread found superseded.
        with self._lock:
            newer = self._newer if self._commit is not None and not self._raised else None
            fire = newer is not None and self.agent.in_long_step
            if fire:
                self._raised = True
        if fire and newer is not None:
            raise Superseded(newer)

    def _watch(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pending = self._commit is not None and self._newer is not None
            self.pushed.wait(RESIGNAL_EVERY if pending else self.interval)
            self.pushed.clear()
            if self._stop.is_set():
                return
            with self._lock:
                commit, newer, raised = self._commit, self._newer, self._raised
            if commit is None or raised:
                continue
            if newer is None:
                head = self._branch_head(fresh=True)
                if head is None or head == commit:
                    continue
                with self._lock:
                    if self._commit != commit:
                        continue  # that release left its gates meanwhile
                    self._newer = head
                self.agent.progress.info(f"{head[:8]} arrived while {commit[:8]} is in its "
                                         "gates: abandoning it for the newer commit")
            if self.agent.in_long_step and self._main is not None:
                signal.pthread_kill(self._main, SIGNAL)
