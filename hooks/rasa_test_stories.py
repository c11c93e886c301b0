"""rasa-test-stories: run the test stories a change can affect, on a cached model.

Verdicts are Rasa's own: the picked stories go through `rasa test core --e2e`
(what `rasa test` runs for test stories) on a model trained from exactly this
tree. The model is looked up by fingerprint first and trained (with Rasa's
incremental cache) only when no model for this tree exists yet.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from hooks.core.errors import FatalError, LocatedError, fatal_errors_to_exit_codes
from hooks.core.process import run
from hooks.core.yaml_lines import LDict, LList, load_yaml, plain
from hooks.project.fingerprint import rasa_identity, short_hash, tree_fingerprint
from hooks.project.layout import bot_roots, layout_for
from hooks.project.load import load_project
from hooks.project.model import Layout, Story
from hooks.stories.model_cache import DEFAULT_MAX_MODELS_MB, ModelCache, default_cache_dir
from hooks.stories.results import LISTEN, FailedStory, describe, parse_failed_stories, turn_line
from hooks.stories.selection import Pick, changed_story_lines, everything, select, touched_by

PROG = "rasa-test-stories"
TEST_TIMEOUT_S = 1800.0
FAILED_STORIES = "failed_test_stories.yml"
EVALUATING = re.compile(r"Evaluating (\d+) stories")
TEST_PREFIX = "test_"  # Rasa's TEST_STORIES_FILE_PREFIX


def rasa_executable() -> list[str]:
    """`rasa` of the hook's own environment, else $RASA_GITOPS_RASA, else PATH."""
    beside = Path(sys.executable).parent / "rasa"
    if beside.is_file():
        return [str(beside)]
    configured = os.environ.get("RASA_GITOPS_RASA")
    if configured:
        return configured.split()
    found = shutil.which("rasa")
    if found:
        return [found]
    raise FatalError(
        "Rasa is not installed in this hook's environment, so no story can be tested. "
        "Add `additional_dependencies: [rasa==3.6.21]` (with `language_version: python3.10`) "
        "to the hook, or set RASA_GITOPS_RASA to a rasa executable."
    )


@dataclass(frozen=True)
class Outcome:
    picked: int
    failed: int


# ------------------------------------------------------------------ selection


def pick_stories(
    layout: Layout, tests: list[Story], changed: frozenset[Path] | None, base: str | None
) -> list[Pick]:
    if changed is None:
        return everything(tests, "--all")
    changed_tests = {path: changed_story_lines(path, base)
                     for path in changed & set(layout.tests) if path.exists()}
    touched = touched_by(layout, changed & set(layout.files), base)
    return select(tests, changed_tests, touched, layout.root)


def _check_test_files(layout: Layout, tests: list[Story], changed: frozenset[Path] | None) -> None:
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


# ------------------------------------------------------------------ running rasa


def write_selection(picks: Sequence[Pick], folder: Path) -> dict[Path, Path]:
    """One YAML file per source test file, holding only the picked stories.

    Returns {written file: source file} so Rasa's report can be mapped back.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    by_source: dict[Path, list[Story]] = {}
    for pick in picks:
        by_source.setdefault(pick.story.path, []).append(pick.story)
    written: dict[Path, Path] = {}
    for number, (source, stories) in enumerate(sorted(by_source.items())):
        doc = load_yaml(source)
        assert isinstance(doc, LDict)
        lines = {s.line for s in stories}
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


def run_rasa_test(
    rasa: Sequence[str], layout: Layout, model: Path, stories: Path, out: Path
) -> tuple[list[FailedStory], int | None]:
    failed_file = out / FAILED_STORIES
    failed_file.unlink(missing_ok=True)
    argv = [
        *rasa, "test", "core", "--e2e",
        "--stories", str(stories),
        "--model", str(model),
        "--out", str(out),
        "--no-plot",
    ]
    done = run(argv, cwd=layout.root, timeout=TEST_TIMEOUT_S)
    if not done.ok:
        raise FatalError(
            f"`rasa test` failed (exit {done.returncode}) before it could judge the stories. "
            f"Rasa said:\n{done.tail(25)}"
        )
    if not failed_file.is_file():
        raise FatalError(
            f"`rasa test` wrote no {FAILED_STORIES} in {out}, so the verdict is unknown. "
            f"Rasa said:\n{done.tail(15)}"
        )
    counted = EVALUATING.findall(done.output)
    evaluated = int(counted[-1]) if counted else None
    return parse_failed_stories(failed_file.read_text(encoding="utf-8")), evaluated


def _match(failed: FailedStory, picks: Sequence[Pick], written: dict[Path, Path],
           used: set[int]) -> Pick | None:
    source = written.get(failed.source.resolve()) if failed.source else None
    for index, pick in enumerate(picks):
        if index in used or pick.story.name != failed.name:
            continue
        if source is not None and pick.story.path != source:
            continue
        used.add(index)
        return pick
    return None


def report_failures(
    failures: list[FailedStory], picks: Sequence[Pick], written: dict[Path, Path],
    failed_file: Path, base: Path,
) -> list[str]:
    lines: list[str] = []
    used: set[int] = set()
    for failed in failures:
        pick = _match(failed, picks, written, used)
        what = describe(failed)
        if pick is None:
            lines.append(f"story '{failed.name}' failed: {what}")
            continue
        wrong = failed.first_wrong()
        line = pick.story.line
        if wrong is not None:
            index, turn = wrong
            line = turn_line(pick.story, index - 1 if turn.expected == LISTEN else index)
        where = os.path.relpath(pick.story.path, base)
        lines.append(f"{where}:{line}: story '{failed.name}' (line {pick.story.line}) "
                     f"failed at {what}")
    lines.append(f"Rasa's report of the failed stories: {failed_file}")
    return lines


# ------------------------------------------------------------------ one bot


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
    _check_test_files(layout, found, changed)
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
    rasa = rasa_executable()
    model = get_model(cache, layout, rasa, data)
    results = cache.results_for(short_hash(str(layout.root)))
    written = write_selection(picks, results / "selected")
    failures, evaluated = run_rasa_test(rasa, layout, model, results / "selected", results)
    if evaluated == 0:
        raise FatalError(
            f"Rasa evaluated no conversation from the {len(picks)} picked stories, so "
            "nothing was tested. Check that the test files are Rasa test stories."
        )
    if evaluated is not None and evaluated < len(picks):
        print(f"{PROG}: warning: Rasa evaluated {evaluated} conversations for "
              f"{len(picks)} picked stories (checkpoints or duplicates merge stories)")
    if failures:
        lines = report_failures(failures, picks, written, results / FAILED_STORIES, cwd)
        print("\n".join(lines), file=sys.stderr)
        print(f"{PROG}: {len(failures)} of {len(picks)} test stories failed", file=sys.stderr)
    else:
        print(f"{PROG}: all {len(picks)} picked test stories passed")
    return Outcome(len(picks), len(failures))


# ----------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the Rasa test stories that the changed files can affect.",
    )
    parser.add_argument("filenames", nargs="*", type=Path, help="changed files (from pre-commit)")
    parser.add_argument("--all", action="store_true", help="run every test story")
    parser.add_argument("--project", type=Path, help="bot folder (default: found from the files)")
    parser.add_argument("--config", help="config file, relative to the project")
    parser.add_argument("--domain", help="domain file or folder, relative to the project")
    parser.add_argument("--data", action="append", help="training data folder(s), default: data")
    parser.add_argument("--tests", action="append", help="test story folder(s), default: tests")
    parser.add_argument("--base", help="revision to compare changed files with (default: "
                        "$PRE_COMMIT_FROM_REF at push time, else HEAD)")
    parser.add_argument("--cache-dir", type=Path, help="where models are kept (default: "
                        "$RASA_GITOPS_CACHE_DIR, else $XDG_CACHE_HOME/rasa-gitops)")
    parser.add_argument("--max-cache-mb", type=int, default=DEFAULT_MAX_MODELS_MB,
                        help=f"bound on the cached models (default {DEFAULT_MAX_MODELS_MB})")
    return parser


@fatal_errors_to_exit_codes(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    changed_all = [p.resolve() for p in args.filenames]
    run_all = args.all or not changed_all
    base = args.base or os.environ.get("PRE_COMMIT_FROM_REF") or "HEAD"
    cache = ModelCache(
        (args.cache_dir or default_cache_dir()).resolve(),
        max_bytes=max(args.max_cache_mb, 1) * 1024 * 1024,
    )
    data = tuple(args.data or ("data",))
    total = Outcome(0, 0)
    tested_any = False
    for root in bot_roots(args.project, changed_all):
        layout = layout_for(root, config=args.config, domain=args.domain, data=data,
                            tests=tuple(args.tests or ("tests",)))
        relevant = frozenset(changed_all) & set((*layout.files, *layout.tests))
        if not run_all and not relevant:
            continue
        tested_any = True
        outcome = test_bot(layout, None if run_all else relevant, base, cache, data)
        total = Outcome(total.picked + outcome.picked, total.failed + outcome.failed)
    if not tested_any:
        print(f"{PROG}: nothing to test: no file of a Rasa bot changed")
    return 1 if total.failed else 0


if __name__ == "__main__":
    raise SystemExit(main(None))
