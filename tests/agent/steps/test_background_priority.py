"""The agent's long steps start their commands at background priority (nice 19,
idle IO class), so the live bot on the same host keeps answering; with
`pipeline.priority: normal` they don't. The command is a stand-in that records
the priority it really runs at and fails (tests/support/priority.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.journal import Release
from agent.repo import Mirror
from agent.steps import StepContext, StepFailed, action_tests, nlu_gate, test, train
from tests.support.agent_config import agent_config
from tests.support.bots import copy_bot
from tests.support.git import git, init_repo
from tests.support.nlu import move_greetings
from tests.support.paths import COFFEEBOT, NLUBOT
from tests.support.priority import io_class, niceness, priority_recorder, recorded
from tests.support.records import release_record

BACKGROUND = (19, "idle")
OWN = (-1, "the test's own")  # stands for `own()`, read when the test runs


def own() -> tuple[int, str]:
    return niceness(os.getpid()), io_class(os.getpid())

RELEASE = release_record()


@dataclass
class Journal:
    """The journal as these steps use it: one release, nothing to reuse."""

    updates: list[dict[str, Any]] = field(default_factory=list)

    def release(self, release_id: int) -> Release:
        return RELEASE

    def update_release(self, release_id: int, **fields: Any) -> None:
        self.updates.append(fields)

    def reusable_model(self, fingerprint: str) -> None:
        return None


def _context(tmp_path: Path, priority: str | None, worktree: Path, *,
             mirror: Mirror | None = None, production: Release | None = None,
             **blocks: Any) -> tuple[StepContext, Path]:
    record = tmp_path / "record"
    command = priority_recorder(tmp_path / "bin" / "rasa", record)
    pipeline = dict(blocks.pop("pipeline", {}))
    if priority is not None:
        pipeline["priority"] = priority
    config = load_config(agent_config(
        tmp_path / "agent.yml", repo=tmp_path / "bot.git", work_dir=tmp_path / "work",
        rasa_command=command, pipeline=pipeline, **blocks))
    ctx = StepContext(
        config=config, journal=Journal(),  # type: ignore[arg-type]
        mirror=mirror, targets=None,  # type: ignore[arg-type]
        release_id=RELEASE.id, commit=RELEASE.commit, rasa_argv=[str(command)],
        log=lambda line: None, worktree=worktree, production=production,
    )
    return ctx, record


@pytest.mark.parametrize(("priority", "expected"),
                         [(None, BACKGROUND), ("background", BACKGROUND), ("normal", OWN)])
def test_training_runs_at_the_configured_priority(
        tmp_path: Path, priority: str | None, expected: tuple[int, str]) -> None:
    ctx, record = _context(tmp_path, priority, copy_bot(COFFEEBOT, tmp_path / "bot"))
    with pytest.raises(StepFailed, match="rasa train failed"):
        train.run(ctx)
    assert recorded(record) == (own() if expected == OWN else expected)


def test_test_stories_run_in_the_background(tmp_path: Path) -> None:
    worktree = tmp_path / "release"
    (worktree / "tests").mkdir(parents=True)
    (worktree / "tests" / "test_a.yml").write_text(
        'version: "3.1"\nstories:\n  - story: hi\n    steps:\n      - user: hello\n'
        "        intent: greet\n      - action: utter_greet\n", encoding="utf-8")
    ctx, record = _context(tmp_path, None, worktree)
    with pytest.raises(StepFailed, match="rasa test"):
        test.run(ctx)
    assert recorded(record) == BACKGROUND


@pytest.mark.parametrize(("priority", "expected"),
                         [("background", BACKGROUND), ("normal", OWN)])
def test_action_tests_run_at_the_configured_priority(
        tmp_path: Path, priority: str, expected: tuple[int, str]) -> None:
    worktree = tmp_path / "release"
    worktree.mkdir()
    ctx, record = _context(tmp_path, priority, worktree,
                           pipeline={"action_tests": str(tmp_path / "bin" / "rasa")})
    with pytest.raises(StepFailed, match="exit 3"):
        action_tests.run(ctx)
    assert recorded(record) == (own() if expected == OWN else expected)


def test_the_nlu_gate_compares_in_the_background(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = init_repo(copy_bot(NLUBOT, tmp_path / "src"))
    base = git(src, "rev-parse", "HEAD")
    move_greetings(src)  # an NLU change, so the gate compares
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "moved")
    bare = tmp_path / "bot.git"
    git(tmp_path, "clone", "-q", "--bare", str(src), str(bare))
    mirror = Mirror(str(bare), "main", tmp_path / "work" / "repo.git")
    mirror.fetch()
    worktree = mirror.add_worktree(git(src, "rev-parse", "HEAD"), tmp_path / "work" / "release")
    production = replace(RELEASE, id=1, commit=base, status="promoted")
    ctx, record = _context(tmp_path, None, worktree, mirror=mirror, production=production,
                           nlu_gate={"enabled": True})
    # The comparison runs Rasa's Python first (to learn its version): the recorder.
    monkeypatch.setenv("RASA_GITOPS_RASA", str(tmp_path / "bin" / "rasa"))
    monkeypatch.setenv("RASA_GITOPS_RASA_PYTHON", str(tmp_path / "bin" / "rasa"))
    with pytest.raises(StepFailed, match="NLU comparison failed"):
        nlu_gate.run(ctx)
    assert recorded(record) == BACKGROUND
