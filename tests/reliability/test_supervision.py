"""Supervision by the daemon (`agent run`), and `agent stop` after a crash.

One blue/green host (real HAProxy, real `rasa run` with the light model, a real
`rasa run actions` behind the forwarder), one daemon, one release; then:

- Once the first release serves, the daemon arms a warm standby
  (`server.standby`, `model.standby` is on by default): a second `rasa run`
  with the live model in the idle slot, HAProxy's backup.
- SIGKILL the live Rasa server, the action server, HAProxy and the forwarder,
  one after the other. Each death is journaled (`server.dead`) within 5 s and
  each restart (`server.restarted`); each answers again within 5 s: for Rasa,
  `/status` and a chat message through the REST channel on the stable port,
  answered by the standby (HAProxy fails over by itself; the daemon then makes
  its slot the live one), and later a new standby is armed again.
- A Rasa server made slow (SIGSTOP: its port still accepts connections, it
  answers nothing, as under a flood or with its event loop busy) is reported
  (`server.slow`) and never restarted or doubled, and its standby never takes
  over: the same pids, the same live server.
- The daemon stopped, a config-only release (the model is reused, a new
  server starts in the other slot) is SIGKILLed right after its Rasa server was
  spawned, before any record names it. `agent stop` then leaves no process
  whose command line, environment mark or working folder names the work dir.

Target cost: under 2 minutes (one light training, four Rasa starts: the
first release's, two standbys, the crashed config-only release's).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.blue_green_host import BlueGreenHost
from tests.support.git import git
from tests.support.procs import processes_of

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(900)]

NOTICED = 5.0  # a death is journaled within this many seconds
ANSWERS = 5.0  # every killed server answers again within this
RASA_START = 180.0  # a new Rasa server (a standby) loads its model first


def _wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def _events(host: BlueGreenHost, kind: str) -> list[str]:
    journal = host.journal()
    try:
        return [e.detail for e in reversed(journal.events(limit=10_000)) if e.kind == kind]
    finally:
        journal.close()


def _pid(path: Path) -> int:
    return int(path.read_text(encoding="utf-8").split()[0])


def _chats(host: BlueGreenHost, sender: str) -> bool:
    """`/status` and a chat message through the REST channel, on the stable port."""
    try:
        token = (host.state / "auth-token").read_text(encoding="utf-8").strip()
        status = requests.get(f"{host.url}/status", params={"token": token}, timeout=2)
        return (status.status_code == 200
                and host.say("hello", sender) == [host.expected[_production_commit(host)]])
    except requests.RequestException:
        return False


def _kill_and_watch(host: BlueGreenHost, pid: int, part: str,
                    answers: Callable[[], bool]) -> tuple[float, float]:
    """SIGKILL `pid`; (s until its death was journaled, s until `answers()` held)."""
    dead_before = len(_events(host, "server.dead"))
    restarted_before = len(_events(host, "server.restarted"))
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    noticed = _wait(lambda: len(_events(host, "server.dead")) > dead_before, NOTICED,
                    f"the {part}'s death journaled")
    _wait(answers, ANSWERS, f"the {part} answers again")
    answered = time.monotonic() - killed_at
    _wait(lambda: len(_events(host, "server.restarted")) > restarted_before, 30,
          f"the {part}'s restart journaled")
    assert part in _events(host, "server.dead")[dead_before]
    assert part in _events(host, "server.restarted")[restarted_before]
    return noticed, answered


def _start_daemon(host: BlueGreenHost) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PATH": f"{host.rasa_bin.parent}{os.pathsep}{os.environ['PATH']}",
           "RASA_TELEMETRY_ENABLED": "false"}
    env.pop("RASA_GITOPS_KILL_AT", None)
    with open(host.root / "daemon.log", "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "agent.cli", "-c", str(host.config),
                                 "run"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_quiet(log: Path, quiet: float) -> None:
    size, since = -1, time.monotonic()
    while time.monotonic() - since < quiet:
        now = log.stat().st_size
        if now != size:
            size, since = now, time.monotonic()
        time.sleep(0.2)


def _daemon_log(host: BlueGreenHost) -> str:
    return (host.root / "daemon.log").read_text(encoding="utf-8", errors="replace")[-4000:]


def _standby_armed(host: BlueGreenHost, before: int) -> int:
    """The pid of the standby armed after the `before`-th `server.standby` event."""
    _wait(lambda: len(_events(host, "server.standby")) > before, RASA_START,
          "a warm standby armed")
    standby = host.standby_server()
    assert standby is not None
    return standby


def _supervised(host: BlueGreenHost, action_port: int) -> None:
    work = host.root / "work"
    forwarder = f"http://127.0.0.1:{action_port}/health"  # through to the live action server
    rasa = f"{host.url}/"  # through HAProxy
    timings = {}

    standby = _standby_armed(host, 0)
    old_rasa = host.live_server()
    assert old_rasa is not None and sorted(host.servers()) == sorted([old_rasa, standby])
    armed = len(_events(host, "server.standby"))
    timings["rasa server"] = _kill_and_watch(
        host, old_rasa, "rasa server",
        lambda: _chats(host, f"after-the-kill-{time.monotonic_ns()}"))
    # The standby answered, and its slot became the live one: no Rasa started.
    _wait(lambda: host.live_server() == standby, NOTICED, "the standby made the live server")
    assert old_rasa not in host.servers()

    live = json.loads((work / "action-server" / "live.json").read_text(encoding="utf-8"))
    timings["action server"] = _kill_and_watch(host, int(live["handle"]["pid"]),
                                               "action server", lambda: _answers(forwarder))
    timings["front proxy"] = _kill_and_watch(
        host, _pid(work / "rasa-blue-green" / "proxy" / "haproxy.pid"), "front proxy",
        lambda: _answers(rasa))
    timings["forwarder"] = _kill_and_watch(host, _pid(work / "action-server" / "forwarder.pid"),
                                           "forwarder", lambda: _answers(forwarder))
    # Later, the freed slot holds a new standby of the live model.
    new_standby = _standby_armed(host, armed)
    print("seconds to (journaled, answering):", timings)
    for part, (noticed, answered) in timings.items():
        assert noticed <= NOTICED, (part, noticed)
        assert answered <= ANSWERS, (part, answered)
    assert new_standby not in (standby, old_rasa)
    assert host.live_server() == standby
    assert sorted(host.servers()) == sorted([standby, new_standby])
    # The new standby took the killed server's slot and kept its log (what said
    # why it died) beside its own.
    kept = list(host.state.glob("rasa-*.log.previous"))
    assert kept and kept[0].stat().st_size > 0, sorted(p.name for p in host.state.iterdir())
    assert host.say("hello", "after-the-kills") == [host.expected[_production_commit(host)]]


def _production_commit(host: BlueGreenHost) -> str:
    journal = host.journal()
    try:
        production = journal.production_release("production")
        assert production is not None
        return production.commit
    finally:
        journal.close()


def _busy_is_not_dead(host: BlueGreenHost) -> None:
    pid, servers = host.live_server(), sorted(host.servers())
    assert pid is not None and pid in servers and len(servers) == 2  # live and standby
    dead, slow = len(_events(host, "server.dead")), len(_events(host, "server.slow"))
    to_standby = host.standby_requests()
    os.kill(pid, signal.SIGSTOP)  # accepts connections (the kernel does), answers nothing
    waiting = threading.Thread(target=_answers, args=(f"{host.url}/", 60.0), daemon=True)
    waiting.start()  # a user's request meanwhile waits for the live server
    try:
        _wait(lambda: len(_events(host, "server.slow")) > slow, 15, "the slow server reported")
        time.sleep(6)  # several more looks of the supervisor, each one slow
        assert sorted(host.servers()) == servers
    finally:
        os.kill(pid, signal.SIGCONT)
    _wait(lambda: _answers(f"{host.url}/"), 30, "the Rasa server answers again")
    assert "rasa server" in _events(host, "server.slow")[slow]
    assert len(_events(host, "server.dead")) == dead  # never taken for dead
    assert sorted(host.servers()) == servers  # never restarted, never doubled
    waiting.join(60)
    assert host.live_server() == pid  # and its standby never took over,
    assert host.standby_requests() == to_standby  # not even one request


def _crash_then_stop(host: BlueGreenHost) -> None:
    credentials = host.src / "credentials.yml"
    credentials.write_text(credentials.read_text(encoding="utf-8") + "socketio:\n",
                           encoding="utf-8")
    git(host.src, "commit", "-q", "-am", "config only: add socketio")
    git(host.src, "push", "-q", "deploy", "main")
    crashed = host.agent("once", kill_at="rasa.spawned")
    assert crashed.returncode == -9, crashed.stdout[-2000:] + crashed.stderr[-2000:]
    assert len(host.servers()) == 2  # the live one and the unrecorded new one
    assert not (host.state / "green.json").exists() or not (host.state / "blue.json").exists()
    work = host.root / "work"
    assert processes_of(work)
    stopped = host.agent("stop")
    assert stopped.returncode == 0, stopped.stdout[-2000:] + stopped.stderr[-2000:]
    left = processes_of(work)
    assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]


def test_the_daemon_restarts_what_crashed_leaves_a_busy_server_and_stop_leaves_nothing(
        blue_green_host: BlueGreenHost) -> None:
    host = blue_green_host
    action_port = int(yaml.safe_load(host.config.read_text())["action_server"]["port"])
    daemon = _start_daemon(host)
    try:
        host.push("first release")
        _wait(lambda: _production_commit_or_none(host) is not None, 600,
              "the first release promoted")
        # The tick after a release reconciles (and would restart a dead server
        # itself): the kills wait until the daemon is idle, its log quiet.
        _wait_quiet(host.root / "daemon.log", 3.0)
        _supervised(host, action_port)
        _busy_is_not_dead(host)
        refused = host.agent("stop")  # the daemon would restart what it stops
        assert refused.returncode == 1 and "--daemon" in refused.stderr, refused.stderr
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(120) == 0, _daemon_log(host)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    _crash_then_stop(host)


def _production_commit_or_none(host: BlueGreenHost) -> str | None:
    journal = host.journal()
    try:
        production = journal.production_release("production")
        return production.commit if production else None
    finally:
        journal.close()
