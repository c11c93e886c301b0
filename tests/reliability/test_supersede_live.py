"""The newest commit wins, and a rollback never waits for a training: end to end.

The real daemon (`agent run`) watches the shared deploy host's bare repo; the
release under test really runs `rasa train` (a bot component that sleeps while
training, `tests.support.slow_training`, so the window costs no CPU).

- Supersede: 10 pushes arrive while release 1 trains. Release 1 is superseded
  (its train step abandoned within seconds), exactly one release is promoted
  (the 10th commit's), and every other commit is skipped or superseded.
- Rollback during training: `agent rollback` (its own process) returns within
  30 s while the daemon's release is still training; production is the earlier
  release at once, and the training release ends `staged` (the rollback paused
  auto-promotion), never switched live.
"""

from __future__ import annotations

import time

import pytest

from agent.journal import PROMOTED, SKIPPED, STAGED, SUPERSEDED, Release
from tests.support.daemons import running_daemon, stop_daemon
from tests.support.deploy_host import Host, assert_consistent
from tests.support.git import git
from tests.support.slow_training import make_training_slow, training, undo_slow_training

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(900)]
PUSHES = 10


def commit_and_push(host: Host, message: str) -> str:
    git(host.src, "add", "-A")
    git(host.src, "commit", "-q", "-m", message)
    git(host.src, "push", "-q", "deploy", "main")
    return git(host.src, "rev-parse", "HEAD")


def settled(host: Host, commit: str, timeout: float = 600) -> Release:
    """Wait until `commit` has a finished release and nothing is in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        journal = host.journal()
        try:
            done = [r for r in journal.releases_of_commit(commit)
                    if r.status not in {"running", "queued"}]
            if done and not journal.in_flight():
                return done[-1]
        finally:
            journal.close()
        time.sleep(0.3)
    raise AssertionError(f"{commit[:8]} was never released")


def production_and_earlier(host: Host) -> tuple[Release | None, Release | None]:
    journal = host.journal()
    try:
        production = journal.production_release("production")
        earlier = None if production is None else journal.previous_production(
            "production", before=production.id)
        return production, earlier
    finally:
        journal.close()


def release_a_change(host: Host, message: str) -> None:
    host.push_change(message)
    done = host.agent("once")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ten_pushes_supersede_a_training_release_and_only_the_newest_is_promoted(
    host: Host,
) -> None:
    if production_and_earlier(host)[0] is None:  # run alone: a first release
        release_a_change(host, "first release")
    pushed_before = git(host.src, "rev-parse", "HEAD")
    with running_daemon(host) as proc:
        fast_config = make_training_slow(host.src, 300)  # trains for 5 minutes unless stopped
        slow = commit_and_push(host, "a training that lasts")
        first = training(host.journal, slow)
        started = time.monotonic()
        commits = []
        for number in range(PUSHES):
            if number == 0:  # back to the config production was trained with
                undo_slow_training(host.src, fast_config)
            (host.src / "NOTES.md").write_text(f"push {number}\n", encoding="utf-8")
            commits.append(commit_and_push(host, f"push {number} while release 1 trains"))
        newest = settled(host, commits[-1])
        took = time.monotonic() - started
        out = stop_daemon(proc)
    # The newest commit has the training inputs and replies of the commit before.
    host.expected[commits[-1]] = host.expected[pushed_before]
    journal = host.journal()
    try:
        release_1 = journal.release(first.id)
        assert release_1.status == SUPERSEDED, (release_1.reason, out)
        assert release_1.reason.startswith("superseded by "), release_1.reason
        assert release_1.reason.split()[2].rstrip(",") in {c[:8] for c in commits}, \
            release_1.reason
        train = next(s for s in journal.steps(first.id) if s.name == "train")
        assert train.status == "abandoned" and "superseded by" in train.summary, train
        assert release_1.finished_at is not None and release_1.started_at is not None
        assert release_1.finished_at - train.started_at < 60  # not the 300 s it would train
        burst = [r for r in journal.releases(limit=500) if r.id > first.id]
        assert {r.commit for r in burst} == set(commits)  # every push is in the journal
        promoted = [r for r in burst if r.status == PROMOTED]
        assert [r.commit for r in promoted] == [commits[-1]] and promoted[0].id == newest.id
        others = [r for r in burst if r.commit != commits[-1]]
        assert {r.status for r in others} <= {SKIPPED, SUPERSEDED}, [
            (r.id, r.status, r.reason) for r in others]
        index = {sha: number for number, sha in enumerate(commits)}
        for release in others:  # each names the newer commit that took its place
            newer = release.reason.split()[2].rstrip(",")
            assert any(index[c] > index[release.commit] and c.startswith(newer)
                       for c in commits), release.reason
        assert journal.production_release("production").id == newest.id  # type: ignore[union-attr]
        kinds = [e.kind for e in journal.events() if e.release_id == first.id]
        assert "release.superseded" in kinds
    finally:
        journal.close()
    assert took < 240, took
    assert "superseded" in host.agent("status").stdout
    history = host.agent("history")
    assert "superseded" in history.stdout and str(first.id) in history.stdout
    assert_consistent(host, "supersede")


def test_a_rollback_while_a_release_trains_returns_within_30_s_and_the_release_stages(
    host: Host,
) -> None:
    current, earlier = production_and_earlier(host)
    if current is None:
        release_a_change(host, "first release")
    # The rollback must really switch: another model and other action code.
    if earlier is None or current is None or earlier.model_id == current.model_id:
        release_a_change(host, "a release to roll back from")
    current, earlier = production_and_earlier(host)
    assert current is not None and earlier is not None and earlier.model_id
    assert earlier.model_id != current.model_id
    with running_daemon(host) as proc:
        gate = host.src.parent / f"training-gate-{time.monotonic_ns()}"  # one per run
        fast_config = make_training_slow(host.src, 60, gate)  # outlasts the rollback (~5 s)
        slow = commit_and_push(host, "a training during an incident")
        trains = training(host.journal, slow)
        time.sleep(1)  # `rasa train` is under way
        started = time.monotonic()
        rolled = host.agent("rollback", "--reason", "incident during a training")
        took = time.monotonic() - started
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert took < 30, took
        # Production is the earlier release now, while the release still trains.
        journal = host.journal()
        try:
            assert journal.production_release("production").id == earlier.id  # type: ignore[union-attr]
            steps = {s.name: s.status for s in journal.steps(trains.id)}
            assert journal.release(trains.id).status == "running"
            assert steps["train"] == "running", steps
        finally:
            journal.close()
        assert host.live()[0] == earlier.model_id
        assert host.say("when are you open", "rollback") == [host.expected[earlier.commit][1]]
        gate.touch()  # the training may end now
        done = settled(host, slow)
        stop_daemon(proc)
    journal = host.journal()
    try:
        assert done.id == trains.id and done.status == STAGED, (done.status, done.reason)
        assert "paused" in done.reason, done.reason
        assert {s.name: s.status for s in journal.steps(trains.id)}["train"] == "passed"
        assert journal.production_release("production").id == earlier.id  # type: ignore[union-attr]
    finally:
        journal.close()
    # Leave the host as the next test expects it: auto-promotion on, a fast config.
    assert host.agent("resume").returncode == 0
    undo_slow_training(host.src, fast_config)
    back = commit_and_push(host, "back to the fast config")
    host.expected[back] = host.expected[current.commit]  # the replies of its tree
    assert_consistent(host, "after-rollback")
