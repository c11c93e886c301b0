"""What every Docker action-server target does the same way around its own rollout."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from agent.retry import retrying
from agent.targets.base import (
    ActionServerDeployment,
    ActionServerSpec,
    DeployError,
    Health,
    LogSink,
)
from agent.targets.docker.engine import EngineFactory, engine_gone, engine_gone_error
from agent.targets.docker.images import normalized

T = TypeVar("T")


class EngineTarget:
    """An ActionServerTarget driven through one engine; subclasses do the rollout."""

    name: str
    port: int
    public_host: str

    def __init__(self, name: str, engine: EngineFactory) -> None:
        self.name = name
        self._engine = engine

    @property
    def url(self) -> str:
        """The stable URL the Rasa server's action endpoint points at (the router)."""
        return f"http://{self.public_host}:{self.port}/webhook"

    def deploy(self, spec: ActionServerSpec, log: LogSink) -> ActionServerDeployment:
        if not spec.image:
            raise DeployError("no image for this release; the build step must run first")
        wanted = normalized(spec)
        # A whole rollout is tried again when the engine went away (dockerd restarting,
        # the SSH connection cut): it starts by removing its own half-started container,
        # and the router still points at the live one until the new one is healthy.
        return self._with_engine(f"deploy to {self.name}", log,
                                 lambda client: self._deploy(client, wanted, log))

    def live(self) -> ActionServerDeployment | None:
        return self._with_engine(f"{self.name}: reading what serves", lambda line: None,
                                 self._live)

    def _with_engine(self, what: str, log: LogSink, work: Callable[[Any], T]) -> T:
        """`work(client)` on a fresh engine connection, retried with backoff while the
        engine is unreachable; giving up raises a DeployError naming the attempts."""
        tried = 0

        def once() -> T:
            nonlocal tried
            tried += 1
            client = self._engine()
            try:
                return work(client)
            finally:
                with contextlib.suppress(Exception):  # a dead engine's client
                    client.close()

        try:
            return retrying(once, what=what, transient=engine_gone, log=log)
        except Exception as exc:
            error = engine_gone_error(exc, tried)
            if error is None:
                raise
            raise error from None

    def served_actions(self) -> frozenset[str]:
        live = self.live()
        return live.served_actions if live else frozenset()

    def reactivate(self, deployment: ActionServerDeployment, log: LogSink) -> None:
        image = deployment.handle.get("image")
        if not image:
            raise DeployError(f"release {deployment.release_id} has no kept image to reactivate")
        self.deploy(ActionServerSpec(
            release_id=deployment.release_id, commit=deployment.handle.get("commit", ""),
            worktree=Path(), required_actions=deployment.served_actions, image=image,
            digest=deployment.handle.get("digest") or None), log)

    def stop_all(self, log: LogSink) -> None:
        """Containers and services outlive the agent by design: `agent stop` leaves them."""

    def health(self) -> list[Health]:
        """None to watch: the engine restarts its containers (`unless-stopped`) and
        Swarm its tasks; the agent's supervisor would only race them."""
        return []

    def revive(self, log: LogSink) -> list[str]:
        return []  # see health()

    def secrets(self) -> list[str]:
        return []  # registry and SSH credentials are Secrets of the config, redacted there

    def _deploy(self, client: Any, spec: ActionServerSpec, log: LogSink
                ) -> ActionServerDeployment:
        raise NotImplementedError

    def _live(self, client: Any) -> ActionServerDeployment | None:
        raise NotImplementedError
