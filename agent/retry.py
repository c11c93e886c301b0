"""Bounded retries with exponential backoff, for parts that may be gone for a moment.

A registry restarting, a Docker engine restarting, an SSH connection dropped:
each is worth a few more tries, a wrong password or a broken Dockerfile is not.
The caller says which failures are transient (`transient` returns a short,
secret-free reason, or None to fail at once). Every retry is one line in the
step's log; the last failure is raised unchanged, so callers keep their typed
handling and add the attempt count to the message themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """`attempts` tries in all; waits of first, 2*first, 4*first ... never over `cap`."""

    attempts: int = 4
    first: float = 1.0
    cap: float = 8.0

    def delay(self, failed: int) -> float:
        """The wait after the `failed`-th failed attempt (1-based)."""
        return float(min(self.cap, self.first * 2 ** (failed - 1)))


ENGINE = Backoff()  # a Docker engine or SSH host: 1 + 2 + 4 s of waiting, 4 tries


def retrying(call: Callable[[], T], *, what: str, transient: Callable[[Exception], str | None],
             log: Callable[[str], None], backoff: Backoff = ENGINE,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, tried again after a transient failure while attempts are left."""
    attempt = 1
    while True:
        try:
            return call()
        except Exception as exc:
            reason = transient(exc)
            if reason is None:
                raise
            if attempt >= backoff.attempts:
                log(f"{what}: giving up after {attempt} attempt(s) ({reason})")
                raise
            wait = backoff.delay(attempt)
            log(f"{what}: attempt {attempt}/{backoff.attempts} failed ({reason}); "
                f"retrying in {wait:g} s")
            sleep(wait)
            attempt += 1
