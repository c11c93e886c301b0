"""One Docker engine as an action-server target (local, or remote over SSH).

Blue/green on one host: the new release's container starts beside the live
one on the spare backend port (host network). Only once `/health` answers
and `/actions` lists every required action does the router on the stable port
switch to it; then the old container stops. Anything failing before the
switch removes the new container and leaves the live one serving.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from agent.image.context import FINGERPRINT_LABEL
from agent.image.push import Credentials
from agent.targets.base import (
    ActionServerDeployment,
    ActionServerSpec,
    DeployError,
    LogSink,
)
from agent.targets.docker.common import EngineTarget, container_environment
from agent.targets.docker.engine import EngineFactory, engine_gone
from agent.targets.docker.images import pull_ref, repository_of, start_command
from agent.targets.docker.probe import PORT_IN_USE, http_get, parse_actions
from agent.targets.docker.router import ensure_router, read_backends, switch

LABEL_TARGET = "io.rasa-gitops.target"
LABEL_ROLE = "io.rasa-gitops.role"
LABEL_RELEASE = "io.rasa-gitops.release"
LABEL_PORT = "io.rasa-gitops.port"
LABEL_COMMIT = "io.rasa-gitops.commit"


@dataclass(frozen=True)
class HostSettings:
    instance: str = "bot"  # names containers: rasa-actions-<instance>-...
    port: int = 5055  # the stable port the Rasa server calls (the router)
    backend_ports: tuple[int, int] = (5056, 5057)
    public_host: str = "127.0.0.1"  # how the Rasa server reaches this host
    start_timeout: float = 120.0
    keep_images: int = 3
    command: tuple[str, ...] | None = None  # default: by image label, `{port}` filled in
    env_names: tuple[str, ...] = ()  # action_server.env: the container's variables


class DockerHostTarget(EngineTarget):
    """ActionServerTarget for one Docker engine."""

    def __init__(self, name: str, engine: EngineFactory, settings: HostSettings,
                 pull_auth: Credentials | None = None) -> None:
        super().__init__(name, engine)
        self.settings = settings
        self.port, self.public_host = settings.port, settings.public_host
        self._pull_auth = pull_auth
        self.prefix = f"rasa-actions-{settings.instance}"

    def _live(self, client: Any) -> ActionServerDeployment | None:
        container = self._live_container(client)
        return None if container is None else self._describe(container)

    # ------------------------------------------------------------ deploy

    def _deploy(self, client: Any, spec: ActionServerSpec, log: LogSink
                ) -> ActionServerDeployment:
        image = self._ensure_image(client, spec, log)
        router = self._ensure_router(client, image, log)
        old = self._live_container(client, router)
        old_port = int(old.labels.get(LABEL_PORT, 0)) if old is not None else 0
        port = next(p for p in self.settings.backend_ports if p != old_port)
        name = f"{self.prefix}-{port}"
        self._remove(client, name)
        command = start_command(client, image, port, self.settings.command)
        log(f"starting {name} from {image} on port {port}"
            + (f" beside {old.name} (port {old_port})" if old is not None else ""))
        environment = container_environment(self.settings.env_names, name, log)
        try:
            container = client.containers.run(
                image, command=command, name=name, detach=True, network_mode="host",
                environment=environment,
                labels={LABEL_TARGET: self.prefix, LABEL_ROLE: "action-server",
                        LABEL_RELEASE: spec.release_id, LABEL_PORT: str(port),
                        LABEL_COMMIT: spec.commit, "io.rasa-gitops.image": image,
                        "io.rasa-gitops.digest": spec.digest or ""},
                restart_policy={"Name": "unless-stopped"},
            )
        except Exception as exc:  # docker.errors.APIError and friends
            if engine_gone(exc):
                raise  # the engine went away: EngineTarget tries the rollout again
            raise DeployError(f"cannot start {name}: {_explain(exc)}") from None
        try:
            served = self._wait_ready(container, port, spec.required_actions, log)
            self._switch(router, [f"127.0.0.1:{port}"])
            status, body = http_get(container, f"http://127.0.0.1:{self.settings.port}/actions")
            if status != 200 or parse_actions(body) != served:
                raise DeployError(f"the router on port {self.settings.port} does not reach the "
                                  f"new server (HTTP {status}: {body[:200]})")
        except BaseException:
            if old is not None:
                self._switch(router, [f"127.0.0.1:{old_port}"])
            self._remove(client, name)
            raise
        log(f"switched port {self.settings.port} to {name}")
        if old is not None:
            log(f"stopping {old.name}")
            self._remove(client, old.name)
        self._prune_images(client, image, log)
        container.reload()
        return self._describe(container, served)

    def _ensure_image(self, client: Any, spec: ActionServerSpec, log: LogSink) -> str:
        import docker.errors

        assert spec.image is not None
        try:
            client.images.get(spec.image)
            return spec.image
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise DeployError(f"cannot inspect {spec.image}: {_explain(exc)}") from None
        ref = pull_ref(spec)
        log(f"pulling {ref}")
        try:
            auth = self._pull_auth
            client.images.pull(ref, auth_config={"username": auth.username,
                                                 "password": auth.password} if auth else None)
        except docker.errors.DockerException as exc:
            raise DeployError(f"cannot pull {ref}: {_explain(exc)}") from None
        return ref

    def _wait_ready(self, container: Any, port: int, required: frozenset[str],
                    log: LogSink) -> frozenset[str]:
        deadline = time.monotonic() + self.settings.start_timeout
        base = f"http://127.0.0.1:{port}"
        while True:
            container.reload()
            if container.status in ("exited", "dead") or (
                    container.status == "restarting"):
                raise DeployError(self._exit_message(container, port))
            if container.status == "running":
                status, _ = http_get(container, f"{base}/health", timeout=3)
                if status == 200:
                    break
            if time.monotonic() > deadline:
                raise DeployError(f"{container.name} did not answer /health on port {port} "
                                  f"within {self.settings.start_timeout:.0f} s; last log: "
                                  f"{_tail(container)}")
            time.sleep(0.5)
        status, body = http_get(container, f"{base}/actions")
        served = parse_actions(body) if status == 200 else None
        if served is None:
            raise DeployError(f"{container.name}: GET /actions answered HTTP {status}, "
                              f"not a list of actions: {body[:200]}")
        missing = sorted(required - served)
        if missing:
            raise DeployError(f"the new action server does not serve {', '.join(missing)} "
                              f"(the domain needs it); it serves {', '.join(sorted(served))}")
        log(f"{container.name} is healthy and serves {len(served)} action(s)")
        return served

    def _exit_message(self, container: Any, port: int) -> str:
        tail = _tail(container)
        if any(word in tail.lower() for word in PORT_IN_USE):
            return (f"port {port} is already in use on {self.settings.public_host}; "
                    f"free it or change the action server ports")
        return f"{container.name} exited before answering /health; last log: {tail}"

    # ------------------------------------------------------------ router

    def _ensure_router(self, client: Any, image: str, log: LogSink) -> Any:
        return ensure_router(client, f"{self.prefix}-router", image, self.settings.port,
                             {LABEL_TARGET: self.prefix, LABEL_ROLE: "router"},
                             self.settings.public_host, log)

    def _switch(self, router: Any, backends: list[str]) -> None:
        switch(router, backends)

    def _backends(self, router: Any) -> list[str]:
        return read_backends(router)

    def _live_container(self, client: Any, router: Any | None = None) -> Any | None:
        import docker.errors

        if router is None:
            try:
                router = client.containers.get(f"{self.prefix}-router")
            except docker.errors.NotFound:
                return None
            if router.status != "running":
                return None
        backends = self._backends(router)
        if not backends:
            return None
        port = backends[0].rpartition(":")[2]
        found = client.containers.list(filters={
            "label": [f"{LABEL_TARGET}={self.prefix}", f"{LABEL_PORT}={port}",
                      f"{LABEL_ROLE}=action-server"], "status": "running"})
        return found[0] if found else None

    def _describe(self, container: Any, served: frozenset[str] | None = None
                  ) -> ActionServerDeployment:
        labels = container.labels
        if served is None:
            status, body = http_get(container, f"http://127.0.0.1:{labels[LABEL_PORT]}/actions")
            served = (parse_actions(body) if status == 200 else None) or frozenset()
        return ActionServerDeployment(
            release_id=labels.get(LABEL_RELEASE, ""), url=self.url, served_actions=served,
            handle={"container": container.name, "port": labels.get(LABEL_PORT, ""),
                    "image": labels.get("io.rasa-gitops.image", ""),
                    "digest": labels.get("io.rasa-gitops.digest", ""),
                    "commit": labels.get(LABEL_COMMIT, "")},
        )

    # ------------------------------------------------------------ housekeeping

    def _remove(self, client: Any, name: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)

    def _prune_images(self, client: Any, live_image: str, log: LogSink) -> None:
        """Keep the live image and the `keep_images - 1` newest before it (for rollback).

        Images newer than the live one are never touched: they may be releases
        still on their way through the pipeline.
        """
        import docker.errors

        repository = repository_of(live_image)
        live = client.images.get(live_image)
        live_created = str(live.attrs.get("Created", ""))
        older = [i for i in client.images.list(name=repository)
                 if (i.attrs.get("Config", {}).get("Labels") or {}).get(FINGERPRINT_LABEL)
                 and i.id != live.id and str(i.attrs.get("Created", "")) < live_created]
        older.sort(key=lambda i: str(i.attrs.get("Created", "")), reverse=True)
        in_use = {c.image.id for c in client.containers.list(all=True) if c.image is not None}
        for image in older[max(self.settings.keep_images - 1, 0):]:
            if image.id in in_use:
                continue
            # Untag only this repository's names: the same image may carry others.
            refs = [ref for ref in (*image.tags, *image.attrs.get("RepoDigests", []))
                    if repository_of(ref) == repository]
            for ref in refs:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(ref)
            if refs:
                log(f"removed old image {refs[0]}")


def _tail(container: Any, lines: int = 6) -> str:
    try:
        text = container.logs(tail=lines).decode("utf-8", "replace")
    except Exception:  # the container may already be gone
        return "(no log)"
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())[-600:]


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
