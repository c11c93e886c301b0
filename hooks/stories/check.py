"""The engine of rasa-test-stories: pick the test stories a change can affect, get a
model for the tree (cached by fingerprint, else trained), run them through Rasa
(hooks/stories/rasa_test.py) and report each failure at its story and turn."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hooks.core.errors import LocatedError
from hooks.core.process import rasa_command
from hooks.core.yaml_lines import LDict, load_yaml
from hooks.project.fingerprint import rasa_identity, short_hash, tree_fingerprint
from hooks.project.load import load_project
from hooks.project.model import Layout, Story
from hooks.stories.model_cache import ModelCache
from hooks.stories.rasa_test import TEST_PREFIX, failure_lines, run_test_stories
from hooks.stories.selection import Pick, changed_story_lines, everything, select, touched_by

PROG = "rasa-test-stories"


@dataclass(frozen=True)
class Outcome:
    picked: int
    failed: int


def pick_stories(
    layout: Layout, tests: list[Story], changed: frozenset[Path] | None, base: str | None
) -> list[Pick]:
    if changed is None:
        return everything(tests, "--all")
    changed_tests = {path: changed_story_lines(path, base)
                     for path in changed & set(layout.tests) if path.exists()}
    touched = touched_by(layout, changed & set(layout.files), base)
    return select(tests, changed_tests, touched, layout.root)


def check_test_files(layout: Layout, tests: list[Story], changed: frozenset[Path] | None) -> None:
    """A changed test file that yields no story is broken, not 'nothing to test'."""
    with_stories = {s.path for s in tests}
    for path in layout.tests:
        if path in with_stories or (changed is not None and path not in changed):
            continue
        doc = load_yaml(path)
        if doc is None:
            continue  # an empty file really holds nothing to test
        # NLU test data (`nlu:`) often lives in tests/ too; it is not ours to judge.
        if not isinstance(doc, LDict) or not any(k in doc for k in ("stories", "rules", "nlu")):
            raise LocatedError(
                path, getattr(doc, "line", 1),
                "this test file holds no `stories:` list, so none of it can be tested. "
                "Write it as Rasa test stories (version/stories/steps).",
            )


def get_model(cache: ModelCache, layout: Layout, rasa: list[str], data: Sequence[str]) -> Path:
    fingerprint = tree_fingerprint(layout, rasa_identity(rasa))
    cached = cache.find(fingerprint)
    if cached is not None:
        print(f"model: reusing {cached} (no training: this tree was trained before)")
        return cached
    print(f"model: none for this tree yet; training (Rasa's incremental cache: "
          f"{cache.rasa_cache}) ...", flush=True)
    started = time.monotonic()
    model = cache.train(layout, fingerprint, rasa, data=data)
    print(f"model: trained in {time.monotonic() - started:.0f} s -> {model}")
    return model


def test_bot(
    layout: Layout, changed: frozenset[Path] | None, base: str | None, cache: ModelCache,
    data: Sequence[str],
) -> Outcome:
    cwd = Path.cwd()
    shown_root = os.path.relpath(layout.root, cwd)
    project = load_project(layout, with_tests=True)
    found = [s for s in project.stories if s.kind == "test"]
    check_test_files(layout, found, changed)
    # `rasa test` reads test stories only from files named test_*; so do we.
    tests = [s for s in found if s.path.name.startswith(TEST_PREFIX)]
    for path in sorted({s.path for s in found} - {s.path for s in tests}):
        print(f"{PROG}: note: {os.path.relpath(path, cwd)} is not run: Rasa runs test "
              f"stories only from files named {TEST_PREFIX}*.yml")
    if not tests:
        print(f"{PROG}: nothing to test in {shown_root}: no test stories in "
              f"{', '.join(sorted({os.path.relpath(p, cwd) for p in layout.tests})) or 'tests/'}")
        return Outcome(0, 0)
    picks = pick_stories(layout, tests, changed, base)
    if not picks:
        print(f"{PROG}: nothing to test in {shown_root}: no test story uses what changed "
              f"({len(tests)} test stories; `--all` runs them anyway)")
        return Outcome(0, 0)
    print(f"{PROG}: {shown_root}: picked {len(picks)} of {len(tests)} test stories")
    for pick in picks:
        where = os.path.relpath(pick.story.path, cwd)
        print(f"  {where}:{pick.story.line} '{pick.story.name}': {pick.reason}")
    rasa = rasa_command()
    model = get_model(cache, layout, rasa, data)
    results = cache.results_for(short_hash(str(layout.root)))
    result = run_test_stories(rasa, layout.root, model, [p.story for p in picks], results)
    if result.evaluated < len(picks):
        print(f"{PROG}: warning: Rasa evaluated {result.evaluated} conversations for "
              f"{len(picks)} picked stories (checkpoints or duplicates merge stories)")
    if result.failures:
        lines = failure_lines(result, cwd)
        lines.append(f"Rasa's report of the failed stories: {result.failed_file}")
        print("\n".join(lines), file=sys.stderr)
        print(f"{PROG}: {len(result.failures)} of {len(picks)} test stories failed",
              file=sys.stderr)
    else:
        print(f"{PROG}: all {len(picks)} picked test stories passed")
    return Outcome(len(picks), len(result.failures))
