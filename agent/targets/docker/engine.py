"""Connecting to a Docker engine with a clear message when that fails."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from agent.retry import ENGINE, Backoff, retrying
from agent.targets.base import DeployError, LogSink

EngineFactory = Callable[[], Any]  # returns a connected docker.DockerClient
T = TypeVar("T")


class EngineUnreachable(DeployError):
    """The engine, or the SSH host in front of it, did not answer: worth another try."""


def engine_gone(exc: Exception) -> str | None:
    """A short reason (no secrets) when `exc` says the engine or the way to it went
    away, so a retry may find it back (dockerd restarting, an SSH connection cut); None
    for every other failure, which a retry would only repeat."""
    import requests

    if isinstance(exc, EngineUnreachable):
        return "the Docker engine is unreachable"
    if isinstance(exc, (requests.ConnectionError, ConnectionError, EOFError)):
        return "the connection to the Docker engine broke"
    return None


def engine_gone_error(exc: Exception, tried: int) -> DeployError | None:
    """`exc` (an engine that went away) as a DeployError naming the attempts; None
    when `exc` is another failure, to be raised as it is."""
    if engine_gone(exc) is None:
        return None
    detail = str(exc) if isinstance(exc, DeployError) else (
        f"the connection to the Docker engine broke: {type(exc).__name__}: {exc}")
    return DeployError(f"{detail} (gave up after {tried} attempt(s))")


def with_engine(engine: EngineFactory, work: Callable[[Any], T], *, what: str,
                log: LogSink, backoff: Backoff = ENGINE) -> T:
    """`work(client)` on a fresh connection from `engine`, closed after it, and tried
    again with backoff (agent.retry) while the engine is gone: dockerd restarting,
    the SSH connection cut. Giving up raises a DeployError naming the attempts;
    any other failure of `work` is raised unchanged, for the caller's own handling."""
    tried = 0

    def once() -> T:
        nonlocal tried
        tried += 1
        client = engine()
        try:
            return work(client)
        finally:
            with contextlib.suppress(Exception):  # a dead engine's client
                client.close()

    try:
        return retrying(once, what=what, transient=engine_gone, log=log, backoff=backoff)
    except Exception as exc:
        error = engine_gone_error(exc, tried)
        if error is None:
            raise
        raise error from None


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
            raise EngineUnreachable(f"cannot reach the Docker engine at {where}: {exc}") from None
        return client

    return connect
