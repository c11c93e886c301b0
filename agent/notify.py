"""Telling people about releases: the journal's events are the outbox.

Every state change is already journaled as an event in the same transaction
as the change (agent/journal/db.py), so nothing needs a second write to be
announced: the notifier reads the events after each sink's cursor, turns the
ones people care about into a `Notice` (`notice_of`) and sends it through the
sinks (agent/notify_sinks.py). A sink's cursor moves past an event only once
the sink took it, in the journal, so a crash loses nothing, and nothing already
delivered is sent again (at worst the one event in flight at the crash).

Delivery never blocks or fails a release. `agent run` delivers on its own
thread, retrying a failing sink with exponential backoff and logging each
failure (secret-free); `agent once`, `promote` and `rollback` make one bounded
attempt (`deliver_briefly`) at their end and leave the rest to the daemon.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from agent.config import AgentConfig
from agent.journal import Event, Journal, Release
from agent.notify_sinks import Notice, SendFailed, Sink, Status, load_sinks
from agent.retry import Backoff
from agent.secrets import Redactor
from hooks.core.errors import FatalError

# Event kind -> (what happened, commit-status state or None, worth a chat message).
KINDS: dict[str, tuple[str, str | None, bool]] = {
    "release.started": ("started", "running", False),
    "release.staged": ("staged", "pending", True),
    "release.promoted": ("promoted", "success", True),
    "production.promoted": ("promoted", "success", True),
    "release.failed": ("failed", "failure", True),
    "release.given_up": ("failed", "failure", True),
    "production.promoted.failed": ("failed", None, True),
    "production.rolled_back.failed": ("failed", None, True),
    "release.rolled_back": ("rolled_back", "failure", True),
    "production.rolled_back": ("rolled_back", "success", True),
    "release.superseded": ("superseded", "canceled", True),
    "release.skipped": ("skipped", "canceled", False),
    # The way through the environments (agent/placement.py).
    "release.waiting": ("staged", "pending", True),
    "release.verify_failed": ("failed", "failure", True),
    "release.promote_failed": ("failed", "failure", True),
}
SAYS = {
    "started": "started (gates running) for {env}",
    "staged": "passed its gates and waits for {env}: {reason}",
    "promoted": "is live in {env}",
    "failed": "failed for {env}: {reason}",
    "rolled_back": "was rolled back in {env}: {reason}",
    "superseded": "was superseded for {env}: {reason}",
    "skipped": "was skipped for {env}: {reason}",
}
RETRY = Backoff(attempts=0, first=1.0, cap=300.0)  # attempts unused: the daemon never gives up
POLL = 1.0  # seconds between two looks at the journal for new events
NOTIFY_LOCK = "notify"  # held by whichever process delivers now


def notice_of(journal: Journal, event: Event) -> Notice | None:
    """What `event` tells people, or None if it is not worth telling."""
    known = KINDS.get(event.kind)
    if known is None or event.release_id is None:
        return None
    what, state, chat = known
    release = journal.release(event.release_id)
    env = event.environment or release.environment
    reason = event.detail
    if event.kind == "production.promoted.failed":
        reason = f"`agent promote` of release {release.id} failed: {event.detail}"
    elif event.kind == "production.rolled_back.failed":
        reason = f"rollback to release {release.id} failed: {event.detail}"
    text = _text(release, what, env, reason, event.actor)
    statuses: tuple[Status, ...] = ()
    if state:
        statuses = (Status(release.commit, state, _describe(what, env, reason)),)
    if event.kind == "production.rolled_back":
        statuses = (Status(release.commit, "success", f"live in {env} again ({reason})"),
                    *_rolled_back_from(journal, event, env))
        text = (f"rasa-gitops: {env} was rolled back to release {release.id} "
                f"({release.short} {release.message!r}) by {event.actor}: {reason}")
    return Notice(event.id, what, env, release.id, release.commit, reason, event.actor,
                  event.at, text, chat, statuses)


def _text(release: Release, what: str, env: str, reason: str, actor: str) -> str:
    says = SAYS[what].format(env=env, reason=reason or "no reason given")
    by = f" by {release.author}" if release.author else ""
    return (f"rasa-gitops: release {release.id} ({release.short} {release.message!r}{by}) "
            f"{says} [{actor}]")


def _describe(what: str, env: str, reason: str) -> str:
    plain = {"promoted": f"live in {env}", "started": f"release running for {env}"}
    return plain.get(what) or f"{what.replace('_', ' ')} for {env}: {reason}"


def _rolled_back_from(journal: Journal, event: Event, env: str) -> tuple[Status, ...]:
    """The release a rollback took out of `env`: the one promoted there last before."""
    for earlier in journal.events(limit=500, environment=env, before=event.id):
        if earlier.kind in {"release.promoted", "production.promoted",
                            "production.rolled_back"}:
            if earlier.release_id is None or earlier.release_id == event.release_id:
                return ()
            gone = journal.release(earlier.release_id)
            return (Status(gone.commit, "failure", f"rolled back in {env}: {event.detail}"),)
    return ()


class Notifier:
    """Delivers the journal's events to the sinks, each from its own cursor."""

    def __init__(self, journal_path: Path, sinks: Sequence[Sink], log: Callable[[str], None],
                 *, backoff: Backoff = RETRY, clock: Callable[[], float] = time.monotonic,
                 redact: Redactor | None = None) -> None:
        self.journal_path = Path(journal_path)
        self.sinks = list(sinks)
        # The agent's own secrets (`redact`, e.g. config.redactor()) and the sinks'.
        self.redact = redact or Redactor()
        for sink in self.sinks:
            for secret in sink.secrets:
                self.redact.add(secret)
        self._log = log
        self.backoff = backoff
        self.clock = clock
        self._cursor: dict[str, int] = {}
        self._failures: dict[str, int] = {}
        self._next_try: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)

    def log(self, message: str) -> None:
        self._log(self.redact(message))

    def prime(self, journal: Journal) -> None:
        """Read (or, for a new sink, start at the newest event) each sink's cursor.
        Called before the first tick, so a new sink hears everything from then on."""
        for sink in self.sinks:
            self._cursor[sink.key] = journal.notify_cursor(sink.key)

    def deliver(self, journal: Journal, *, deadline: float | None = None) -> bool:
        """One pass over every sink that is due; True when all are caught up. Two
        processes never deliver at once (`agent once` from cron and a person's
        `agent rollback`): the other's pass is left alone, as not caught up."""
        if not journal.take_lock_unless_live(NOTIFY_LOCK, "notification delivery"):
            return False
        try:
            return self._deliver_all(journal, deadline)
        finally:
            journal.release_lock(NOTIFY_LOCK)

    def _deliver_all(self, journal: Journal, deadline: float | None) -> bool:
        caught_up = True
        for number, sink in enumerate(self.sinks):
            if self._next_try.get(sink.key, 0.0) > self.clock():
                caught_up = False
                continue
            share = None  # a hung chat must not use up the forge's time too
            if deadline is not None:
                share = self.clock() + (deadline - self.clock()) / (len(self.sinks) - number)
            caught_up = self._deliver_to(journal, sink, share) and caught_up
        return caught_up

    def _deliver_to(self, journal: Journal, sink: Sink, deadline: float | None) -> bool:
        # From the journal, not memory: another process may have delivered since.
        self._cursor[sink.key] = max(self._cursor.get(sink.key, 0),
                                     journal.notify_cursor(sink.key))
        while batch := journal.events_after(self._cursor[sink.key]):
            for event in batch:
                sent = self._send(journal, sink, event, deadline)
                if sent is None:
                    return False
                self._cursor[sink.key] = event.id
                if sent:  # persisted at once: a crash now must not send it again
                    journal.set_notify_cursor(sink.key, event.id)
            journal.set_notify_cursor(sink.key, self._cursor[sink.key])  # past what it skipped
        return True

    def _send(self, journal: Journal, sink: Sink, event: Event,
              deadline: float | None) -> bool | None:
        """True if sent, False if not for this sink (or refused for good), None if it
        must be tried again later."""
        try:
            notice = notice_of(journal, event)
        except FatalError as exc:  # e.g. its release row is gone: skip, don't stall
            self.log(f"notify {sink.key}: event {event.id} ({event.kind}) skipped: {exc}")
            return False
        if notice is None or not sink.wants(notice):
            return False
        notice = self._scrubbed(notice)
        timeout = 10.0 if deadline is None else deadline - self.clock()
        if timeout <= 0:
            return None
        try:
            sink.send(notice, min(timeout, 10.0))
        except SendFailed as exc:
            if exc.transient:
                self._failed(sink, event, exc.reason)
                return None
            self.log(f"notify {sink.key}: event {event.id} ({event.kind}) dropped: "
                     f"{exc.reason}; it will not be retried")
            return False
        except Exception as exc:  # a sink's bug: backed off like an outage
            self._failed(sink, event, f"{type(exc).__name__}: {exc}")
            return None
        self._failures.pop(sink.key, None)
        self._next_try.pop(sink.key, None)
        return True

    def _scrubbed(self, notice: Notice) -> Notice:
        """A journal detail may quote a server's error: what leaves the host goes
        through the redactor of every secret the agent knows, as its logs do."""
        return replace(notice, reason=self.redact(notice.reason), text=self.redact(notice.text),
                       statuses=tuple(replace(status, description=self.redact(
                           status.description)) for status in notice.statuses))

    def _failed(self, sink: Sink, event: Event, reason: str) -> None:
        failures = self._failures.get(sink.key, 0) + 1
        self._failures[sink.key] = failures
        wait = self.backoff.delay(failures)
        self._next_try[sink.key] = self.clock() + wait
        self.log(f"notify {sink.key}: event {event.id} ({event.kind}) not delivered "
                 f"(attempt {failures}): {reason}; retrying in {wait:g} s")

    # ------------------------------------------------------------ the thread

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after one last bounded pass (what it misses, the next
        start delivers: the cursors are in the journal)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        journal = Journal(self.journal_path)  # SQLite connections are per thread
        try:
            while not self._stop.is_set():
                self._pass(journal, None)
                self._stop.wait(self._wait())
            self._pass(journal, self.clock() + 2.0)
        finally:
            journal.close()

    def _pass(self, journal: Journal, deadline: float | None) -> None:
        try:
            self.deliver(journal, deadline=deadline)
        except Exception as exc:  # a busy journal, a bug: the thread (and the
            self.log(f"notify: {type(exc).__name__}: {exc}")  # daemon) must go on

    def _wait(self) -> float:
        due = [when - self.clock() for when in self._next_try.values()]
        return max(0.05, min([POLL, *due]))


def deliver_briefly(journal: Journal, notifier: Notifier | None, seconds: float = 2.0) -> None:
    """One bounded attempt at the end of a CLI command; never raises, never waits
    longer than `seconds`. Whatever is left, the daemon delivers."""
    if notifier is None or not notifier.sinks:
        return
    try:
        if not notifier.deliver(journal, deadline=notifier.clock() + seconds):
            notifier.log("notify: some notifications are not delivered yet; "
                         "`agent run` retries them")
    except Exception as exc:  # whatever it is, the command's own outcome stands
        notifier.log(f"notify: {type(exc).__name__}: {exc}")


def open_notifier(config: AgentConfig, journal: Journal,
                  log: Callable[[str], None]) -> Notifier | None:
    """The notifier of `config`'s `notify` list, primed on `journal`, or None when
    there is none; a secret that can't be read is a ConfigError here, at start-up."""
    sinks = load_sinks(config)
    if not sinks:
        return None
    notifier = Notifier(config.work_dir / "journal.sqlite", sinks, log,
                        redact=config.redactor())

    notifier.prime(journal)
    return notifier


@contextmanager
def notifying(config: AgentConfig, journal: Journal, log: Callable[[str], None], *,
              daemon_pid: int | None) -> Iterator[None]:
    """Around a CLI command that changes what serves: sinks checked first, one
    bounded delivery at the end, even when the command failed (a failed promote is
    news too). With a daemon running, its thread delivers instead, so no event
    goes out twice."""
    notifier = open_notifier(config, journal, log)
    try:
        yield
    finally:
        if daemon_pid is None:
            deliver_briefly(journal, notifier)
