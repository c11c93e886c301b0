"""A Docker Swarm service as the action-server target (more than one machine).

Swarm does the rollout: a rolling update, `start-first`, gated by a container
health check, with Swarm's own rollback when the new tasks don't get healthy.
The health check is the gate itself: it passes only when `/health` answers
and `/actions` lists every custom action the release's domain needs, so a
server missing an action never takes over.

Tasks use the host network, which works without the routing mesh (IPVS).
Because an old and a new task share a node during a start-first update, a
release alternates between two ports; a router container on the manager keeps
the URL the Rasa server calls stable, trying the new port first and the old
one after it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agent.targets.base import ActionServerDeployment, ActionServerSpec, DeployError, LogSink
from agent.targets.docker.common import EngineTarget, container_environment
from agent.targets.docker.engine import EngineFactory
from agent.targets.docker.images import pull_ref, start_command
from agent.targets.docker.probe import http_get, parse_actions
from agent.targets.docker.router import ensure_router, switch

SECOND = 1_000_000_000
LABEL_PORT = "io.rasa-gitops.port"
LABEL_RELEASE = "io.rasa-gitops.release"

HEALTH_CODE = (
    "import json,sys,urllib.request as u;"
    "b='http://127.0.0.1:'+sys.argv[1];"
    "u.urlopen(b+'/health',timeout=3);"
    "n={a['name'] for a in json.load(u.urlopen(b+'/actions',timeout=3))};"
    "m=set(sys.argv[2:])-n;"
    "print('missing: '+', '.join(sorted(m)) if m else 'ok');"
    "sys.exit(1 if m else 0)"
)


@dataclass(frozen=True)
class SwarmSettings:
    instance: str = "bot"
    port: int = 5055  # stable port of the router on the manager
    backend_ports: tuple[int, int] = (5056, 5057)
    replicas: int = 1
    public_host: str = "127.0.0.1"
    start_timeout: float = 180.0
    monitor: float = 5.0  # seconds Swarm watches new tasks before the update counts
    # Failing checks don't count for this long: a task missing an action is
    # rolled back only after it (and the retries), so keep it near the start time.
    start_period: float = 60.0
    command: tuple[str, ...] | None = None  # default: rasa-sdk's, with `{port}` filled in
    env_names: tuple[str, ...] = ()  # action_server.env: the tasks' variables


class SwarmTarget(EngineTarget):
    """ActionServerTarget for a Swarm service, driven through a manager's engine."""

    def __init__(self, name: str, engine: EngineFactory, settings: SwarmSettings) -> None:
        super().__init__(name, engine)
        self.settings = settings
        self.port, self.public_host = settings.port, settings.public_host
        self.service_name = f"rasa-actions-{settings.instance}"

    def _live(self, client: Any) -> ActionServerDeployment | None:
        service = self._service(client)
        return None if service is None else self._describe(client, service)

    # ------------------------------------------------------------ internals

    def _service(self, client: Any) -> Any | None:
        import docker.errors

        try:
            return client.services.get(self.service_name)
        except docker.errors.NotFound:
            return None

    def _deploy(self, client: Any, spec: ActionServerSpec, log: LogSink
                ) -> ActionServerDeployment:
        import docker.errors
        from docker.types import EndpointSpec, Healthcheck, RollbackConfig, UpdateConfig

        assert spec.image is not None
        image = pull_ref(spec) if spec.digest else spec.image
        try:
            swarm_state = client.info().get("Swarm", {}).get("LocalNodeState")
        except docker.errors.APIError as exc:
            raise DeployError(f"cannot ask the engine about Swarm: {exc.explanation}") from None
        if swarm_state != "active":
            raise DeployError("the Docker engine is not part of a Swarm (docker swarm init, "
                              "or point the agent at a manager)")
        service = self._service(client)
        old_port = int(service.attrs["Spec"]["Labels"].get(LABEL_PORT, 0)) if service else 0
        port = next(p for p in self.settings.backend_ports if p != old_port)
        command = start_command(client, image, port, self.settings.command)
        updating = service is not None
        # The status of the previous update stays visible until Swarm starts ours.
        previous = str((service.attrs.get("UpdateStatus") or {}).get("StartedAt", "")
                       if service is not None else "")
        labels = {LABEL_PORT: str(port), LABEL_RELEASE: spec.release_id,
                  "io.rasa-gitops.image": spec.image, "io.rasa-gitops.digest": spec.digest or "",
                  "io.rasa-gitops.commit": spec.commit}
        environment = container_environment(self.settings.env_names,
                                            f"the tasks of {self.service_name}", log)
        kwargs: dict[str, Any] = dict(
            image=image, args=command, name=self.service_name, labels=labels,
            env=[f"{name}={value}" for name, value in environment.items()],
            container_labels={LABEL_PORT: str(port), LABEL_RELEASE: spec.release_id},
            networks=["host"], mode={"Replicated": {"Replicas": self.settings.replicas}},
            endpoint_spec=EndpointSpec(mode="dnsrr"),
            healthcheck=Healthcheck(
                test=["CMD", "python3", "-c", HEALTH_CODE, str(port),
                      *sorted(spec.required_actions)],
                interval=SECOND, timeout=5 * SECOND, retries=3,
                start_period=int(self.settings.start_period * SECOND)),
            update_config=UpdateConfig(
                parallelism=1, order="start-first", failure_action="rollback",
                monitor=int(self.settings.monitor * SECOND), max_failure_ratio=0.0),
            rollback_config=RollbackConfig(parallelism=1, order="start-first",
                                           failure_action="pause"),
        )
        log(f"{'updating' if service else 'creating'} Swarm service {self.service_name} "
            f"with {image} on port {port}")
        try:
            if service is None:
                service = client.services.create(**kwargs)
            else:
                service.update(**kwargs)
        except docker.errors.APIError as exc:
            raise DeployError(f"Swarm refused the service spec: {exc.explanation}") from None
        try:
            self._wait(client, port, spec.release_id, updating, previous, log)
        except DeployError:
            if not updating:  # nothing served before: leave no broken service behind
                service.remove()
            raise
        service = self._service(client)
        assert service is not None
        router = ensure_router(client, f"{self.service_name}-router", image, self.settings.port,
                               {"io.rasa-gitops.target": self.service_name,
                                "io.rasa-gitops.role": "router"},
                               self.settings.public_host, log)
        nodes = self._node_addresses(client)
        switch(router, [f"{n}:{port}" for n in nodes] +
               ([f"{n}:{old_port}" for n in nodes] if old_port else []))
        deployment = self._describe(client, service)
        missing = sorted(spec.required_actions - deployment.served_actions)
        if missing:  # the health check should have stopped this; never switch silently
            raise DeployError(f"the Swarm service does not serve {', '.join(missing)}")
        log(f"Swarm service {self.service_name} serves {len(deployment.served_actions)} "
            f"action(s) on port {port}")
        return deployment

    def _wait(self, client: Any, port: int, release_id: str, updating: bool, previous: str,
              log: LogSink) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        last_state = ""
        while time.monotonic() < deadline:
            service = self._service(client)
            assert service is not None
            status = service.attrs.get("UpdateStatus") or {}
            if updating and str(status.get("StartedAt", "")) == previous:
                status = {}  # not our update yet
            state = str(status.get("State", ""))
            if state != last_state and state:
                log(f"Swarm update: {state}")
                last_state = state
            if state.startswith("rollback") or state == "paused":
                if state in ("rollback_completed", "rollback_paused", "paused"):
                    raise DeployError(
                        f"Swarm rolled back the update; the previous release keeps serving "
                        f"({status.get('Message', '')}; new task: {self._task_error(service)})")
            elif (updating and state == "completed") or (
                    not updating and self._healthy_task(client, release_id)):
                return
            time.sleep(0.5)
        raise DeployError(f"the Swarm service did not become healthy on port {port} within "
                          f"{self.settings.start_timeout:.0f} s ({self._task_error(service)})")

    def _healthy_task(self, client: Any, release_id: str) -> bool:
        for container in client.containers.list(filters={
                "label": [f"com.docker.swarm.service.name={self.service_name}",
                          f"{LABEL_RELEASE}={release_id}"]}):
            health = container.attrs.get("State", {}).get("Health", {}).get("Status")
            if health == "healthy":
                return True
        return False

    def _task_error(self, service: Any) -> str:
        tasks = sorted(service.tasks(), key=lambda t: str(t.get("UpdatedAt", "")), reverse=True)
        for task in tasks:
            status = task.get("Status", {})
            if status.get("Err") or status.get("State") in ("failed", "rejected", "shutdown"):
                return f"{status.get('State')}: {status.get('Err') or status.get('Message')}"
        return "no failed task"

    def _node_addresses(self, client: Any) -> list[str]:
        addresses = []
        for node in client.nodes.list():
            addr = node.attrs.get("Status", {}).get("Addr")
            if addr and node.attrs.get("Status", {}).get("State") == "ready":
                addresses.append(str(addr))
        return addresses or ["127.0.0.1"]

    def _describe(self, client: Any, service: Any) -> ActionServerDeployment:
        labels = service.attrs["Spec"].get("Labels", {})
        port = labels.get(LABEL_PORT, "")
        served: frozenset[str] = frozenset()
        for container in client.containers.list(filters={
                "label": [f"com.docker.swarm.service.name={self.service_name}",
                          f"{LABEL_PORT}={port}"]}):
            status, body = http_get(container, f"http://127.0.0.1:{port}/actions")
            if status == 200:
                served = parse_actions(body) or frozenset()
                break
        return ActionServerDeployment(
            release_id=labels.get(LABEL_RELEASE, ""), url=self.url, served_actions=served,
            handle={"service": self.service_name, "port": port,
                    "image": labels.get("io.rasa-gitops.image", ""),
                    "digest": labels.get("io.rasa-gitops.digest", ""),
                    "commit": labels.get("io.rasa-gitops.commit", "")})
