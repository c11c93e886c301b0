"""The one subprocess seam: process liveness as `agent stop` sees it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from hooks.core.process import _zombie, alive, spawn, stop


def test_a_dead_unreaped_process_counts_as_gone() -> None:
    # `agent stop` runs in another process than the daemon that started the
    # servers; their corpses stay zombies until the daemon reaps them, and
    # waiting for a zombie to exit would take the whole stop timeout.
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while not _zombie(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _zombie(child.pid)
    child.wait()
    assert not _zombie(os.getpid())


def test_stop_returns_as_soon_as_the_group_is_gone(tmp_path: Path) -> None:
    pid = spawn(["sleep", "600"], cwd=tmp_path, log_file=tmp_path / "sleep.log")
    assert alive(pid)
    started = time.monotonic()
    stop(pid, timeout=120)
    assert not alive(pid)
    assert time.monotonic() - started < 60  # ended by SIGTERM, not by the SIGKILL timeout
