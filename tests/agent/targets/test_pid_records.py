"""The pid files of the local servers keep the process's start time beside its pid.

After a reboot a recorded pid may belong to another program: `agent stop`
would have signalled it (found in review). Each pid file now holds
"PID START_TIME" (/proc/<pid>/stat field 22), and a pid whose start time
differs is not ours. Fast: the action forwarder and a stand-in Rasa server
start in a second; the blue/green slot records are tested in
test_rasa_blue_green_unit.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.targets.base import LogSink
from agent.targets.local_process import LocalActionServerTarget, free_port
from agent.targets.rasa_http import RasaHttpModelTarget
from hooks.core.pid_identity import started_at
from tests.support.fake_rasa_server import fake_model, fake_rasa_server
from tests.support.paths import REPO_ROOT


@pytest.fixture()
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process that got a recorded pid after a reboot (its own session, as ours)."""
    process = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def reboot(pid_file: Path, stranger: subprocess.Popen[bytes]) -> None:
    """The pid file as a reboot leaves it: its pid now names the stranger, which
    started at another time than the process recorded (one clock tick earlier;
    the servers here start within the stranger's tick, 10 ms, at times)."""
    started = started_at(stranger.pid)
    assert started is not None
    pid_file.write_text(f"{stranger.pid} {started - 1}\n", encoding="utf-8")


def recorded(path: Path) -> tuple[int, int]:
    pid, started = path.read_text(encoding="utf-8").split()
    return int(pid), int(started)


def test_the_forwarder_pid_file_names_its_process_for_good(
        tmp_path: Path, stranger: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the forwarder runs `-m agent...`
    target = LocalActionServerTarget(state_dir=tmp_path / "actions", rasa_argv=["rasa"],
                                     host="127.0.0.1", port=free_port())
    pid_file = tmp_path / "actions" / "forwarder.pid"
    try:
        target.ensure_forwarder(print)
        _assert_stop_spares_a_reused_pid(target.stop_all, pid_file, stranger)
    finally:
        target.stop_all(print)


def test_the_rasa_server_pid_file_names_its_process_for_good(
        tmp_path: Path, stranger: subprocess.Popen[bytes]) -> None:
    state = tmp_path / "rasa-server"
    target = RasaHttpModelTarget(
        url=f"http://127.0.0.1:{free_port()}", token=None, state_dir=state,
        rasa_argv=[str(fake_rasa_server(tmp_path / "bin"))], manage_server=True,
        action_endpoint="http://127.0.0.1:5055/webhook", load_timeout=30)
    state.mkdir(parents=True, exist_ok=True)  # the token is made there already
    target.live_link.symlink_to(fake_model(tmp_path / "m1.tar.gz", "m1"))
    pid_file = state / "rasa-server.pid"
    try:
        assert target.ensure_server(print)
        _assert_stop_spares_a_reused_pid(target.stop_all, pid_file, stranger)
    finally:
        target.stop_all(print)


def _assert_stop_spares_a_reused_pid(stop_all: Callable[[LogSink], None], pid_file: Path,
                                     stranger: subprocess.Popen[bytes]) -> None:
    """The pid file names the started process with its start time; once that
    pid belongs to a stranger (a reboot), stopping signals nobody."""
    pid, started = recorded(pid_file)
    assert started == started_at(pid)
    stop_all(print)
    reboot(pid_file, stranger)
    stop_all(print)
    assert stranger.poll() is None  # not signalled
