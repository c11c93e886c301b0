"""THE way to run test stories (hooks/stories/rasa_test.py), against a stand-in
for `rasa test` that reads and writes what Rasa 3.6 does (tests/support/fake_rasa.py);
tests/hooks/test_rasa_test_stories.py runs the real Rasa."""

from __future__ import annotations

from pathlib import Path

import pytest

from hooks.core.errors import FatalError
from hooks.project.load import load_data
from hooks.project.model import Story
from hooks.stories.rasa_test import failure_lines, run_test_stories, write_selection
from tests.support.fake_rasa import fake_rasa

STORIES = """\
version: "3.1"
stories:
  - story: {first}
    steps:
      - intent: greet
      - action: utter_greet
  - story: {second}
    steps:
      - intent: greet
      - action: utter_greet
      - intent: goodbye
      - action: utter_goodbye
"""


def _stories(root: Path, files: dict[str, tuple[str, str]]) -> list[Story]:
    paths = []
    for name, (first, second) in files.items():
        path = root / "tests" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(STORIES.format(first=first, second=second), encoding="utf-8")
        paths.append(path)
    return [s for s in load_data((), test_files=paths)[2] if s.kind == "test"]


def test_every_selected_file_is_named_test_whatever_its_source(tmp_path: Path) -> None:
    stories = _stories(tmp_path, {"a.yml": ("one", "two"), "test_b.yml": ("three", "four")})
    written = write_selection(stories, tmp_path / "out")
    assert sorted(p.name for p in written) == ["test_000_a.yml", "test_001_test_b.yml"]
    assert all(p.parent == (tmp_path / "out").resolve() for p in written)


def test_all_stories_of_two_files_are_evaluated_and_a_failure_in_the_second_is_located(
    tmp_path: Path,
) -> None:
    rasa = fake_rasa(tmp_path / "bin")
    stories = _stories(tmp_path, {"test_a.yml": ("one", "two"),
                                  "more.yml": ("three", "broken four")})
    result = run_test_stories([str(rasa)], tmp_path, tmp_path / "model.tar.gz", stories,
                              tmp_path / "results")
    assert result.evaluated == 4
    assert [f.name for f in result.failures] == ["broken four"]
    assert failure_lines(result, tmp_path) == [
        "tests/more.yml:10: story 'broken four' (line 7) failed at turn 2: expected action "
        "'utter_greet', predicted 'utter_wrong'"
    ]


def test_no_story_evaluated_is_a_failure_not_a_pass(tmp_path: Path) -> None:
    rasa = fake_rasa(tmp_path / "bin", evaluate_nothing=True)
    stories = _stories(tmp_path, {"test_a.yml": ("one", "two")})
    with pytest.raises(FatalError, match="Rasa evaluated no conversation from the 2 test "
                                         r"stories given \(tests/test_a.yml\)"):
        run_test_stories([str(rasa)], tmp_path, tmp_path / "model.tar.gz", stories,
                         tmp_path / "results")
