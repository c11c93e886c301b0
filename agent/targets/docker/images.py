"""Image references and start commands shared by the Docker targets."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agent.image.context import DEFAULT_DOCKERFILE_LABEL
from agent.targets.base import ActionServerSpec


def repository_of(ref: str) -> str:
    repository = ref.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository.rsplit(":", 1)[0]
    return repository


def pull_ref(spec: ActionServerSpec) -> str:
    """`repository@digest` when the push recorded a digest, else the tag."""
    assert spec.image is not None
    if spec.digest:
        return f"{repository_of(spec.image)}@{spec.digest}"
    return spec.image


def start_command(client: Any, image: str, port: int,
                  configured: tuple[str, ...] | None) -> list[str]:
    """The container command that serves the actions on `port` (host network)."""
    import docker.errors

    if configured:
        return [part.replace("{port}", str(port)) for part in configured]
    try:
        labels = client.images.get(image).attrs.get("Config", {}).get("Labels") or {}
    except docker.errors.DockerException:
        labels = {}
    if labels.get(DEFAULT_DOCKERFILE_LABEL):
        return ["--actions", "actions", "--port", str(port)]
    # The convention of the official rasa/rasa-sdk image's entrypoint.
    return ["start", "--actions", "actions", "--port", str(port)]


def split_digest(image: str) -> tuple[str, str | None]:
    """`repo:tag@sha256:...` (as the journal keeps it) into (`repo:tag`, digest)."""
    if "@" in image:
        ref, digest = image.split("@", 1)
        return ref, digest
    return image, None


def normalized(spec: ActionServerSpec) -> ActionServerSpec:
    """The spec with a digest carried inside `image` moved to `digest`."""
    if spec.image is None:
        return spec
    image, digest = split_digest(spec.image)
    return replace(spec, image=image, digest=spec.digest or digest)
