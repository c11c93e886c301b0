"""Upload the release's model and make it the live one, through the model target."""

from __future__ import annotations

from pathlib import Path

from agent.steps import SKIPPED, Outcome, StepContext, StepFailed
from agent.targets.base import DeployError

NAME = "activate_model"
LONG = False  # a switch in progress is finished, never abandoned


def run(ctx: StepContext) -> Outcome:
    release = ctx.release
    if not release.model_path:
        raise StepFailed("no model to activate (the train step recorded none)")
    target = ctx.targets.model
    # The release's checkout: a target that starts its own server serves the
    # bot's endpoints.yml/credentials.yml from it (Path() = no checkout known).
    bot_dir = ctx.worktree if ctx.worktree != Path() else None
    try:
        ref = target.upload(str(ctx.release_id), Path(release.model_path), ctx.log, bot_dir)
        try:
            # The model and the bot config it serves with: a release that changed
            # only endpoints.yml/credentials.yml is a switch too (one to undo).
            live = target.serves(ref)
        except DeployError:
            live = False  # the server is down; activate() starts it when the agent manages it
        if live:
            ctx.log(f"model {ref.model_id} is already live")
            target.activate(ref, ctx.log)  # idempotent: pins the restart link
            return Outcome(f"model {ref.model_id[:12]} was already live", SKIPPED)
        ctx.notes["model_switched"] = "yes"
        target.activate(ref, ctx.log)
    except DeployError as exc:
        raise StepFailed(f"model: {exc}") from None
    return Outcome(f"model {ref.model_id[:12]} is live ({target.name})")
