"""Deploy the action server of the release, through whichever target is configured."""

from __future__ import annotations

from agent.config import legacy_environment
from agent.server_records import with_server_record
from agent.steps import SKIPPED, Outcome, StepContext, StepFailed
from agent.targets.base import ActionServerSpec, DeployError

NAME = "deploy_actions"
LONG = False  # a switch in progress is finished, never abandoned


def unchanged_since(ctx: StepContext) -> str | None:
    """The live release whose action code is the same as ours, if it still serves."""
    release = ctx.release
    live = ctx.targets.action_server.live()
    if live is None or release.action_code_fingerprint is None:
        return None
    try:
        live_release = ctx.journal.release(int(live.release_id))
    except (ValueError, Exception):
        return None
    if (live_release.action_code_fingerprint == release.action_code_fingerprint
            and set(release.required_actions) <= live.served_actions):
        return live.release_id
    return None


def run(ctx: StepContext) -> Outcome:
    release = ctx.release
    same = unchanged_since(ctx)
    if same is not None:
        ctx.log(f"action code is unchanged since release {same}, whose server is live")
        return Outcome(f"action code unchanged; release {same}'s server stays live", SKIPPED)
    if release.action_code_fingerprint is None and not release.required_actions:
        return Outcome("the bot has no action code", SKIPPED)
    spec = ActionServerSpec(
        release_id=str(ctx.release_id), commit=ctx.commit, worktree=ctx.worktree,
        required_actions=frozenset(release.required_actions), image=release.image,
    )
    try:
        deployment = ctx.targets.action_server.deploy(spec, ctx.log)
    except DeployError as exc:
        raise StepFailed(f"action server: {exc}") from None
    record = {"target": ctx.targets.action_server.name, "url": deployment.url,
              "served_actions": sorted(deployment.served_actions), "handle": deployment.handle}
    ctx.journal.update_release(ctx.release_id, action_server=with_server_record(
        release.action_server, ctx.environment_name, legacy_environment(ctx.config), record,
        several=len(ctx.config.environments) > 1))
    ctx.notes["action_server_switched"] = "yes"
    return Outcome(f"action server live at {deployment.url} serving "
                   f"{len(deployment.served_actions)} action(s)")
