"""rasa-check-actions: the custom actions a bot needs are implemented, and no more.

Needed: every custom action under the domain's `actions:` (form validation
actions `validate_<form>` included), every custom action a story or rule runs,
and every action a `custom` slot mapping names. Implemented: what the action
code registers with the action server. A needed action with no code fails at
run time; code the domain does not list is never called.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from hooks.actions.code import (
    ActionCode,
    find_action_code,
    python_files,
    read_by_import,
    read_statically,
)
from hooks.core.errors import FatalError, fatal_errors_to_exit_codes
from hooks.core.problems import ERROR, WARNING, Problem
from hooks.project.layout import bot_roots, layout_for
from hooks.project.load import load_project
from hooks.project.model import Project, Ref
from hooks.project.names import DEFAULT_ACTIONS, UTTER_PREFIX

PROG = "rasa-check-actions"
MISSING, ORPHANED, CODE = "missing-action", "orphaned-action", "action-code"
CHECK_NAMES = (MISSING, ORPHANED, CODE)


def is_custom(name: str, project: Project) -> bool:
    """A name the action server, not Rasa itself, has to run."""
    domain = project.domain
    return not (
        name.startswith(UTTER_PREFIX)
        or name in DEFAULT_ACTIONS
        or name in domain.forms
        or name in domain.responses
        or name in project.data_responses
    )


def needed_actions(project: Project) -> Iterator[tuple[Ref, str]]:
    """(where it is needed, why) for every custom action the bot can call."""
    domain = project.domain
    for name, ref in domain.actions.items():
        if is_custom(name, project):
            yield ref, "listed under `actions:` in the domain"
    for story in project.stories:
        if story.kind == "test":
            continue
        for step in story.steps:
            if step.kind == "action" and step.name and step.name not in domain.actions \
                    and is_custom(step.name, project):
                yield Ref(step.name, step.path, step.line), f"run by {story.kind} '{story.name}'"
    for slot in domain.slots.values():
        for mapping, line in zip(slot.mappings, slot.mapping_lines, strict=True):
            action = mapping.get("action")
            if mapping.get("type") == "custom" and isinstance(action, str):
                yield (Ref(action, slot.ref.path, line),
                       f"the custom mapping of slot '{slot.ref.name}'")


def check(project: Project, code: ActionCode, code_where: str) -> list[Problem]:
    problems: list[Problem] = []
    implemented = code.names()
    reported: set[tuple[str, Path, int]] = set()
    for ref, why in needed_actions(project):
        if ref.name in implemented or (ref.name, ref.path, ref.line) in reported:
            continue
        reported.add((ref.name, ref.path, ref.line))
        problems.append(Problem(
            MISSING,
            f"custom action '{ref.name}' ({why}) is not implemented in {code_where}; "
            f"add a class whose name() returns \"{ref.name}\", or stop using it",
            ref.path, ref.line,
        ))
    listed = set(project.domain.actions)
    domain_file = project.layout.domain[0]
    for action in code.actions:
        if action.name in listed:
            continue
        form = action.name.removeprefix("validate_")
        hint = (f"Rasa runs it for form '{form}' only when the domain lists it"
                if action.name.startswith("validate_") and form in project.domain.forms
                else "Rasa never calls it")
        problems.append(Problem(
            ORPHANED,
            f"action '{action.name}' is implemented here but not listed under `actions:` "
            f"in {os.path.relpath(domain_file)}; {hint}. Add it to the domain or delete it",
            action.path, action.line,
        ))
    for issue in code.issues:
        problems.append(Problem(CODE, issue.message, issue.path, issue.line))
    return problems


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


def check_bot(root: Path, args: argparse.Namespace, changed: list[Path]) -> list[Problem] | None:
    layout = layout_for(root, domain=args.domain, data=args.data or ("data",))
    location, package = find_action_code(root, args.actions)
    files = python_files(location)
    if changed and not frozenset(changed) & {*layout.files, *files}:
        return None  # this commit touches nothing the check reads
    project = load_project(layout)
    if args.import_code and location is not None:
        code = read_by_import(root, package, args.python or sys.executable, files)
    else:
        code = read_statically(files)
    where = "actions/ or actions.py (none found)"
    if location is not None:
        where = os.path.relpath(location) + ("/" if location.is_dir() else "")
    return check(project, code, where)


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
