"""Connecting to a Docker engine with a clear message when that fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.targets.base import DeployError

EngineFactory = Callable[[], Any]  # returns a connected docker.DockerClient


def local_engine(base_url: str | None = None, timeout: int = 300) -> EngineFactory:
    """A factory for the local engine: `base_url` (unix://...), else DOCKER_HOST/default."""

    def connect() -> Any:
        import docker
        import docker.errors

        try:
            if base_url:
                client = docker.DockerClient(base_url=base_url, timeout=timeout)
            else:
                client = docker.from_env(timeout=timeout)
            client.ping()
        except docker.errors.DockerException as exc:
            where = base_url or "the default Docker socket (DOCKER_HOST)"
            raise DeployError(f"cannot reach the Docker engine at {where}: {exc}") from None
        return client

    return connect
