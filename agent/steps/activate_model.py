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
        live = target.live_model_id()
    except DeployError:
        live = None  # the server is down; activate() starts it when the agent manages it
    try:
        if release.model_id and live == release.model_id:
            ctx.log(f"model {release.model_id} is already live")
            ref = target.upload(str(ctx.release_id), Path(release.model_path), ctx.log,
                                bot_dir)
            target.activate(ref, ctx.log)  # idempotent: pins the restart link
            return Outcome(f"model {release.model_id[:12]} was already live", SKIPPED)
        ref = target.upload(str(ctx.release_id), Path(release.model_path), ctx.log,
                            bot_dir)
        ctx.notes["model_switched"] = "yes"
        target.activate(ref, ctx.log)
    except DeployError as exc:
        raise StepFailed(f"model: {exc}") from None
    return Outcome(f"model {ref.model_id[:12]} is live ({target.name})")
