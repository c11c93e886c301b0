"""The supervisor's pure parts and its neighbours, without Rasa: the restart
backoff, the health probe's dead/slow verdict, the log and journal bounds, the
config keys, and `agent stop`'s search for the agent's processes in /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.journal import Journal
from agent.owned import MARKER, owned_processes, stop_owned
from agent.prune import prune_release_logs, trim_log, trim_server_logs
from agent.supervise import Backoff
from agent.targets.base import ALIVE, DEAD, SLOW
from agent.targets.probe import probe
from tests.support.agent_config import agent_config


def test_backoff_restarts_at_once_then_waits_longer_and_forgives_a_stable_server() -> None:
    backoff = Backoff(base=1.0, cap=8.0, stable=60.0)
    assert backoff.dead(100.0)  # the first crash: at once
    backoff.restarting()
    # It died again right away: 1 s, then 2, 4, 8, 8 (the cap) after each failed try.
    waits = []
    now = 101.0
    for _ in range(5):
        assert not backoff.dead(now)
        due = backoff.due_at
        assert due is not None
        waits.append(due - now)
        assert not backoff.dead(due - 0.01)
        assert backoff.dead(due)
        backoff.restarting()
        now = due
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    # Up, but not yet for `stable` seconds: a crash now still waits.
    backoff.alive(now)
    backoff.alive(now + 59)
    assert not backoff.dead(now + 59.5)
    # Up for a minute: the next crash is a first crash again.
    backoff.restarting()
    backoff.alive(now + 100)
    backoff.alive(now + 160)
    assert backoff.attempts == 0
    assert backoff.dead(now + 161)


def test_probe_tells_dead_from_slow(tmp_path: Path) -> None:
    # Nothing listens: dead, whatever the process.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert probe("x", "127.0.0.1", closed, process_alive=True).state == DEAD
    # A listener that accepts and never answers: slow, not dead.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        seen = probe("x", "127.0.0.1", port, process_alive=True, answer_timeout=0.5)
        assert seen.state == SLOW, seen
        assert probe("x", "127.0.0.1", port, process_alive=True, path=None).state == ALIVE
        # Its process gone: dead, even though the port still accepts.
        assert probe("x", "127.0.0.1", port, process_alive=False).state == DEAD


def test_release_logs_beyond_keep_logs_are_deleted_but_production_s_stay(tmp_path: Path) -> None:
    logs, actions = tmp_path / "logs", tmp_path / "action-server"
    for number in range(1, 9):
        (logs / f"release-{number}").mkdir(parents=True)
        (logs / f"release-{number}" / "train.log").write_text("x", encoding="utf-8")
    actions.mkdir()
    for number in (2, 7, 8):
        (actions / f"actions-{number}.log").write_text("x", encoding="utf-8")
    (actions / "forwarder.log").write_text("kept", encoding="utf-8")
    removed = prune_release_logs(tmp_path, keep=3, protect={2})
    assert sorted(p.name for p in logs.iterdir()) == ["release-2", "release-6", "release-7",
                                                       "release-8"]
    assert sorted(p.name for p in actions.iterdir()) == ["actions-2.log", "actions-7.log",
                                                          "actions-8.log", "forwarder.log"]
    assert len(removed) == 4


def test_a_server_log_past_its_bound_keeps_its_newest_lines_and_its_writer(
        tmp_path: Path) -> None:
    folder = tmp_path / "action-server"
    folder.mkdir()
    log = folder / "forwarder.log"
    with open(log, "ab") as writer:  # as the servers write: O_APPEND
        for number in range(2000):
            writer.write(f"line {number}\n".encode())
        writer.flush()
        assert trim_server_logs(tmp_path, max_bytes=4000) == [log]
        writer.write(b"after the cut\n")
        writer.flush()
    text = log.read_text(encoding="utf-8")
    assert len(text) < 4000
    lines = text.splitlines()
    assert lines[0].startswith("[... older lines cut")
    assert lines[1].startswith("line ") and lines[-2] == "line 1999"
    assert lines[-1] == "after the cut"  # no hole: the writer appends at the new end
    assert not trim_log(log, max_bytes=4000)


def test_journal_keeps_the_newest_events(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        for number in range(30):
            journal.event("server.slow", detail=str(number))
        assert journal.prune_events(10) == 20
        assert [e.detail for e in journal.events(limit=100)] == [str(n) for n in
                                                                 range(29, 19, -1)]
        assert journal.prune_events(10) == 0
    finally:
        journal.close()


def test_pruning_keeps_the_records_rollback_and_promotion_decide_by(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        release = journal.new_release(environment="staging", commit="a" * 40, branch="main",
                                      author="test", message="m")
        journal.event("production.promoted", release.id, "production")
        journal.event("release.verified", release.id, "staging")
        journal.event("release.waiting", release.id, "production", detail="manual")
        for number in range(30):
            journal.event("server.slow", detail=str(number))
        assert journal.prune_events(10) > 0  # the news, not the records
        assert len([e for e in journal.events(limit=100) if e.kind == "server.slow"]) == 10
        assert journal.was_verified_in(release.id, "staging")
        assert journal.was_live_in(release.id, "production")
        assert [e.detail for e in journal.events(kind="release.waiting")] == ["manual"]
    finally:
        journal.close()


def test_bounds_and_supervision_keys_have_defaults_and_checks(tmp_path: Path) -> None:
    config = load_config(agent_config(tmp_path, repo=str(tmp_path / "repo.git")))
    assert (config["keep_logs"], config["log_max_mb"], config["journal.keep_events"]) == (
        20, 20, 10000)
    assert (config["supervise.enabled"], config["supervise.interval"],
            config["supervise.max_backoff"]) == (True, 1, 60)
    for keys, key in (({"keep_logs": 0}, "keep_logs"),
                      ({"journal": {"keep_events": -1}}, "journal.keep_events"),
                      ({"supervise": {"interval": 0}}, "supervise.interval")):
        path = agent_config(tmp_path / f"bad-{key}.yml", repo=str(tmp_path / "repo.git"),
                            **keys)
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(path)


def _sleeper(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args],
                            env={**os.environ, **env}, start_new_session=True)


def test_stop_owned_ends_marked_and_named_servers_only(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "rasa-blue-green").mkdir(parents=True)
    marked = _sleeper({MARKER: str(work / "rasa-blue-green")})  # an unrecorded server
    named = _sleeper({}, str(work / "rasa-blue-green" / "haproxy.cfg"))  # an older one
    other = _sleeper({MARKER: str(tmp_path / "work-2")})  # another agent's
    # A user's command naming the work dir inside someone else's session: not ours.
    user = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                             str(work / "logs")])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(owned_processes(work)) < 2:
            time.sleep(0.05)
        assert {p.pid for p in owned_processes(work)} == {marked.pid, named.pid}
        said: list[str] = []
        stopped = stop_owned(work, said.append, grace=5)
        assert {p.pid for p in stopped} == {marked.pid, named.pid}
        assert marked.wait(5) is not None and named.wait(5) is not None
        assert other.poll() is None and user.poll() is None
        assert owned_processes(work) == []
    finally:
        for proc in (marked, named, other, user):
            proc.kill()
            proc.wait()


def test_the_switch_lock_is_reentrant_only_tried_by_the_supervisor_and_per_environment(
) -> None:
    from agent.deploy_lock import switching

    # go_live undoes inside its own lock; the supervisor's try fails meanwhile,
    # for that environment's lock only.
    with switching("deploy:staging"), switching("deploy:staging"):
        tried: list[bool] = []

        def supervisor() -> None:
            tried.append(switching("deploy:staging").acquire(blocking=False))
            production = switching("deploy:production")
            tried.append(production.acquire(blocking=False))
            production.release()

        thread = threading.Thread(target=supervisor)
        thread.start()
        thread.join()
        assert tried == [False, True]


def test_put_model_server_that_is_busy_is_not_started_twice(tmp_path: Path) -> None:
    """The issue's bug: `ensure_server`'s GET / timed out under load and a second
    `rasa run` went for the same port. A live recorded process whose port accepts
    (here: a listener that never answers) is busy, not dead."""
    from agent.targets.rasa_http import RasaHttpModelTarget

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        busy = _sleeper({})
        try:
            state = tmp_path / "rasa-server"
            state.mkdir()
            (state / "rasa-server.pid").write_text(f"{busy.pid} 0\n", encoding="utf-8")
            target = RasaHttpModelTarget(
                url=f"http://127.0.0.1:{port}", token=None, state_dir=state,
                rasa_argv=[str(tmp_path / "no-rasa-here")], manage_server=True,
                action_endpoint="http://127.0.0.1:1/webhook")
            said: list[str] = []
            assert target.ensure_server(said.append) is False  # nothing started
            assert said == []
            assert [h.state for h in target.health()] == [SLOW]
            busy.kill()
            busy.wait()
            assert [h.state for h in target.health()] == [DEAD]
        finally:
            busy.kill()
            busy.wait()


def test_a_round_revives_through_the_switch_only_when_no_switch_runs(tmp_path: Path) -> None:
    """With in-memory targets: a dead action server comes back as the journal's
    production has it, journaled; never while a switch holds the lock (in this
    process) or another process holds the deploy lock; a slow one is reported
    once and left alone."""
    from agent import deploy_lock
    from agent.journal import PROMOTED
    from agent.supervise import Supervisor
    from agent.targets.base import Health
    from tests.support.memory_targets import memory_world

    world = memory_world(tmp_path)
    live = world.release(model_id="m1", calls={"action_hours"}, code="c1", status=PROMOTED,
                         live=True)
    seen = {"state": SLOW}
    world.actions.health = lambda: [Health("action server", seen["state"], "test")]
    supervisor = Supervisor(world.agent)
    assert supervisor.round(world.agent) == []  # slow: reported, not revived
    assert supervisor.round(world.agent) == []
    kinds = [e.kind for e in world.journal.events(limit=50)]
    assert kinds.count("server.slow") == 1 and "server.dead" not in kinds

    world.serving.live_server = None  # it died
    seen["state"] = DEAD
    held = threading.Event()
    done = threading.Event()

    def switching() -> None:
        with deploy_lock.switching(deploy_lock.lock_name(world.agent.config, None)):
            held.set()
            done.wait(10)

    thread = threading.Thread(target=switching)
    thread.start()
    held.wait(10)
    try:
        assert supervisor.round(world.agent) is None  # a switch runs: not now
    finally:
        done.set()
        thread.join()
    with world.journal.transaction() as tx:  # `agent rollback` on another host/process
        tx.execute("INSERT INTO locks (name, owner, pid, host, acquired_at, purpose) "
                   "VALUES ('deploy', 'elsewhere:1', 1, 'elsewhere', 0, 'rollback')")
    assert supervisor.round(world.agent) is None
    world.journal.force_unlock("deploy", "test")
    assert world.serving.live_server is None

    revived = supervisor.round(world.agent)
    assert revived == [f"action server of release {live}"]
    assert world.serving.live_server is not None
    assert world.serving.live_server.release_id == str(live)
    kinds = [e.kind for e in world.journal.events(limit=50)]
    assert kinds[:2] == ["server.restarted", "server.dead"]  # newest first


def test_a_round_keeps_a_warm_standby_journals_it_and_backs_off_a_failing_one(
        tmp_path: Path) -> None:
    """A model target with a standby gets one keep_standby step per round in
    which nothing is dead and no standby shows in its health; a failed step is
    journaled and the next waits (backoff); an armed one is journaled once."""
    from agent.journal import PROMOTED
    from agent.supervise import Supervisor
    from agent.targets.base import Health
    from agent.targets.rasa_standby import FAILED, NOTHING, READY, STANDBY_PART, STARTED
    from tests.support.memory_targets import memory_world

    world = memory_world(tmp_path)
    world.release(model_id="m1", calls=set(), code="c1", status=PROMOTED, live=True)
    steps = [(FAILED, "the standby exited: boom"), (STARTED, "slot green"), (NOTHING, ""),
             (READY, "slot green (127.0.0.1:7001), release 1, model m1")]
    clock = {"now": 100.0}
    calls: list[float] = []

    def keep_standby(log: object) -> tuple[str, str]:
        calls.append(clock["now"])
        return steps.pop(0)

    world.model.standby = True  # type: ignore[attr-defined]
    world.model.keep_standby = keep_standby  # type: ignore[attr-defined]
    supervisor = Supervisor(world.agent, clock=lambda: clock["now"])
    assert supervisor.round(world.agent) == []
    events = world.journal.events(limit=50)
    assert [(e.kind, e.detail) for e in events[:1]] == [
        ("server.standby_failed", "the standby exited: boom")]
    clock["now"] = 100.5
    supervisor.round(world.agent)  # within the backoff: no step
    assert calls == [100.0]
    for now in (101.5, 102.5, 103.5):
        clock["now"] = now
        supervisor.round(world.agent)
    assert calls == [100.0, 101.5, 102.5, 103.5] and steps == []
    kinds = [e.kind for e in world.journal.events(limit=50)]
    assert kinds.count("server.standby") == 1 and kinds.count("server.standby_failed") == 1
    # Armed (its health shows it): no more steps.
    world.model.health = lambda: [Health(STANDBY_PART, ALIVE, "slot green")]  # type: ignore[method-assign]
    clock["now"] = 104.5
    assert supervisor.round(world.agent) == []
    assert calls == [100.0, 101.5, 102.5, 103.5]
