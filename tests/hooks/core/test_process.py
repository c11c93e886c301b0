"""The one subprocess seam: process liveness as `agent stop` sees it, and the one
way to find Rasa."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hooks.core.errors import FatalError
from hooks.core.pid_identity import started_at
from hooks.core.process import (
    RASA_ENV,
    RASA_PYTHON_ENV,
    _zombie,
    alive,
    rasa_command,
    rasa_python,
    spawn,
    stop,
)


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


def test_a_recorded_pid_now_held_by_another_process_is_neither_alive_nor_stopped(
        tmp_path: Path) -> None:
    # After a reboot a recorded pid may belong to a stranger: its start time
    # (/proc/<pid>/stat field 22) differs from the one recorded with the pid.
    pid = spawn(["sleep", "600"], cwd=tmp_path, log_file=tmp_path / "sleep.log")
    try:
        started = started_at(pid)
        assert started is not None and started > 0
        assert alive(pid, started)
        assert alive(pid, 0)  # a record without a start time trusts the pid, as before
        stranger = started + 1  # what the pid's earlier owner was recorded with
        assert not alive(pid, stranger)
        stop(pid, timeout=5, started=stranger)
        assert alive(pid)  # the stranger was not signalled
        stop(pid, timeout=60, started=started)
        assert not alive(pid)
    finally:
        stop(pid, timeout=5)


def _executable(path: Path, first_line: str = "#!/usr/bin/env python3\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(first_line, encoding="utf-8")
    path.chmod(0o755)
    return path


def test_the_one_way_to_find_rasa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_python = _executable(tmp_path / "venv" / "bin" / "python")
    beside = _executable(tmp_path / "venv" / "bin" / "rasa", f"#!{env_python}\n")
    on_path = _executable(tmp_path / "path" / "rasa", "#!/opt/py/bin/python3.10 -E\n")
    monkeypatch.setattr(sys, "executable", str(env_python))
    monkeypatch.setenv("PATH", f"{on_path.parent}{os.pathsep}/usr/bin:/bin")
    monkeypatch.delenv(RASA_PYTHON_ENV, raising=False)
    # Configured wins, taken as given (a wrong one fails when it runs).
    monkeypatch.setenv(RASA_ENV, "python3 -m rasa")
    assert rasa_command() == ["python3", "-m", "rasa"]
    monkeypatch.delenv(RASA_ENV)
    # Then the rasa of this Python's own environment, even off PATH.
    assert rasa_command() == [str(beside)]
    assert rasa_python() == str(env_python)
    beside.unlink()
    assert rasa_command() == [str(on_path)]
    assert rasa_python() == "/opt/py/bin/python3.10"
    # `#!/usr/bin/env python3` names the interpreter through env.
    on_path.write_text("#!/usr/bin/env python3\n", encoding="utf-8")
    assert rasa_python() == shutil.which("python3", path=os.environ["PATH"])
    monkeypatch.setenv(RASA_PYTHON_ENV, "/somewhere/python")
    assert rasa_python() == "/somewhere/python"
    on_path.unlink()
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FatalError, match="Rasa is not installed in this hook's environment"):
        rasa_command()
