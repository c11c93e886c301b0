"""What every Docker action-server target does the same way around its own rollout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.targets.base import (
    ActionServerDeployment,
    ActionServerSpec,
    DeployError,
    Health,
    LogSink,
)
from agent.targets.docker.engine import EngineFactory, with_engine
from agent.targets.docker.images import normalized
from hooks.core.child_env import passed_env


def container_environment(names: tuple[str, ...], where: str, log: LogSink) -> dict[str, str]:
    """The `action_server.env` variables of the agent's environment, for the bot's
    container (docker-py `environment=`, never a command line). Values may be
    secrets of the bot: only the names are logged."""
    environment = passed_env(names)
    if environment:
        log(f"passing {', '.join(sorted(environment))} (action_server.env) to {where}")
    missing = sorted(set(names) - set(environment))
    if missing:
        log(f"not set in the agent's environment, so not passed: {', '.join(missing)}")
    return environment


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
        return with_engine(self._engine, lambda client: self._deploy(client, wanted, log),
                           what=f"deploy to {self.name}", log=log)

    def live(self) -> ActionServerDeployment | None:
        return with_engine(self._engine, self._live, what=f"{self.name}: reading what serves",
                           log=lambda line: None)

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
