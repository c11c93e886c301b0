"""Where a signal may abandon the main thread's work: only while it waits for a child.

The deploy agent abandons a long step (SIGTERM; a newer commit, see
agent/supersede.py) by raising from a signal handler. A handler runs in the
main thread between any two bytecodes of whatever runs there: raising at any
moment could leave a journal transaction open (its SQLite write lock held, so
every later write fails), or `commit_environment` never reset. So a handler
only records the request and calls `interrupt_if_waiting`, which raises only
while the main thread waits for a child process in `hooks.core.process.run`
(inside `waiting_for_child`): there the child is killed, and nothing is left
half-done. Entering that wait raises at once for a request recorded before, so
a signal that came just before the wait is not lost.

Work a step does in-process (docker-py's build and push) is never interrupted
midway: the request waits for its next child, or for the check the release
runner makes before each gate.

`hooks/` knows nothing of the agent: the agent registers its checks
(`add_check`), callables that raise when a request it recorded applies now.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Check = Callable[[], None]
_checks: list[Check] = []
_waiting = False  # the main thread waits for a child (only the main thread sets it)


def add_check(check: Check) -> None:
    """`check` raises (an exception the caller handles) when a recorded request applies."""
    _checks.append(check)


def remove_check(check: Check) -> None:
    if check in _checks:
        _checks.remove(check)


def interrupt_if_waiting() -> None:
    """A signal handler's call: raise a recorded request's exception, but only
    while the main thread waits for a child; elsewhere nothing happens now."""
    if _waiting and threading.current_thread() is threading.main_thread():
        _raise_recorded()


@contextmanager
def waiting_for_child() -> Iterator[None]:
    """The block in which the main thread waits for a child process: the only
    place a recorded request raises (at once on entry, or when signalled)."""
    global _waiting
    if threading.current_thread() is not threading.main_thread():
        yield  # a signal handler only ever interrupts the main thread
        return
    previous, _waiting = _waiting, True
    try:
        _raise_recorded()
        yield
    finally:
        # A signal handled just before this line raises with `_waiting` already
        # cleared (see _raise_recorded), so it is never left set.
        _waiting = previous


def _raise_recorded() -> None:
    global _waiting
    for check in tuple(_checks):
        try:
            check()
        except BaseException:
            _waiting = False  # raised once: a second signal must not raise again
            raise
