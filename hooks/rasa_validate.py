"""rasa-validate: every check of `rasa data validate --fail-on-warnings`, and more.

The hook's entry point: arguments, which bots the changed files belong to, and
printing. It always loads the whole project (a changed domain can break an
untouched story) but, given changed files, reports only findings that involve
them. The checks and how they run are in `hooks.checks.run`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hooks.checks.light import CHECKS
from hooks.checks.run import ALL_CHECK_NAMES, Options, run_checks
from hooks.core.errors import FatalError, fatal_errors_to_exit_codes
from hooks.core.problems import Report
from hooks.project.layout import bot_roots, layout_for
from hooks.project.load import load_project
from hooks.project.model import Layout


def _names(values: Sequence[str]) -> frozenset[str]:
    names = frozenset(n.strip() for v in values for n in v.split(",") if n.strip())
    unknown = names - set(ALL_CHECK_NAMES)
    if unknown:
        raise FatalError(
            f"unknown check(s): {', '.join(sorted(unknown))}. "
            "`rasa-validate --list-checks` shows the names."
        )
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rasa-validate",
        description="Validate a Rasa project's config, domain and training data.",
    )
    parser.add_argument("filenames", nargs="*", type=Path, help="changed files (from pre-commit)")
    parser.add_argument("--project", type=Path, help="bot folder (default: found from the files)")
    parser.add_argument("--config", help="config file, relative to the project")
    parser.add_argument("--domain", help="domain file or folder, relative to the project")
    parser.add_argument("--data", action="append", help="data folder(s), default: data")
    parser.add_argument("--max-history", type=int, help="default: the MemoizationPolicy's, else 5")
    parser.add_argument("--all", action="store_true", help="report every finding, not only "
                        "those that involve the changed files")
    parser.add_argument("--warn", action="append", default=[], metavar="CHECK",
                        help="make these checks warn-only (comma-separated, repeatable)")
    parser.add_argument("--skip", action="append", default=[], metavar="CHECK",
                        help="switch these checks off (comma-separated, repeatable)")
    parser.add_argument("--list-checks", action="store_true", help="list check names and exit")
    return parser


def _layout(root: Path, args: argparse.Namespace) -> Layout:
    return layout_for(root, config=args.config, domain=args.domain, data=args.data or ("data",))


@fatal_errors_to_exit_codes("rasa-validate")
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list_checks:
        for check in CHECKS:
            print(f"{check.name:28} {check.summary}")
        print(f"{'schema':28} files follow Rasa's schema (needs Rasa)")
        print(f"{'story-structure':28} stories and rules do not conflict (needs Rasa)")
        return 0
    warn_only, skip = _names(args.warn), _names(args.skip)
    changed = [p.resolve() for p in args.filenames]
    report = Report()
    for root in bot_roots(args.project, changed):
        layout = _layout(root, args)
        relevant = frozenset(changed) & set(layout.files)
        if changed and not relevant:
            continue  # this commit touches no file of this bot
        project = load_project(layout)
        options = Options(
            max_history=args.max_history,
            warn_only=warn_only,
            skip=skip,
            changed=None if args.all or not changed else relevant,
        )
        report.problems.extend(run_checks(project, options))
        report.checked_files += len(layout.files)
    if report.checked_files == 0:
        return 0
    print(report.render(), file=sys.stdout if not report.failed else sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main(None))
