"""Crash safety: the real agent is SIGKILLed at every step boundary and inside
train, the action-server switch, the model load and promotion, then restarted.

Kill points are armed through the environment (`RASA_GITOPS_KILL_AT`, see
agent/faults.py): the code under test is the code that ships. Each scenario is
a commit on a real bare repo, an `agent once` that dies at its point (exit -9)
and an `agent once` that restarts. After the restart, production is fully the
old release or fully the new one: the journal's pointer, the model the real
Rasa server reports on /status, the greeting that model answers with, and the
opening hours the live action server answers with all belong to one release.
The action-subset invariant holds (also right after the crash), the journal
passes SQLite's integrity check, the interrupted release is marked and retried
(or given up after two tries), and no lock is left.

The gate boundaries are taken two per commit (a try and its retry both die,
the release is given up): cheap, since nothing was switched. The points inside
the switches are each retried to a promotion. The deploy host is shared with
the other reliability and security modules (tests/support/deploy_host.py).
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from agent.journal import FAILED, INTERRUPTED, PROMOTED, STAGED
from tests.support.agent_config import agent_config
from tests.support.deploy_host import Host, assert_consistent, assert_invariant_now

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(3600)]

def crash_then_restart(host: Host, point: str, sender: str,
                       retrain: bool = True) -> tuple[int, int]:
    sha = host.push_change(f"change killed at {point}", retrain=retrain)
    crashed = host.agent("once", kill_at=point)
    assert crashed.returncode == -9, (point, crashed.stdout[-2000:], crashed.stderr[-2000:])
    journal = host.journal()
    try:
        (interrupted,) = [r for r in journal.releases_of_commit(sha)]
        assert interrupted.status == "running"  # what a SIGKILL leaves
    finally:
        journal.close()
    if host.journal().production_release("production") is not None:
        assert_invariant_now(host)
    restarted = host.agent("once")
    assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
    journal = host.journal()
    try:
        old = journal.release(interrupted.id)
        assert old.status == INTERRUPTED
        assert INTERRUPTED in {s.status for s in journal.steps(old.id)} or point in {
            "release.promoting"} or point.endswith(".end")
        retry = journal.releases_of_commit(sha)[-1]
        assert retry.retry_of == old.id
        assert retry.status == PROMOTED, retry.reason
    finally:
        journal.close()
    assert assert_consistent(host, sender) == retry.id
    return old.id, retry.id


def test_a_crash_inside_training_of_the_first_release(host: Host) -> None:
    # Nothing is in production yet; the model file exists but the journal
    # doesn't know it. The retry trains again (from Rasa's cache) and promotes.
    crash_then_restart(host, "train.trained", "first")


def test_a_crash_while_rasa_train_runs(host: Host) -> None:
    crash_then_restart(host, "train.running", "train")


# Step boundaries of the gates, two per commit: the first try dies at one,
# its retry at the next, and the release is given up. Nothing was switched,
# so production must be exactly what it was, with no lock left.
GATE_PAIRS = [
    ("step.checkout.start", "step.checkout.end"),
    ("step.validate.end", "step.train.end"),
    ("step.test.end", "step.action_tests.end"),
]


@pytest.mark.parametrize(("first", "second"), GATE_PAIRS, ids=[p[0] for p in GATE_PAIRS])
def test_crashes_at_gate_boundaries_leave_production_as_it_was(
    host: Host, first: str, second: str
) -> None:
    before = assert_consistent(host, f"gates-{first}")
    sha = host.push_change(f"killed at {first} then {second}", retrain=False)
    for point in (first, second):
        crashed = host.agent("once", kill_at=point)
        assert crashed.returncode == -9, (point, crashed.stdout[-2000:], crashed.stderr[-2000:])
    given_up = host.agent("once")
    assert given_up.returncode == 0 and "interrupted 2 times" in given_up.stdout
    journal = host.journal()
    try:
        tries = journal.releases_of_commit(sha)
        assert [r.status for r in tries] == [INTERRUPTED, INTERRUPTED]
        assert tries[1].retry_of == tries[0].id
        # Each try stopped where it was killed: the next step never started.
        for release, point in zip(tries, (first, second), strict=True):
            step = point.split(".")[1]
            names = [s.name for s in journal.steps(release.id)]
            assert names[-1] == step, (point, names)
    finally:
        journal.close()
    assert assert_consistent(host, f"gates-{second}") == before


# The points inside the deploy switches, each retried after the crash. Where the
# crash leaves the new model loaded, old and new models differ (`retrain`).
SWITCH_POINTS = [
    ("step.deploy_actions.start", False), ("actions.switched", False),
    ("step.deploy_actions.end", False), ("step.activate_model.start", False),
    ("model.loaded", True), ("step.activate_model.end", True), ("step.smoke.end", False),
    ("release.promoting", True),
]


@pytest.mark.parametrize(("point", "retrain"), SWITCH_POINTS,
                         ids=[p[0] for p in SWITCH_POINTS])
def test_a_crash_inside_the_switches_is_retried_and_production_is_whole(
    host: Host, point: str, retrain: bool
) -> None:
    assert host.journal().production_release("production") is not None
    crash_then_restart(host, point, f"at-{point}", retrain=retrain)


def test_a_release_interrupted_twice_is_given_up_and_production_stays_old(host: Host) -> None:
    before = assert_consistent(host, "twice-before")
    sha = host.push_change("killed twice")
    first = host.agent("once", kill_at="step.deploy_actions.end")  # new server, old model
    assert first.returncode == -9
    second = host.agent("once", kill_at="model.loaded")  # retried, killed mid-model switch
    assert second.returncode == -9
    assert_invariant_now(host)
    third = host.agent("once")
    assert third.returncode == 0, third.stderr
    assert "interrupted 2 times" in third.stdout
    journal = host.journal()
    try:
        statuses = [r.status for r in journal.releases_of_commit(sha)]
        assert statuses == [INTERRUPTED, INTERRUPTED]
        assert "not retried again" in journal.releases_of_commit(sha)[-1].reason
        restored = [e for e in journal.events() if e.kind == "production.restored"]
        assert restored and restored[0].release_id == before
    finally:
        journal.close()
    # The model and the action server the crashed tries switched to are undone.
    assert assert_consistent(host, "twice-after") == before
    status = host.agent("status", "--json")
    data = json.loads(status.stdout)
    assert data["last_failure"]["status"] == INTERRUPTED and data["lock"] is None


def test_a_crash_inside_agent_promote_is_undone_after_unlock(host: Host) -> None:
    manual = agent_config(host.root / "agent-manual.yml", like=host.config,
                          environments={"production": {"promote": "manual"}})
    before = assert_consistent(host, "promote-before")
    host.push_change("staged, then promoted by a crashing hand")
    staged = host.agent("once", config=manual)
    assert staged.returncode == 0, staged.stderr
    journal = host.journal()
    release = journal.last_release()
    journal.close()
    assert release is not None and release.status == STAGED
    crashed = host.agent("promote", str(release.id), kill_at="promote.switched", config=manual)
    assert crashed.returncode == -9
    assert_invariant_now(host)  # switched, but the pointer did not move
    assert host.journal().production_release("production").id == before  # type: ignore[union-attr]
    # The dead promote's lock is reported as stale, and `agent unlock` frees it.
    busy = host.agent("once", config=manual)
    assert "stale lock" in busy.stdout
    unlocked = host.agent("unlock", config=manual)
    assert unlocked.returncode == 0, unlocked.stderr
    after = host.agent("once", config=manual)
    assert after.returncode == 0, after.stderr
    assert assert_consistent(host, "promote-after") == before
    # And promoting it again works.
    done = host.agent("promote", str(release.id), config=manual)
    assert done.returncode == 0, done.stderr
    assert assert_consistent(host, "promote-again") == release.id


def test_a_sigkill_never_corrupts_the_journal_file(host: Host) -> None:
    # Every scenario above ran SQLite under SIGKILL; the file still opens from
    # a fresh connection and every release is in a final state.
    db = sqlite3.connect(host.root / "work" / "journal.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        states = {row[0] for row in db.execute("SELECT status FROM releases")}
    finally:
        db.close()
    assert states <= {PROMOTED, INTERRUPTED, STAGED, FAILED, "skipped", "superseded"}
