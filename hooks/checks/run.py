"""The engine of rasa-validate: which checks exist, and running them on a project.

The entry module `hooks.rasa_validate` parses arguments and prints; the deploy
agent's validate step calls `check_project` directly. Both go through
`run_checks`, so a commit and a release are judged by the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hooks.checks.light import CHECKS
from hooks.checks.with_rasa import rasa_available, schema_problems, story_structure_problems
from hooks.core.problems import Problem, Report, graded, scoped
from hooks.project.layout import layout_for
from hooks.project.load import load_project
from hooks.project.model import Project

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
    # only repeat them. Without Rasa there is no such repeat: the conflict check
    # must still say that it could not run.
    unloadable = rasa_available() and any(
        p.check in {"schema", "domain-duplicate"} for p in found
    )
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
