"""rasa-test-stories: run the test stories a change can affect, on a cached model.

Verdicts are Rasa's own: the picked stories go through `rasa test core --e2e`
(what `rasa test` runs for test stories) on a model trained from exactly this
tree. The model is looked up by fingerprint first and trained (with Rasa's
incremental cache) only when no model for this tree exists yet.

This module is the command line; the engine is hooks/stories/ (check.py picks
and reports, rasa_test.py runs Rasa and reads its results, train.py trains).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from hooks.core.errors import fatal_errors_to_exit_codes
from hooks.project.layout import bot_roots, layout_for
from hooks.stories.check import PROG, Outcome, pick_stories, test_bot
from hooks.stories.model_cache import DEFAULT_MAX_MODELS_MB, ModelCache, default_cache_dir

__all__ = ["main", "pick_stories"]


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
