"""Fast tests of the journal package: status Enums and what SQLite really stores.

Statuses became Enums; the journal file, the event kinds and the JSON the CLI
prints must still hold the same plain words, or an older journal (and every
script reading `agent history --json`) would break.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agent.journal import (
    FAILED,
    FINAL,
    PROMOTED,
    QUEUED,
    Journal,
    Release,
    ReleaseStatus,
    Step,
    StepStatus,
)


def _release(journal: Journal, commit: str = "a" * 40, message: str = "one") -> Release:
    return journal.new_release(environment="production", commit=commit, branch="main",
                               author="A", message=message)


def _raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    """What the file holds, read by a plain sqlite3 connection (no row decoding)."""
    db = sqlite3.connect(path)
    try:
        return list(db.execute(sql))
    finally:
        db.close()


def test_statuses_format_as_their_plain_values() -> None:
    assert f"{ReleaseStatus.PROMOTED}" == "promoted"
    assert str(StepStatus.PASSED) == "passed"
    assert f"{ReleaseStatus.STAGED:<8}|" == "staged  |"
    assert f"release.{ReleaseStatus.FAILED}" == "release.failed"
    assert json.dumps([ReleaseStatus.SKIPPED, StepStatus.REUSED]) == '["skipped", "reused"]'
    # The old names are the Enum members, and still equal the old strings.
    assert PROMOTED is ReleaseStatus.PROMOTED and PROMOTED == "promoted"
    assert FAILED in {"failed"} and QUEUED == "queued"
    assert ReleaseStatus.STAGED in FINAL and ReleaseStatus.RUNNING not in FINAL


def test_statuses_round_trip_through_sqlite_as_plain_strings(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    release = _release(journal)
    journal.start_release(release.id)
    journal.start_step(release.id, "train")
    journal.finish_step(release.id, "train", StepStatus.REUSED, "reused", "log\n")
    journal.start_step(release.id, "test")
    journal.finish_step(release.id, "test", StepStatus.PASSED, "2 stories", "")
    journal.finish_release(release.id, ReleaseStatus.PROMOTED,
                           promote_environment="production")

    assert _raw(path, "SELECT status, typeof(status) FROM releases") == [("promoted", "text")]
    assert sorted(_raw(path, "SELECT name, status, typeof(status) FROM steps")) == [
        ("test", "passed", "text"), ("train", "reused", "text")]
    kinds = [kind for (kind,) in _raw(path, "SELECT kind FROM events ORDER BY id")]
    assert kinds == ["release.queued", "release.started", "release.promoted"]

    again = journal.release(release.id)
    assert again.status is ReleaseStatus.PROMOTED
    steps = {s.name: s for s in journal.steps(release.id)}
    assert isinstance(steps["train"], Step)
    assert steps["train"].status is StepStatus.REUSED
    assert steps["test"].status is StepStatus.PASSED
    journal.close()


def test_a_journal_written_with_plain_strings_reads_as_enums(tmp_path: Path) -> None:
    """An older agent wrote bare strings; they decode to the same members."""
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    release = _release(journal)
    journal.start_step(release.id, "train")
    journal.finish_step(release.id, "train", "passed", "ok", "")  # type: ignore[arg-type]
    journal.finish_release(release.id, "failed", "test: broke")  # type: ignore[arg-type]
    assert journal.release(release.id).status is ReleaseStatus.FAILED
    assert journal.steps(release.id)[0].status is StepStatus.PASSED
    assert [r.id for r in journal.releases(status=ReleaseStatus.FAILED)] == [release.id]
    assert journal.last_failure() is not None


def test_a_misspelt_status_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    release = _release(journal)
    with pytest.raises(ValueError):
        journal.finish_release(release.id, "promotd")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        journal.finish_step(release.id, "train", "pased", "", "")  # type: ignore[arg-type]
    assert journal.release(release.id).status is ReleaseStatus.QUEUED
    assert journal.steps(release.id) == []


def test_release_as_dict_is_plain_json(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    release = _release(journal)
    journal.update_release(release.id, required_actions=["b", "a"],
                           action_server={"url": "http://x"})
    journal.finish_release(release.id, ReleaseStatus.STAGED, "waiting")
    data = journal.release(release.id).as_dict()
    assert type(data["status"]) is str and data["status"] == "staged"
    assert data["required_actions"] == ["a", "b"]
    assert json.loads(json.dumps(data))["status"] == "staged"


def test_mark_interrupted_sets_release_and_running_steps(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    release = _release(journal)
    journal.start_release(release.id)
    journal.start_step(release.id, "checkout")
    journal.finish_step(release.id, "checkout", StepStatus.PASSED, "ok", "")
    journal.start_step(release.id, "train")
    journal.mark_interrupted(release.id, "crash")
    assert journal.release(release.id).status is ReleaseStatus.INTERRUPTED
    statuses = {s.name: s.status for s in journal.steps(release.id)}
    assert statuses == {"checkout": StepStatus.PASSED, "train": StepStatus.INTERRUPTED}


def test_staged_release_promoted_by_moving_the_pointer(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    release = _release(journal)
    journal.finish_release(release.id, ReleaseStatus.STAGED, "manual policy")
    journal.set_production("production", release.id, kind="release.promoted_by_hand",
                           actor="tester", reason="checked")
    assert journal.release(release.id).status is ReleaseStatus.PROMOTED
    assert journal.production_release("production") == journal.release(release.id)
    assert journal.events(limit=1)[0].actor == "tester"


def test_a_step_left_running_by_a_crashed_promote_is_marked_interrupted(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        promoted = _release(journal)
        journal.start_release(promoted.id)
        journal.finish_release(promoted.id, ReleaseStatus.PROMOTED, "")
        journal.start_step(promoted.id, "promote.activate_model")  # then the agent died
        running = _release(journal, commit="b" * 40, message="two")
        journal.start_release(running.id)
        journal.start_step(running.id, "train")  # a live release's step is left alone
        assert journal.interrupt_stray_steps("the agent stopped") == 1
        stray = {s.name: s for s in journal.steps(promoted.id)}["promote.activate_model"]
        assert stray.status is StepStatus.INTERRUPTED and stray.summary == "the agent stopped"
        assert journal.steps(running.id)[0].status is StepStatus.RUNNING
    finally:
        journal.close()
