"""rasa-check-actions: the custom actions a bot needs are implemented, and no more.

The entry point of the hook (command line, grading, printing); the check
itself is hooks/actions/check.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hooks.actions.check import CHECK_NAMES, check_bot
from hooks.core.errors import FatalError, fatal_errors_to_exit_codes
from hooks.core.problems import ERROR, WARNING, Problem
from hooks.project.layout import bot_roots

PROG = "rasa-check-actions"


# ----------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check that the custom actions a Rasa bot needs are implemented.",
    )
    parser.add_argument("filenames", nargs="*", type=Path, help="changed files (from pre-commit)")
    parser.add_argument("--project", type=Path, help="bot folder (default: found from the files)")
    parser.add_argument("--domain", help="domain file or folder, relative to the project")
    parser.add_argument("--data", action="append", help="data folder(s), default: data")
    parser.add_argument("--actions", help="action package or module, relative to the project "
                        "(default: actions/ or actions.py)")
    parser.add_argument("--import", dest="import_code", action="store_true",
                        help="import the action code in a separate Python, as the action "
                        "server does, instead of reading it (catches import errors)")
    parser.add_argument("--python", default=os.environ.get("RASA_GITOPS_ACTIONS_PYTHON"),
                        help="interpreter for --import (default: $RASA_GITOPS_ACTIONS_PYTHON, "
                        "else this hook's own)")
    parser.add_argument("--warn", action="append", default=[], metavar="CHECK",
                        help=f"make checks warn-only: {', '.join(CHECK_NAMES)}")
    return parser


def _warn_only(values: Sequence[str]) -> frozenset[str]:
    names = frozenset(n.strip() for v in values for n in v.split(",") if n.strip())
    unknown = names - set(CHECK_NAMES)
    if unknown:
        raise FatalError(f"unknown check(s): {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(CHECK_NAMES)}.")
    return names


@fatal_errors_to_exit_codes(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    warn_only = _warn_only(args.warn)
    changed = [p.resolve() for p in args.filenames]
    problems: list[Problem] = []
    checked = 0
    for root in bot_roots(args.project, changed):
        found = check_bot(root, args, changed)
        if found is None:
            continue
        checked += 1
        problems.extend(found)
    graded = [
        Problem(p.check, p.message, p.path, p.line, p.involves, WARNING)
        if p.check in warn_only else p
        for p in problems
    ]
    errors = [p for p in graded if p.severity == ERROR]
    for problem in sorted(graded, key=lambda p: (str(p.path), p.line, p.message)):
        print(problem.render(), file=sys.stderr if errors else sys.stdout)
    if checked:
        print(f"{PROG}: {len(errors)} error(s), {len(graded) - len(errors)} warn-only "
              f"in {checked} bot(s)", file=sys.stderr if errors else sys.stdout)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main(None))
