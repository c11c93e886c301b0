"""Checkout: a clean git worktree of the release's commit."""

from __future__ import annotations

from agent.links import outside_links
from agent.steps import Outcome, StepContext, StepFailed
from hooks.core.errors import FatalError
from hooks.core.process import git

NAME = "checkout"
LONG = False


def action_code_fingerprint(ctx: StepContext) -> str | None:
    """The git tree id of the action code: equal trees mean equal action code."""
    module = str(ctx.config["action_server.actions_module"]).replace(".", "/")
    for path in (module, f"{module}.py"):
        done = git(["rev-parse", "--verify", "--quiet", f"{ctx.commit}:{path}"],
                   cwd=ctx.worktree)
        if done.ok:
            return done.output.strip()
    return None


def run(ctx: StepContext) -> Outcome:
    target = ctx.config.work_dir / "releases" / f"release-{ctx.release_id}"
    try:
        ctx.worktree = ctx.mirror.add_worktree(ctx.commit, target)
    except FatalError as exc:
        raise StepFailed(str(exc)) from None
    fingerprint = action_code_fingerprint(ctx)
    ctx.journal.update_release(ctx.release_id, worktree=str(ctx.worktree),
                               action_code_fingerprint=fingerprint)
    leaving = outside_links(ctx.worktree)
    if leaving:
        raise StepFailed(f"{leaving[0]} is a symlink pointing outside the repository; the "
                         f"agent never follows one (found {len(leaving)}): commit the file "
                         "itself")
    ctx.log(f"worktree {ctx.worktree} at {ctx.commit[:8]}")
    return Outcome(f"checked out {ctx.commit[:8]}")
