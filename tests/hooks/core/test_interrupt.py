"""A signal abandons the main thread's work only while it waits for a child, and
an abandoned background command takes its own children with it."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hooks.core import interrupt
from hooks.core.errors import FatalError
from hooks.core.process import alive, run


class Stop(BaseException):
    pass


@pytest.fixture()
def requested() -> Iterator[list[bool]]:
    """A request the test records (as the agent's handlers record SIGTERM): the
    check raises `Stop` once it is; SIGUSR2's handler calls `interrupt_if_waiting`."""
    flag: list[bool] = []

    def check() -> None:
        if flag:
            raise Stop()

    before = signal.signal(signal.SIGUSR2, lambda signum, frame: interrupt.interrupt_if_waiting())
    interrupt.add_check(check)
    yield flag
    interrupt.remove_check(check)
    signal.signal(signal.SIGUSR2, before)


def signal_soon(delay: float, record: list[bool] | None = None) -> None:
    """SIGUSR2 to the main thread after `delay`, having recorded the request first
    when given `record` (as a handler records SIGTERM before anything else)."""
    main = threading.main_thread().ident
    assert main is not None

    def send() -> None:
        if record is not None:
            record.append(True)
        signal.pthread_kill(main, signal.SIGUSR2)

    threading.Timer(delay, send).start()


def test_a_signal_outside_the_wait_raises_nothing_and_the_next_wait_raises(
        requested: list[bool]) -> None:
    requested.append(True)
    signal_soon(0.1)
    time.sleep(0.5)  # interrupted by the signal, which must not raise here
    started = time.monotonic()
    with pytest.raises(Stop):
        run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=120)
    assert time.monotonic() - started < 10  # raised on entering the wait, child killed
    assert not interrupt._waiting


def test_a_signal_during_the_wait_kills_the_child_and_raises(requested: list[bool]) -> None:
    signal_soon(0.5, requested)
    started = time.monotonic()
    with pytest.raises(Stop):
        run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=120)
    assert time.monotonic() - started < 10
    assert not interrupt._waiting
    requested.clear()
    assert run([sys.executable, "-c", "print('next')"]).output.strip() == "next"


def test_no_request_means_a_signal_in_the_wait_changes_nothing(requested: list[bool]) -> None:
    signal_soon(0.3)
    done = run([sys.executable, "-c", "import time; time.sleep(1); print('done')"])
    assert done.ok and done.output.strip() == "done"


def test_an_abandoned_background_command_takes_its_children_with_it(tmp_path: Path) -> None:
    # pytest-xdist's workers are children of the `pytest` a step runs: killing
    # only `pytest` would leave them running (and holding the CPU).
    script = ("import subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "print(p.pid, flush=True); time.sleep(60)")
    lines: list[str] = []
    with pytest.raises(FatalError, match="timed out"):
        run([sys.executable, "-c", script], timeout=2, background=True, stream=lines.append)
    grandchild = int(lines[0])
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)
