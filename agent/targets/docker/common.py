"""What every Docker action-server target does the same way around its own rollout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.targets.base import ActionServerDeployment, ActionServerSpec, DeployError, LogSink
from agent.targets.docker.engine import EngineFactory
from agent.targets.docker.images import normalized


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
        client = self._engine()
        try:
            return self._deploy(client, normalized(spec), log)
        finally:
            client.close()

    def live(self) -> ActionServerDeployment | None:
        client = self._engine()
        try:
            return self._live(client)
        finally:
            client.close()

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

    def secrets(self) -> list[str]:
        return []  # registry and SSH credentials are Secrets of the config, redacted there

    def _deploy(self, client: Any, spec: ActionServerSpec, log: LogSink
                ) -> ActionServerDeployment:
        raise NotImplementedError

    def _live(self, client: Any) -> ActionServerDeployment | None:
        raise NotImplementedError
