"""The whole agent on `model.serving: blue_green`: a real bare repo, pushes, ticks,
`agent rollback` and `agent stop`, with real `rasa run` servers behind HAProxy.

The serving mechanics have their own tests (tests/agent/targets/); this module
proves the agent drives them through the one switch: a release, a second
release while users chat, a rollback, and a stop that leaves nothing running.
Light config (see tests/support/bots.py): which model serves is the point here;
the DIET/TED stall is tests/agent/targets/test_serving_stall.py's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.journal import Journal
from agent.targets.local_process import free_port
from tests.support.agent_config import agent_config
from tests.support.agent_run import tick_promoted
from tests.support.bots import deploy_repo
from tests.support.ci import need
from tests.support.git import git
from tests.support.procs import processes_showing
from tests.support.rasa_memo import memo_rasa
from tests.support.serving import Chatter, rasa_servers_of

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(1800)]

FIRST = "Hi! Coffee, or opening hours?"  # examples/coffeebot/domain.yml
SECOND = "Welcome back! Coffee, or opening hours?"


def _push(src: Path, message: str) -> None:
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", message)
    git(src, "push", "-q", "deploy", "main")


def _cli(config: Path, rasa_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{rasa_bin.parent}{os.pathsep}{os.environ['PATH']}",
           "RASA_TELEMETRY_ENABLED": "false"}
    return subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(config), *args],
                          capture_output=True, text=True, env=env, timeout=900)


def test_releases_and_a_rollback_switch_blue_green_servers_while_users_chat(
        tmp_path: Path, rasa_bin: Path) -> None:
    need(shutil.which("haproxy") is not None, "HAProxy is not installed (apt-get install haproxy)")
    bare, src = deploy_repo(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    config = agent_config(
        tmp_path / "agent.yml", repo=bare, branch="main", work_dir="work",
        rasa_command=memo_rasa(rasa_bin), pipeline={"test_stories": "tests/none_*.yml"},
        action_server={"port": free_port()},
        model={"url": url, "serving": "blue_green", "drain_timeout": 10},
        smoke={"conversations": [[{"say": "hello"}]]},
    )
    state = tmp_path / "work" / "rasa-blue-green"
    chatter = Chatter(url, every=0.1)
    try:
        _push(src, "coffeebot, first release")
        first = tick_promoted(config)

        chatter.start()
        time.sleep(1.0)
        domain = src / "domain.yml"
        domain.write_text(domain.read_text(encoding="utf-8").replace(FIRST, SECOND),
                          encoding="utf-8")
        _push(src, "a warmer greeting")
        second = tick_promoted(config)
        time.sleep(1.0)
        assert chatter.replies[0] == FIRST
        assert chatter.replies[-1] == SECOND
        assert len(rasa_servers_of(state)) == 1
        # Its token reached each `rasa run` on standard input: no command line
        # or environment on this host shows it (agent/targets/rasa_launch.py).
        assert processes_showing((state / "auth-token").read_text().strip()) == []

        done = _cli(config, rasa_bin, "rollback", "--reason", "customers prefer the old one")
        assert done.returncode == 0, done.stdout + done.stderr
        time.sleep(1.0)
        chatter.done.set()
        chatter.join(timeout=30)
        assert chatter.failures == []
        assert chatter.replies[-1] == FIRST
        assert len(rasa_servers_of(state)) == 1
        journal = Journal(tmp_path / "work" / "journal.sqlite")
        try:
            assert journal.production_release("production").id == first  # type: ignore[union-attr]
            rows = {s.name for s in journal.steps(first)}
            assert {"activate_model", "rollback.activate_model"} <= rows
            assert second != first
        finally:
            journal.close()
    finally:
        chatter.done.set()
        stopped = _cli(config, rasa_bin, "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert rasa_servers_of(state) == []
    assert not _proxy_alive(state)


def _proxy_alive(state: Path) -> bool:
    try:
        pid = int((state / "proxy" / "haproxy.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return Path(f"/proc/{pid}").exists()
