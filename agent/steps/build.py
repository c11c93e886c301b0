"""Build the release's action-server image, or reuse production's when nothing changed.

Runs only for Docker action-server targets. The image is rebuilt only when the
action code, its requirements or the Dockerfile changed since the image in
production (their fingerprint is a label of every image we build).
"""

from __future__ import annotations

import time
from typing import Any

from agent import faults
from agent.config import AgentConfig
from agent.image.build import BuildError, BuiltImage, build_image
from agent.image.context import ContextError, assemble
from agent.image.dockerfile import ImageSettings
from agent.steps import REUSED, SKIPPED, Outcome, StepContext, StepFailed
from agent.targets.base import DeployError
from agent.targets.docker.engine import local_engine, with_engine
from agent.targets.docker.images import split_digest

NAME = "build"
LONG = True
DOCKER_TARGETS = ("docker", "docker_ssh", "swarm")


def uses_images(config: AgentConfig) -> bool:
    """Whether any environment's action server runs an image: one image per
    release, built once, serves every environment that runs containers."""
    return any(str(config.for_environment(env.name)["action_server.target"]) in DOCKER_TARGETS
               for env in config.environments)


def run(ctx: StepContext) -> Outcome:
    if not uses_images(ctx.config):
        return Outcome("the action server target runs no image", SKIPPED)
    repository = ctx.config["image.repository"]
    if not repository:
        raise StepFailed(f"{ctx.config.path}: image.repository: is required for the "
                         f"{ctx.config['action_server.target']} action server target")
    settings = ImageSettings(base_image=str(ctx.config["image.base_image"]),
                             sdk_version=str(ctx.config["image.sdk_version"]))
    try:
        context = assemble(ctx.worktree, settings, requirements=ctx.config["image.requirements"],
                           log=ctx.log)
    except ContextError as exc:
        raise StepFailed(str(exc)) from None
    production = ctx.production.image if ctx.production is not None else None
    production_ref = split_digest(production)[0] if production else None
    deadline = time.monotonic() + ctx.timeout  # the retries share the step's timeout

    def build(client: Any) -> BuiltImage:
        left = deadline - time.monotonic()
        if left <= 0:
            raise StepFailed(f"docker build: the step's {ctx.timeout:.0f} s ran out while "
                             "the Docker engine was gone")
        return build_image(
            client, context, repository=str(repository), commit=ctx.commit,
            source=str(ctx.config["image.source"] or ctx.config.repo),
            # Dies at the engine's first line: the build is under way inside dockerd.
            log=faults.on_first_line(ctx.log, "build.running", skip=1),
            production_ref=production_ref, timeout=left,
            network_mode=ctx.config["image.build_network"],
            background=ctx.config["pipeline.priority"] == "background",
        )

    try:
        # dockerd restarting: the build is started again from its context (layers
        # already built come from the engine's cache).
        built = with_engine(local_engine(ctx.config["image.docker_host"]), build,
                            what="docker build", log=ctx.log)
    except (BuildError, DeployError) as exc:
        raise StepFailed(str(exc)) from None
    if built.reused:
        ctx.journal.update_release(ctx.release_id, image=production)
        ctx.notes["image_reused"] = "yes"
        return Outcome(f"action code unchanged: reusing {production}", REUSED)
    ctx.journal.update_release(ctx.release_id, image=built.ref)
    return Outcome(f"built {built.ref}")
