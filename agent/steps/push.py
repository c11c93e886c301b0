"""Push the release's image to the configured registry and record its digest.

The journal keeps the image as `repository:tag@sha256:...`, so every later
step (and a rollback) pulls exactly the bytes that were tested.
"""

from __future__ import annotations

from typing import Any

from agent import faults
from agent.image.push import Credentials, Pushed, PushError, push_image
from agent.steps import SKIPPED, Outcome, StepContext, StepFailed
from agent.steps.build import uses_images
from agent.targets.base import DeployError
from agent.targets.docker.engine import local_engine, with_engine
from agent.targets.docker.images import split_digest

NAME = "push"
LONG = True


def credentials(ctx: StepContext) -> Credentials | None:
    user = ctx.config["image.registry_user"]
    secret = ctx.config.secret("image.registry_password")
    if user and secret is not None:
        return Credentials(str(user), secret.reveal())
    return None  # the SDK falls back to the Docker config (~/.docker/config.json)


def run(ctx: StepContext) -> Outcome:
    if not uses_images(ctx.config):
        return Outcome("the action server target runs no image", SKIPPED)
    image = ctx.release.image
    if not image:
        return Outcome("no image was built", SKIPPED)
    ref, digest = split_digest(image)
    if digest:
        return Outcome(f"{ref} is already in the registry as {digest}", SKIPPED)
    if not ctx.config["image.push"]:
        return Outcome("pushing is turned off (image.push: false)", SKIPPED)

    def push(client: Any) -> Pushed:
        # Dies at the engine's first line: dockerd is pushing (`skip` passes "pushing ...").
        return push_image(client, ref, faults.on_first_line(ctx.log, "push.running", skip=1),
                          credentials=credentials(ctx),
                          attempts=int(ctx.config["image.push_attempts"]))

    try:
        # dockerd restarting: its socket answers again within a few seconds. A registry
        # failing is retried inside push_image, with its own attempts.
        pushed = with_engine(local_engine(ctx.config["image.docker_host"]), push,
                             what="connecting to the Docker engine", log=ctx.log)
    except (PushError, DeployError) as exc:
        raise StepFailed(str(exc)) from None
    ctx.journal.update_release(ctx.release_id, image=f"{ref}@{pushed.digest}")
    return Outcome(f"pushed {ref} as {pushed.digest}")
