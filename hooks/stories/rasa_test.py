"""THE way to run test stories through Rasa and read its verdict.

The rasa-test-stories hook and the deploy agent's test step both call
`run_test_stories`: the stories go to Rasa in files named `test_*` (Rasa 3.6
reads end-to-end test stories only from such files, and silently skips the
rest), through `rasa test core --e2e` (the user's text goes through the model's
own NLU, as in production). The verdict is what Rasa writes, never its console:
`story_report.json` says how many conversations it evaluated and
`failed_test_stories.yml` which ones failed, turn by turn.

Why not `--fail-on-prediction-errors`: with it Rasa stops at the first wrong
prediction with an exception and writes neither file, so the other failures
and the count of evaluated stories would be lost. Reading the failed stories
gives the same verdict (tests/hooks/test_rasa_test_stories.py compares the two).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from hooks.core.errors import FatalError
from hooks.core.process import run
from hooks.core.yaml_lines import LDict, LList, load_yaml, plain
from hooks.project.model import Story
from hooks.stories.results import LISTEN, FailedStory, describe, parse_failed_stories, turn_line

TEST_TIMEOUT_S = 1800.0
FAILED_STORIES = "failed_test_stories.yml"
STORY_REPORT = "story_report.json"
TEST_PREFIX = "test_"  # Rasa's TEST_STORIES_FILE_PREFIX
SELECTED = "selected"


@dataclass(frozen=True)
class StoryRun:
    """What Rasa said about the stories it was given."""

    stories: tuple[Story, ...]
    evaluated: int  # conversations Rasa evaluated (checkpoints may merge stories)
    failures: tuple[FailedStory, ...]
    written: dict[Path, Path]  # {file Rasa read: the source test file}
    out: Path

    @property
    def failed_file(self) -> Path:
        return self.out / FAILED_STORIES


def write_selection(stories: Sequence[Story], folder: Path) -> dict[Path, Path]:
    """One YAML file per source test file, holding only the given stories.

    Returns {written file: source file} so Rasa's report can be mapped back.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    by_source: dict[Path, list[Story]] = {}
    for story in stories:
        by_source.setdefault(story.path, []).append(story)
    written: dict[Path, Path] = {}
    for number, (source, chosen_stories) in enumerate(sorted(by_source.items())):
        doc = load_yaml(source)
        assert isinstance(doc, LDict)
        lines = {s.line for s in chosen_stories}
        out: dict[str, object] = {}
        if "version" in doc:
            out["version"] = str(doc["version"])
        for key in ("stories", "rules"):
            items = doc.get(key)
            if isinstance(items, LList):
                chosen = [plain(i) for i in items if isinstance(i, LDict) and i.line in lines]
                if chosen:
                    out[key] = chosen
        # Rasa reads test stories only from files named test_*.
        target = folder / f"{TEST_PREFIX}{number:03d}_{source.name}"
        target.write_text(yaml.safe_dump(out, sort_keys=False, allow_unicode=True),
                          encoding="utf-8")
        written[target.resolve()] = source
    return written


def _evaluated(report: Path, said: str) -> int:
    """Conversations Rasa evaluated, from its story report (absent when none)."""
    if not report.is_file():
        raise FatalError(f"`rasa test` wrote no {STORY_REPORT} in {report.parent}, so the "
                         f"verdict is unknown. Rasa said:\n{said}")
    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
        return int(doc.get("conversation_accuracy", {}).get("total", 0))
    except (ValueError, AttributeError, TypeError):
        raise FatalError(f"`rasa test` wrote an unreadable {report}; the verdict is "
                         "unknown.") from None


def run_test_stories(
    rasa: Sequence[str],
    root: Path,
    model: Path,
    stories: Sequence[Story],
    out: Path,
    *,
    timeout: float = TEST_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
    background: bool = False,
) -> StoryRun:
    """Run `stories` (test stories of the bot at `root`) on `model`; results in `out`.

    `background=True` runs Rasa at the lowest CPU and IO priority (the deploy
    agent, beside a live bot); the hook runs it at normal priority.

    Raises FatalError when Rasa can't judge them, and when it evaluated no
    conversation at all although stories were given: that is never a pass.
    """
    if not stories:
        raise ValueError("run_test_stories needs at least one story")
    out.mkdir(parents=True, exist_ok=True)
    selected = out / SELECTED
    written = write_selection(stories, selected)
    for name in (FAILED_STORIES, STORY_REPORT):
        (out / name).unlink(missing_ok=True)
    argv = [
        *rasa, "test", "core", "--e2e",
        "--stories", str(selected),
        "--model", str(model),
        "--out", str(out),
        "--no-plot",
    ]
    done = run(argv, cwd=root, timeout=timeout, stream=progress, background=background)
    if not done.ok:
        raise FatalError(
            f"`rasa test` failed (exit {done.returncode}) before it could judge the stories. "
            f"Rasa said:\n{done.tail(25)}"
        )
    evaluated = _evaluated(out / STORY_REPORT, done.tail(15))
    if evaluated == 0:
        files = ", ".join(sorted({os.path.relpath(s.path, root) for s in stories}))
        raise FatalError(
            f"Rasa evaluated no conversation from the {len(stories)} test stories given "
            f"({files}), so nothing was tested. Check that they are Rasa test stories "
            "(stories: with steps)."
        )
    failed_file = out / FAILED_STORIES
    if not failed_file.is_file():
        raise FatalError(
            f"`rasa test` wrote no {FAILED_STORIES} in {out}, so the verdict is unknown. "
            f"Rasa said:\n{done.tail(15)}"
        )
    failures = parse_failed_stories(failed_file.read_text(encoding="utf-8"))
    return StoryRun(tuple(stories), evaluated, tuple(failures), written, out)


def _match(failed: FailedStory, stories: Sequence[Story], written: dict[Path, Path],
           used: set[int]) -> Story | None:
    source = written.get(failed.source.resolve()) if failed.source else None
    for index, story in enumerate(stories):
        if index in used or story.name != failed.name:
            continue
        if source is not None and story.path != source:
            continue
        used.add(index)
        return story
    return None


def failure_lines(result: StoryRun, base: Path) -> list[str]:
    """One line per failed story, `file:line: story 'name' (line N) failed at ...`,
    the line being the turn Rasa predicted differently; paths relative to `base`."""
    lines: list[str] = []
    used: set[int] = set()
    for failed in result.failures:
        story = _match(failed, result.stories, result.written, used)
        what = describe(failed)
        if story is None:
            lines.append(f"story '{failed.name}' failed: {what}")
            continue
        wrong = failed.first_wrong()
        line = story.line
        if wrong is not None:
            index, turn = wrong
            line = turn_line(story, index - 1 if turn.expected == LISTEN else index)
        where = os.path.relpath(story.path, base)
        lines.append(f"{where}:{line}: story '{failed.name}' (line {story.line}) "
                     f"failed at {what}")
    return lines
