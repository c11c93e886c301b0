"""rasa-nlu-compare: the NLU model before a change against the one after it.

The hook's entry point: arguments, which two revisions to compare (the range
pre-commit gives, else the merge base with main against the working tree),
and printing the verdict. The comparison itself is `hooks.nlu.compare`; the
deploy agent's NLU gate calls it directly.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hooks.core.errors import FatalError, fatal_errors_to_exit_codes
from hooks.nlu.compare import (
    DEFAULT_CACHE,
    DEFAULT_OUT,
    HEATMAP_PNG,
    REPORT_JSON,
    REPORT_MD,
    Options,
    compare,
    nlu_changed,
    write_report,
)
from hooks.nlu.report import Thresholds, gate
from hooks.nlu.revisions import (
    FROM_REF_ENV,
    MAIN_BRANCHES,
    TO_REF_ENV,
    materialise,
    repo_root,
    resolve_range,
)
from hooks.project.layout import is_project_root

PROG = "rasa-nlu-compare"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compare the NLU model before a change (a git revision) with the one "
                    "after it (the working tree, or a revision) and write a report for the PR.",
    )
    parser.add_argument("filenames", nargs="*", help="ignored (pre-commit passes them)")
    parser.add_argument("--project", type=Path, help="bot folder (default: the current one)")
    parser.add_argument("--config", help="config file, relative to the project")
    parser.add_argument("--data", action="append", help="data folder(s), default: data")
    parser.add_argument("--base", "--from-ref", dest="base", metavar="REV",
                        help=f"base revision (default: ${FROM_REF_ENV} when pre-commit gives a "
                        "range, else the merge base with main)")
    parser.add_argument("--head", "--to-ref", dest="head", metavar="REV",
                        help=f"head revision (default: ${TO_REF_ENV} when pre-commit gives a "
                        "range, else the working tree)")
    parser.add_argument("--main-branch", help="branch whose merge base is the default base "
                        f"(default: first of {', '.join(MAIN_BRANCHES)})")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (5)")
    parser.add_argument("--split", action="store_true",
                        help="train/test split (rasa data split nlu) instead of folds")
    parser.add_argument("--training-fraction", type=float, default=0.8,
                        help="training share for --split (0.8)")
    parser.add_argument("--seed", type=int, default=42, help="seed for folds and split (42)")
    parser.add_argument("--out", type=Path, help=f"results folder (default: {DEFAULT_OUT})")
    parser.add_argument("--cache-dir", type=Path, help=f"default: {DEFAULT_CACHE}")
    parser.add_argument("--max-macro-f1-drop", type=float, metavar="X",
                        help="exit 1 when intent macro F1 drops by more than X (e.g. 0.02)")
    parser.add_argument("--max-intent-f1-drop", type=float, metavar="Y",
                        help="exit 1 when any intent's F1 drops by more than Y (e.g. 0.1)")
    parser.add_argument("--force", action="store_true",
                        help="compare even when NLU data and pipeline are unchanged")
    parser.add_argument("--no-heatmap", action="store_true", help="skip the PNG")
    return parser


def _clear_old_report(out: Path) -> None:
    # A failed run must not leave last time's report looking like this one's.
    for name in (REPORT_MD, REPORT_JSON, HEATMAP_PNG):
        (out / name).unlink(missing_ok=True)


@fatal_errors_to_exit_codes(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("max_macro_f1_drop", "max_intent_f1_drop"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 1:
            raise FatalError(f"--{name.replace('_', '-')} is in F1 points from 0 to 1, "
                             f"not {value}.")
    if not 0 < args.training_fraction < 1:
        raise FatalError(f"--training-fraction must be between 0 and 1, "
                         f"not {args.training_fraction}.")
    project = (args.project or Path.cwd()).resolve()
    if not is_project_root(project):
        raise FatalError(f"{project}: no Rasa project here (no config.yml with domain.yml "
                         "or domain/); run from the bot folder or pass --project DIR.")
    out = (args.out or project / DEFAULT_OUT).resolve()
    _clear_old_report(out)
    repo = repo_root(project)
    revisions = resolve_range(
        repo, base=args.base, head=args.head, main_branch=args.main_branch, env=os.environ
    )
    options = Options(
        folds=args.folds, split=args.split, training_fraction=args.training_fraction,
        seed=args.seed, config=args.config, data=tuple(args.data or ("data",)),
        cache_dir=(args.cache_dir or project / DEFAULT_CACHE).resolve(),
        base_label=revisions.base_label, head_label=revisions.head_label,
    )
    folder = project.relative_to(repo).as_posix()
    with tempfile.TemporaryDirectory(prefix="nlu-base-") as tmp:
        base_tree = materialise(repo, revisions.base, folder, Path(tmp) / "base")
        if not base_tree.is_dir():
            raise FatalError(f"the project folder does not exist at {revisions.base_label}; "
                             "there is nothing to compare against.")
        head_tree = project
        if revisions.head is not None:
            head_tree = materialise(repo, revisions.head, folder, Path(tmp) / "head")
        if not args.force and not nlu_changed(base_tree, head_tree, options):
            print(f"{PROG}: NLU data and pipeline unchanged between {revisions.base_label} "
                  f"and {revisions.head_label}; nothing to compare (--force compares anyway).")
            return 0
        comparison = compare(base_tree, head_tree, options,
                             log=lambda line: print(f"{PROG}: {line}", flush=True))
    thresholds = Thresholds(args.max_macro_f1_drop, args.max_intent_f1_drop)
    gated = args.max_macro_f1_drop is not None or args.max_intent_f1_drop is not None
    failures = gate(comparison, thresholds) if gated else None
    written, skipped = write_report(comparison, out, failures, heatmap=not args.no_heatmap)
    if skipped:
        print(f"{PROG}: warning: {skipped}", file=sys.stderr)
    macro = next(d for d in comparison.overall if d.name == "intent macro F1")
    print(f"{PROG}: intent macro F1 {macro.before:.3f} -> {macro.after:.3f} "
          f"({(macro.delta or 0):+.3f}); report: {written[0]}")
    if failures:
        for failure in failures:
            print(f"{PROG}: gate: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(None))
