"""The engine of rasa-check-actions: what a bot needs against what its code serves.

Needed: every custom action under the domain's `actions:` (form validation
actions `validate_<form>` and overridden default actions such as
`action_session_start` included), every custom action a story or rule runs,
and every action a `custom` slot mapping names. Implemented: what the action
code registers with the action server. A needed action with no code fails at
run time; code the domain does not list is never called. "Custom" is THE rule
of hooks.project.custom_actions, the one the deploy agent uses too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from hooks.actions.code import (
    ActionCode,
    find_action_code,
    python_files,
    read_by_import,
    read_statically,
)
from hooks.core.problems import Problem
from hooks.project.custom_actions import is_custom
from hooks.project.layout import layout_for
from hooks.project.load import load_project
from hooks.project.model import Project, Ref

MISSING, ORPHANED, CODE = "missing-action", "orphaned-action", "action-code"
CHECK_NAMES = (MISSING, ORPHANED, CODE)


def needed_actions(project: Project) -> Iterator[tuple[Ref, str]]:
    """(where it is needed, why) for every custom action the bot can call."""
    domain = project.domain
    responses = project.data_responses
    for name, ref in domain.actions.items():
        if is_custom(name, domain, responses):
            yield ref, "listed under `actions:` in the domain"
    for story in project.stories:
        if story.kind == "test":
            continue
        for step in story.steps:
            if step.kind == "action" and step.name and step.name not in domain.actions \
                    and is_custom(step.name, domain, responses):
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


def check_bot(root: Path, args: argparse.Namespace, changed: list[Path]) -> list[Problem] | None:
    """The problems of the bot at `root`; None when the commit touches nothing it reads."""
    layout = layout_for(root, domain=args.domain, data=args.data or ("data",))
    location, package = find_action_code(root, args.actions)
    files = python_files(location)
    if changed and not frozenset(changed) & {*layout.files, *files}:
        return None
    project = load_project(layout)
    if args.import_code and location is not None:
        code = read_by_import(root, package, args.python or sys.executable, files)
    else:
        code = read_statically(files)
    where = "actions/ or actions.py (none found)"
    if location is not None:
        where = os.path.relpath(location) + ("/" if location.is_dir() else "")
    return check(project, code, where)
