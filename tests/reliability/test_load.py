"""Load: 50 pushes in a burst to the bare repo the running daemon watches.

The real daemon (`agent run`) watches the bare repo with watchdog while 50
commits are pushed one after another (a few seconds in all). Whatever woke it,
each tick releases only the newest commit: no release per push piles up, the
releases never overlap, every commit between two releases is journaled as
skipped, superseded by exactly the release that jumped over it, and the newest
commit is what serves. A release still in its gates when a newer commit
arrives is abandoned as `superseded` (`agent.supersede`), so exactly one
release of the burst is promoted: the newest. (How many releases the burst
starts depends on the machine; before supersede a real run promoted 4.)
"""

from __future__ import annotations

import itertools
import time

import pytest

from agent.journal import PROMOTED, SKIPPED, SUPERSEDED
from tests.support.daemons import running_daemon, stop_daemon
from tests.support.deploy_host import Host, assert_consistent
from tests.support.git import git

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(1800)]
PUSHES = 50


def _wait_idle(host: Host, newest: str) -> None:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        journal = host.journal()
        try:
            done = [r for r in journal.releases_of_commit(newest) if r.status != "running"]
            if done and not journal.in_flight():
                return
        finally:
            journal.close()
        time.sleep(0.5)
    raise AssertionError("the daemon never released the newest commit")


def test_fifty_pushes_deploy_only_the_newest_and_journal_the_rest(host: Host) -> None:
    if host.journal().production_release("production") is None:  # run alone: a first release
        host.push_change("first release")
        assert host.agent("once").returncode == 0
    journal = host.journal()
    last = journal.last_release()
    journal.close()
    assert last is not None
    with running_daemon(host) as daemon:
        pushed_before = git(host.src, "rev-parse", "HEAD")
        commits = []
        for number in range(PUSHES):
            notes = host.src / "NOTES.md"
            notes.write_text(f"push {number}\n", encoding="utf-8")
            git(host.src, "add", "-A")
            git(host.src, "commit", "-q", "-m", f"burst push {number}")
            git(host.src, "push", "-q", "deploy", "main")
            commits.append(git(host.src, "rev-parse", "HEAD"))
        # Only NOTES.md changed: the same replies as the commit pushed before.
        host.expected[commits[-1]] = host.expected[pushed_before]
        _wait_idle(host, commits[-1])
        stop_daemon(daemon)
    journal = host.journal()
    try:
        burst = [r for r in journal.releases(limit=500) if r.id > last.id]
        by_commit = {r.commit: r for r in burst}
        assert set(by_commit) == set(commits)  # every push is in the journal
        index = {sha: number for number, sha in enumerate(commits)}
        released = sorted((r for r in burst if r.status != SKIPPED),
                          key=lambda r: index[r.commit])
        assert released[-1].commit == commits[-1] and released[-1].status == PROMOTED
        # The newest commit wins: every earlier release of the burst was abandoned
        # in its gates for a newer commit, which its reason names.
        for release in released[:-1]:
            assert release.status == SUPERSEDED, (release.id, release.status, release.reason)
            newer = release.reason.removeprefix("superseded by ").split(",")[0]
            assert any(index[sha] > index[release.commit] and sha.startswith(newer)
                       for sha in commits), release.reason
        for before, after in itertools.pairwise(released):  # one at a time, in push order
            assert before.id < after.id
            assert before.finished_at is not None and after.started_at is not None
            assert before.finished_at <= after.started_at
        # No pile-up: each tick took the newest commit and journaled every commit it
        # jumped over as superseded by exactly that release; nothing queued up.
        skipped = [r for r in burst if r.status == SKIPPED]
        assert skipped and len(skipped) == PUSHES - len(released)
        for release in skipped:
            superseder = next(r for r in released if index[r.commit] > index[release.commit])
            assert release.reason == f"superseded by {superseder.commit[:8]}", release.reason
        assert journal.production_release("production").commit == commits[-1]  # type: ignore[union-attr]
    finally:
        journal.close()
    assert_consistent(host, "burst")
