"""rasa-validate: every check of `rasa data validate --fail-on-warnings`, and more.

It always loads the whole project (a changed domain can break an untouched
story) but, given changed files, reports only findings that involve them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hooks.checks.light import CHECKS
from hooks.checks.with_rasa import schema_problems, story_structure_problems
from hooks.core.errors import FatalError, fatal_errors_to_exit_codes
from hooks.core.problems import Problem, Report, graded, scoped
from hooks.project.layout import bot_roots, layout_for
from hooks.project.load import load_project
from hooks.project.model import Layout, Project

RASA_CHECKS = ("schema", "story-structure")
ALL_CHECK_NAMES = tuple(c.name for c in CHECKS) + RASA_CHECKS
# What `rasa data validate` fails on even without --fail-on-warnings.
HARD_FAILURES = frozenset({
    "domain-empty", "mapping-policy", "action-not-in-domain", "form-not-in-domain",
    "form-slot-not-in-domain", "slot-mapping-form", "schema",
})


@dataclass(frozen=True)
class Options:
    max_history: int | None = None
    warn_only: frozenset[str] = frozenset()
    skip: frozenset[str] = frozenset()
    changed: frozenset[Path] | None = None  # None: report everything


def run_checks(project: Project, options: Options) -> list[Problem]:
    changed = options.changed
    found: list[Problem] = []
    for check in CHECKS:
        if check.name not in options.skip:
            found.extend(check.run(project))
    if "schema" not in options.skip:
        files = project.layout.files if changed is None else [
            f for f in project.layout.files if f in changed
        ]
        found.extend(schema_problems(project, files))
    story_inputs = {s.path for s in project.stories} | {project.layout.config}
    story_inputs |= set(project.layout.domain)
    # Rasa cannot even load a project with these, so its conflict check would
    # only repeat them.
    unloadable = any(p.check in {"schema", "domain-duplicate"} for p in found)
    wanted = changed is None or bool(changed & story_inputs)
    if "story-structure" not in options.skip and wanted and not unloadable:
        max_history = options.max_history or project.max_history
        found.extend(story_structure_problems(project, max_history))
    return graded(scoped(found, changed), options.warn_only, options.skip)


def check_project(
    root: Path, *, max_history: int | None = None, fail_on_warnings: bool = True
) -> Report:
    """The whole-project verdict, as the deploy agent's validate step uses it."""
    layout = layout_for(root)
    project = load_project(layout)
    warn_only = frozenset() if fail_on_warnings else frozenset(ALL_CHECK_NAMES) - HARD_FAILURES
    report = Report(checked_files=len(layout.files))
    report.problems = run_checks(project, Options(max_history=max_history, warn_only=warn_only))
    return report


# ----------------------------------------------------------------- command line


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
