"""The supervisor's revive against the switches, fast: in-memory targets, a real
journal. A revive never runs while this process or another holds the deploy
lock (a release's switch is not over until the journal says what serves), takes
the deploy lock itself while it restarts, and never replaces a busy (SLOW)
action server."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from agent import deploy_lock as deploy_lock_module
from agent import faults, pipeline
from agent.deploy_lock import deploy_lock
from agent.journal import FAILED, PROMOTED, QUEUED, Journal, LockHeld
from agent.prune import prune, server_releases
from agent.release import run_release
from agent.supervise import Supervisor
from agent.targets.base import ALIVE, DEAD, SLOW, ActionServerDeployment, Health, LogSink
from tests.support.memory_targets import World, memory_world

HOLD = ("import sys; from pathlib import Path; from agent.journal import Journal; "
        "j = Journal(Path(sys.argv[1])); j.acquire_lock('deploy', 'agent rollback'); "
        "print('held', flush=True); sys.stdin.read(); j.release_lock('deploy')")


def in_supervisor_thread(world: World, supervisor: Supervisor) -> list[str] | None:
    """One round from a thread of its own, with its own journal connection, as
    the daemon's supervisor runs it (same process, so the same lock owner)."""
    result: list[list[str] | None] = []

    def run() -> None:
        journal = Journal(world.agent.config.work_dir / "journal.sqlite")
        try:
            result.append(supervisor.round(replace(world.agent, journal=journal)))
        finally:
            journal.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert len(result) == 1
    return result[0]


def action_server_health(world: World) -> dict[str, str]:
    """The memory action server's health, as the test sets it."""
    state = {"state": ALIVE}
    world.actions.health = lambda: [Health("action server", state["state"], "test")]
    return state


def test_no_revive_between_a_release_going_live_and_the_journal_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The window of a release's own switch: go_live has returned (its SWITCHING
    with it) but finish_release has not yet moved production. A revive there
    would read the old production and load it back under the new release."""
    world = memory_world(tmp_path)
    old = world.release(model_id="m1", calls={"action_a"}, code="c1", status=PROMOTED,
                        live=True)
    new = world.release(model_id="m2", calls={"action_a", "action_b"}, code="c2",
                        status=QUEUED)
    health = action_server_health(world)
    supervisor = Supervisor(world.agent)
    monkeypatch.setattr(pipeline, "gates", lambda config: ())
    in_window: list[list[str] | None] = []

    def promoting(point: str) -> None:
        if point == "release.promoting":  # after go_live, before finish_release
            assert world.serving.live_server is not None
            assert world.serving.live_server.release_id == str(new)
            world.serving.live_server = None  # the new action server died
            health["state"] = DEAD
            in_window.append(in_supervisor_thread(world, supervisor))

    monkeypatch.setattr(faults, "kill_point", promoting)
    assert run_release(world.agent, world.journal.release(new)) == PROMOTED
    assert in_window == [None]  # skipped: the release still held the deploy lock
    assert world.serving.live_model == "m2"
    assert ("model", "m1") not in world.serving.history  # never loaded back
    assert ("action_server", str(old)) not in world.serving.history
    assert world.journal.lock_holder("deploy") is None

    # The release is on record: the next round revives the new release's server.
    assert in_supervisor_thread(world, supervisor) == [f"action server of release {new}"]
    assert world.serving.live_server is not None
    assert world.serving.live_server.release_id == str(new)
    assert world.serving.live_model == "m2"
    assert world.serving.violations == []


def test_no_revive_while_another_process_holds_the_deploy_lock_and_none_keeps_it(
    tmp_path: Path,
) -> None:
    world = memory_world(tmp_path)
    live = world.release(model_id="m1", calls={"action_a"}, code="c1", status=PROMOTED,
                         live=True)
    health = action_server_health(world)
    supervisor = Supervisor(world.agent)
    world.serving.live_server = None
    health["state"] = DEAD
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(world.journal.path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        assert in_supervisor_thread(world, supervisor) is None
        assert world.serving.live_server is None
        holder = world.journal.lock_holder("deploy")
        assert holder is not None and holder["pid"] == other.pid  # still theirs
    finally:
        other.communicate("", timeout=30)
    assert in_supervisor_thread(world, supervisor) == [f"action server of release {live}"]
    assert world.journal.lock_holder("deploy") is None  # the revive let it go


def test_a_switch_of_this_process_waits_for_a_revive_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A revive holds the deploy lock while it restarts; a promote/rollback of the
    same process waits for it (bounded) instead of switching at the same time."""
    world = memory_world(tmp_path)
    live = world.release(model_id="m1", calls={"action_a"}, code="c1", status=PROMOTED,
                         live=True)
    action_server_health(world)["state"] = DEAD
    world.serving.live_server = None
    started, go_on = threading.Event(), threading.Event()
    reactivate = world.actions.reactivate

    def slow_reactivate(deployment: ActionServerDeployment, log: LogSink) -> None:
        started.set()
        go_on.wait(30)
        reactivate(deployment, log)

    monkeypatch.setattr(world.actions, "reactivate", slow_reactivate)
    monkeypatch.setattr(deploy_lock_module, "switch_wait", lambda config: 0.5)
    results: list[list[str] | None] = []
    thread = threading.Thread(target=lambda: results.append(
        in_supervisor_thread(world, Supervisor(world.agent))))
    thread.start()
    try:
        assert started.wait(30)
        holder = world.journal.lock_holder("deploy")
        assert holder is not None and "supervisor" in holder["purpose"]
        # Bounded; nothing taken, nothing switched.
        with pytest.raises(LockHeld, match="did not end"), deploy_lock(world.agent, "promote"):
            pytest.fail("a switch ran during a revive")
    finally:
        go_on.set()
        thread.join(30)
    assert results == [[f"action server of release {live}"]]
    with deploy_lock(world.agent, "promote"):  # free again once the revive is over
        assert world.journal.lock_holder("deploy") is not None
    assert world.journal.lock_holder("deploy") is None


@pytest.mark.parametrize("dead", ["rasa server", "forwarder"])
def test_a_busy_action_server_is_not_replaced_when_another_part_is_revived(
    tmp_path: Path, dead: str,
) -> None:
    """The local target's live() is None while GET /actions answers late: only
    health() tells busy (SLOW) from gone (DEAD)."""
    world = memory_world(tmp_path)
    world.release(model_id="m1", calls={"action_a"}, code="c1", status=PROMOTED, live=True)
    if dead == "rasa server":
        action_server_health(world)["state"] = SLOW
        world.model.health = lambda: [Health("rasa server", DEAD, "test")]
    else:
        world.actions.health = lambda: [Health("forwarder", DEAD, "test"),
                                        Health("action server", SLOW, "test")]
    world.serving.live_server = None  # what live() says of a server that answers late
    before = list(world.serving.history)
    revived = Supervisor(world.agent).round(world.agent)
    assert revived == []  # memory: no Rasa server or forwarder of its own; nothing else
    assert world.serving.history == before  # no second action server
    kinds = [e.kind for e in world.journal.events(limit=20)]
    assert "server.dead" in kinds and "server.slow" in kinds


def test_the_log_of_an_older_release_whose_server_is_live_is_kept(tmp_path: Path) -> None:
    """Release 2 changed no action code, so release 1's server stayed live (and a
    revive or rollback reactivates it): its log is kept beyond `keep_logs`, also
    while the busy server does not say which release it runs (live() None)."""
    world = memory_world(tmp_path, "keep_logs: 1\n")
    first = world.release(model_id="m1", calls={"action_a"}, code="c1", status=PROMOTED,
                          live=True)
    second = world.release(model_id="m2", calls={"action_a"}, code="c1", status=PROMOTED)
    world.journal.update_release(second, action_server=None)  # deploy_actions kept 1's
    failed = world.release(model_id="m3", calls={"action_b"}, code="c3", status=FAILED)
    logs = world.agent.config.work_dir / "action-server"
    logs.mkdir(parents=True)
    for number in (first, second, failed):
        (logs / f"actions-{number}.log").write_text("log\n", encoding="utf-8")
    world.serving.live_server = None  # busy: GET /actions answered late
    assert server_releases(world.agent) == {first}
    prune(world.agent)
    assert sorted(p.name for p in logs.iterdir()) == sorted(
        f"actions-{n}.log" for n in (first, second, failed))
    (logs / "actions-0.log").write_text("an old one\n", encoding="utf-8")
    prune(world.agent)
    assert not (logs / "actions-0.log").exists()  # the bound still applies to others
