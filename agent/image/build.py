"""Build an action-server image with the `docker` SDK, or reuse the one in production.

The image is rebuilt only when its inputs changed: the fingerprint of the
build context (action code, requirements, Dockerfile, and for the default
Dockerfile the base image and rasa-sdk version) is stored as an image label and
compared with the production image's.

Background priority: the build runs inside dockerd, not in the agent, so
nicing the agent or its client does nothing for it. What the engine offers is
a CPU weight for the build's RUN containers (the classic builder, which the
`/build` API of the docker SDK drives): `cpushares=2`, the kernel's lowest
weight (cgroup v2 `cpu.weight` 1). It lets a `pip install` step yield the CPU
to the live bot; the engine's own IO (layer export, image pulls) is not
limited by it.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from agent.image.context import DEFAULT_DOCKERFILE_LABEL, FINGERPRINT_LABEL, BuildContext
from agent.secrets import public_url
from agent.targets.base import LogSink

STEP_LINE = re.compile(r"^Step (\d+/\d+) : (.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TAIL_LINES = 12
LOWEST_CPU_SHARES = 2  # Linux's minimum cpu.shares; cgroup v2 weight 1


class BuildError(Exception):
    """The image could not be built; the message names the failing step."""


@dataclass(frozen=True)
class BuiltImage:
    ref: str  # repository:tag
    image_id: str
    fingerprint: str
    reused: bool


def labels_for(commit: str, source: str, fingerprint: str, default_dockerfile: bool,
               created: datetime | None = None) -> dict[str, str]:
    """The image's OCI labels. `source` (image.source, by default the `repo:` URL)
    loses any credential it holds: a label is readable by whoever can pull."""
    when = (created or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.source": public_url(source),
        "org.opencontainers.image.created": when,
        FINGERPRINT_LABEL: fingerprint,
    }
    if default_dockerfile:
        labels[DEFAULT_DOCKERFILE_LABEL] = "true"
    return labels


def image_fingerprint(client: Any, ref: str) -> str | None:
    """The fingerprint label of a local image, or None if it isn't here or has none."""
    import docker.errors

    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError:
        return None
    labels = image.attrs.get("Config", {}).get("Labels") or {}
    value = labels.get(FINGERPRINT_LABEL)
    return str(value) if value else None


def build_image(
    client: Any,
    context: BuildContext,
    *,
    repository: str,
    commit: str,
    source: str,
    log: LogSink,
    production_ref: str | None = None,
    production_fingerprint: str | None = None,
    timeout: float = 1800,
    no_cache: bool = False,
    network_mode: str | None = None,
    background: bool = False,
) -> BuiltImage:
    """Build `repository:commit`, or reuse the production image when nothing changed.

    `background=True` gives the build's containers the lowest CPU weight.
    """
    import docker.errors

    fingerprint = context.fingerprint()
    if production_ref:
        known = production_fingerprint or image_fingerprint(client, production_ref)
        if known == fingerprint:
            log(f"action code, requirements and Dockerfile unchanged: reusing {production_ref}")
            image_id = ""
            with contextlib.suppress(docker.errors.DockerException):
                image_id = str(client.images.get(production_ref).id)
            return BuiltImage(production_ref, image_id, fingerprint, reused=True)

    ref = f"{repository}:{commit}"
    labels = labels_for(commit, source, fingerprint, context.uses_default_dockerfile)
    log(f"building {ref} ({len(context.entries)} files in the context)")
    step = ""
    tail: list[str] = []
    image_id = ""
    try:
        stream = client.api.build(
            fileobj=context.tar(), custom_context=True, dockerfile=context.dockerfile,
            tag=ref, labels=labels, rm=True, forcerm=True, pull=False, decode=True,
            timeout=timeout, nocache=no_cache, network_mode=network_mode,
            container_limits={"cpushares": LOWEST_CPU_SHARES} if background else None,
        )
        for chunk in stream:
            if "stream" in chunk:
                for line in ANSI.sub("", str(chunk["stream"])).splitlines():
                    line = line.rstrip()
                    if not line:
                        continue
                    match = STEP_LINE.match(line)
                    if match:
                        step = f"Step {match.group(1)} `{match.group(2)}`"
                    log(line)
                    tail = [*tail[-(TAIL_LINES - 1):], line]
            elif "aux" in chunk and isinstance(chunk["aux"], dict):
                image_id = str(chunk["aux"].get("ID", image_id))
            elif "error" in chunk:
                error = ANSI.sub("", str(chunk["error"])).strip()
                log(error)
                raise BuildError(_failure(step, error, tail))
    except docker.errors.APIError as exc:
        raise BuildError(_failure(step, str(exc.explanation or exc), tail)) from None
    except docker.errors.DockerException as exc:
        raise BuildError(f"docker build of {ref} failed: {exc}") from None
    if not image_id:
        image_id = str(client.images.get(ref).id)
    return BuiltImage(ref, image_id, fingerprint, reused=False)


def _failure(step: str, error: str, tail: list[str]) -> str:
    where = f" at {step}" if step else ""
    output = [line for line in tail if line.strip() and not STEP_LINE.match(line)
              and not line.lstrip().startswith(("--->", "Removing intermediate container"))]
    last = "; ".join(output[-3:])
    hint = f" (last output: {last})" if last and last != error else ""
    return f"docker build failed{where}: {error}{hint}"
