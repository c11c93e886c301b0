"""The agent's test step over the hooks' way of running test stories.

A stand-in for `rasa test` that reads and writes what Rasa 3.6 does
(tests/support/fake_rasa.py) keeps these fast; tests/agent/test_pipeline.py runs
the same case (a broken story in a second test file) with the real Rasa.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from agent.config import load_config
from agent.journal import Release
from agent.steps import REUSED, SKIPPED, StepContext, StepFailed, test
from tests.support.agent_config import agent_config
from tests.support.fake_rasa import fake_rasa
from tests.support.records import release_record

STORY = """\
  - story: {name}
    steps:
      - user: hello
        intent: greet
      - action: utter_greet
"""

RELEASE = release_record()


@dataclass
class OneRelease:
    """The journal as the test step reads it: the release under test."""

    current: Release

    def release(self, release_id: int) -> Release:
        assert release_id == self.current.id
        return self.current


def _context(tmp_path: Path, files: dict[str, list[str]], *,
             evaluate_nothing: bool = False,
             pattern: str = "tests/test_*.yml") -> tuple[StepContext, list[str]]:
    worktree = tmp_path / "release"
    for name, stories in files.items():
        path = worktree / "tests" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('version: "3.1"\nstories:\n'
                        + "".join(STORY.format(name=n) for n in stories), encoding="utf-8")
    config = load_config(agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git",
                                      work_dir=tmp_path / "work",
                                      pipeline={"test_stories": pattern}))
    rasa = fake_rasa(tmp_path / "bin", evaluate_nothing=evaluate_nothing)
    log: list[str] = []
    ctx = StepContext(
        config=config, journal=OneRelease(RELEASE),  # type: ignore[arg-type]
        mirror=None, targets=None,  # type: ignore[arg-type]
        release_id=RELEASE.id, commit=RELEASE.commit, rasa_argv=[str(rasa)], log=log.append,
        worktree=worktree,
    )
    return ctx, log


def test_a_broken_story_in_the_second_file_fails_and_is_named(tmp_path: Path) -> None:
    ctx, log = _context(tmp_path, {"test_a.yml": ["fine"],
                                   "test_b.yml": ["also fine", "broken reply"]})
    with pytest.raises(StepFailed) as failed:
        test.run(ctx)
    assert failed.value.summary == (
        "test stories failed: tests/test_b.yml:12: story 'broken reply' (line 8) failed at "
        "turn 2: expected action 'utter_greet', predicted 'utter_wrong'")
    assert any("failed_test_stories.yml" in line for line in log)


def test_a_single_file_not_named_test_is_run(tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path, {"stories_e2e.yml": ["broken one"]}, pattern="tests/*.yml")
    with pytest.raises(StepFailed, match="story 'broken one'"):
        test.run(ctx)


def test_nothing_evaluated_fails_instead_of_passing(tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path, {"test_a.yml": ["fine"]}, evaluate_nothing=True)
    with pytest.raises(StepFailed, match="Rasa evaluated no conversation from the 1 test"):
        test.run(ctx)
    assert not (tmp_path / "work" / "test-verdicts").exists()


def test_a_pass_is_cached_for_the_same_model_and_stories(tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path, {"test_a.yml": ["fine"], "test_b.yml": ["fine too"]})
    outcome = test.run(ctx)
    assert outcome.summary == ("test stories passed (tests/test_a.yml, tests/test_b.yml; "
                               "2 conversation(s))")
    again = test.run(ctx)
    assert again.status == REUSED and "release 2" in again.summary
    ctx.journal = OneRelease(replace(RELEASE, model_id="m2"))  # type: ignore[assignment]
    assert test.run(ctx).status != REUSED


def test_no_matching_file_is_a_skip(tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path, {"other.yml": ["fine"]})
    assert test.run(ctx).status == SKIPPED
