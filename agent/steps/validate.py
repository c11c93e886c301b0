"""Validate: the same checks as the `rasa-validate` hook, on the whole project."""

from __future__ import annotations

from agent.steps import Outcome, StepContext, StepFailed
from hooks.checks.run import check_project
from hooks.core.errors import FatalError

NAME = "validate"
LONG = True


def run(ctx: StepContext) -> Outcome:
    max_history = ctx.config["pipeline.max_history"]
    try:
        report = check_project(
            ctx.worktree,
            max_history=int(max_history) if max_history is not None else None,
            fail_on_warnings=bool(ctx.config["pipeline.fail_on_warnings"]),
        )
    except FatalError as exc:
        # The bot doesn't load at all (missing domain, broken YAML, ...).
        text = str(exc).replace(f"{ctx.worktree}/", "")
        ctx.log(text)
        raise StepFailed(f"the bot does not load: {text}") from None
    rendered = report.render(ctx.worktree)
    for line in rendered.splitlines():
        ctx.log(line)
    if report.failed:
        first = next((p for p in report.errors), None)
        where = first.render(ctx.worktree) if first else ""
        raise StepFailed(f"{len(report.errors)} validation error(s); first: {where}")
    return Outcome(rendered.splitlines()[-1] if rendered else "valid")
