"""`agent stop`'s sweep by command line (agent/owned.py) takes only the agent's
own unmarked servers: session leaders running a server program with an
argument inside the work dir, path by path, never the agent's CLI, a shell,
or another agent's work dir that shares a prefix. Real processes, real /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from agent.owned import MARKER, owned_processes

SLEEP = "import time; time.sleep(60)"


def _leader(*argv: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != MARKER}
    return subprocess.Popen(list(argv), env=env, start_new_session=True)


def test_only_a_server_program_with_an_argument_inside_the_work_dir_is_taken(
    tmp_path: Path,
) -> None:
    work = tmp_path / "agent"
    (work / "rasa-blue-green").mkdir(parents=True)
    ours = _leader(sys.executable, "-c", SLEEP, f"--config={work}/rasa-blue-green/h.cfg")
    others = [
        # another agent whose work dir shares the prefix
        _leader(sys.executable, "-c", SLEEP, str(tmp_path / "agent-staging" / "agent.yml")),
        # the agent's own CLI (a daemon), even with its config inside the work dir
        _leader(sys.executable, "-c", SLEEP, "-m", "agent.cli", "-c", str(work / "agent.yml")),
        # a shell of a user, a backup, a `tail -f` of a log
        _leader("/bin/sh", "-c", "sleep 60", "sh", str(work / "logs")),
    ]
    try:
        deadline = time.monotonic() + 10
        found: set[int] = set()
        while time.monotonic() < deadline and ours.pid not in found:
            found = {p.pid for p in owned_processes(work)}
            time.sleep(0.05)
        time.sleep(0.2)  # the others had as long to show up
        found = {p.pid for p in owned_processes(work)}
        assert found == {ours.pid}, found
    finally:
        for proc in (ours, *others):
            proc.kill()
            proc.wait()
