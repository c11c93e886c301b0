"""The shared pid-file reader and writer (agent/targets/pidfile.py): what the
Rasa server's and the action forwarder's pid files hold, and how a file of
before start times, or a torn one, reads. Fast: no server."""

from __future__ import annotations

import os
from pathlib import Path

from agent.targets.pidfile import read_pid, write_atomically, write_pid
from hooks.core.pid_identity import started_at


def test_a_written_pid_reads_back_with_its_start_time(tmp_path: Path) -> None:
    path = tmp_path / "server.pid"
    write_pid(path, os.getpid())
    assert read_pid(path) == (os.getpid(), started_at(os.getpid()))
    assert not list(tmp_path.glob(".*.tmp"))  # renamed into place, nothing left beside


def test_an_older_file_with_the_pid_alone_reads_with_an_unknown_start_time(
        tmp_path: Path) -> None:
    path = tmp_path / "server.pid"
    path.write_text("4242\n", encoding="utf-8")
    assert read_pid(path) == (4242, 0)


def test_no_file_or_one_without_a_pid_reads_as_no_record(tmp_path: Path) -> None:
    path = tmp_path / "server.pid"
    assert read_pid(path) is None
    for text in ("", "\n", "abc 12\n", "12 abc\n", "-5 0\n"):
        path.write_text(text, encoding="utf-8")
        assert read_pid(path) is None, text


def test_an_atomic_write_replaces_the_whole_record(tmp_path: Path) -> None:
    path = tmp_path / "upstream"
    write_atomically(path, "http://127.0.0.1:1/a long first record\n")
    write_atomically(path, "short\n")
    assert path.read_text(encoding="utf-8") == "short\n"
