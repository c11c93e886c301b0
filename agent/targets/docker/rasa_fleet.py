"""Model target: the Rasa server as a Swarm service of N replicas (model.serving: swarm).

When one Rasa server is not enough, Rasa's own answer is replicas and a
rolling update. Each release is a service update of `rasa-gitops-rasa-fleet`:

- **The image** is the release's own, `rasa-gitops-rasa:<release>`:
  `model.rasa_image` plus the model and the rendered endpoints.yml and
  credentials.yml (agent/targets/docker/rasa_images.py, as runtime docker).
  It runs on the engine's own node, or, pushed to `model.rasa_repository`, on
  any node (agent/targets/docker/fleet_image.py).
- **Rolling, start-first, gated on the model.** Swarm starts a replica of the
  new release beside each old one (parallelism 1) and stops the old one only
  once the new one's health check passes: `GET /status` reports THIS
  release's model_id. A replica that never gets there fails the update, and
  Swarm rolls back by itself (`failure_action: rollback`): the old replicas
  never stopped serving.
- **Ports.** Tasks use host networking (no routing mesh here); replica slot
  `i` listens on `base + i - 1`, and a release takes the port set the live
  one doesn't (`model.fleet_ports`), so an old and a new task of a slot run
  side by side. HAProxy on the stable port (agent/targets/fleet_proxy.py) has
  those ports on the engine's node (`model.public_host`), or on every node's
  address, and follows the replicas by its own checks.
- **Shared stores.** During an update two releases serve at once, and any
  replica may get any message: the bot's endpoints.yml must name a tracker
  store and a lock store every replica shares (Redis, or SQL on a server).
  SQLite or Rasa's in-memory stores are refused before anything changes.
- **The token and the bot's ${VAR} values** are Swarm secrets, mounted as
  files the launcher reads (agent/targets/rasa_launch.py): on no command
  line, in no service spec. Secrets the spec no longer mounts are removed.

The action-subset invariant is the one switch's (agent/switch.py): it updates
the action service before a model that needs a new action reaches any replica.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from agent.image.push import Credentials
from agent.secrets import Secret
from agent.targets.base import ALIVE, SLOW, DeployError, Health, LogSink, ModelRef
from agent.targets.docker.engine import EngineFactory, engine_gone, with_engine
from agent.targets.docker.fleet_image import PlacedImage, place_image
from agent.targets.docker.fleet_service import (
    LABEL_CONFIG,
    LABEL_MODEL,
    LABEL_PORTS,
    MIXED,
    MOVING,
    FleetSettings,
    check_shared_stores,
    fleet_secrets,
    prune_secrets,
    service_spec,
)
from agent.targets.docker.fleet_watch import (
    LOOPBACK,
    Update,
    confirm_replicas,
    node_addresses,
    replica_endpoints,
    wait_for_old_replicas,
    wait_for_update,
)
from agent.targets.docker.rasa_images import (
    build_release_image,
    explain,
    prune_release_images,
)
from agent.targets.fleet_proxy import FleetProxy
from agent.targets.rasa_api import RasaApi, model_id_of
from agent.targets.rasa_config import ServerConfig, check_reachable, render_server_config


class SwarmRasaTarget:
    name = "rasa_swarm"

    def __init__(self, *, url: str, token: Secret, state_dir: Path, action_endpoint: str,
                 engine: EngineFactory, settings: FleetSettings, haproxy: str = "haproxy",
                 agent_env: dict[str, str] | None = None,
                 registry_auth: Credentials | None = None) -> None:
        from urllib.parse import urlsplit

        self.url = url.rstrip("/")
        self._token = token
        self.state_dir = state_dir
        self.action_endpoint = action_endpoint
        self._engine = engine
        self.settings = settings
        self.agent_env = dict(agent_env or {})
        self._registry_auth = registry_auth  # pushes to model.rasa_repository, and pulls
        parts = urlsplit(self.url)
        self.proxy = FleetProxy(
            listen_host=parts.hostname or "127.0.0.1", listen_port=parts.port or 5005,
            state_dir=state_dir / "proxy", haproxy=haproxy, token=token,
            backends=self._backends([settings.public_host]))
        self._api = RasaApi(self.url, token)  # through the proxy, as users reach it

    # ------------------------------------------------------------ protocol

    def upload(self, release_id: str, model: Path, log: LogSink,
               bot_dir: Path | None = None) -> ModelRef:
        # The model goes into the release's image at activate, built on the engine.
        if not model.is_file():
            raise DeployError(f"model file {model} does not exist")
        return ModelRef(release_id, model_id_of(model), str(model.resolve()),
                        str(bot_dir) if bot_dir else "")

    def activate(self, ref: ModelRef, log: LogSink) -> None:
        config, digest = self._render(ref)
        check_shared_stores(ref, config)
        check_reachable(config)
        self.proxy.ensure_running(log)
        with_engine(self._engine, lambda client: self._roll_or_explain(client, ref, config,
                                                                       digest, log),
                    what=f"update of Swarm service {self.settings.service}", log=log)

    def _roll_or_explain(self, client: Any, ref: ModelRef, config: ServerConfig, digest: str,
                         log: LogSink) -> None:
        import docker.errors

        try:
            self._roll(client, ref, config, digest, log)
        except docker.errors.DockerException as exc:
            if engine_gone(exc):
                raise  # with_engine tries again
            raise DeployError(f"the Docker engine failed during the update of "
                              f"{self.settings.service}: {explain(exc, self._token)}") from None

    def serves(self, ref: ModelRef) -> bool:
        # The service's spec is what Swarm converges to once its update or its
        # own rollback settled (after a rollback the spec is the previous one
        # again); while Swarm still moves replicas, what serves is a mix.
        labels, state = with_engine(self._engine, self._settled, what="reading the Rasa fleet",
                                    log=lambda line: None)
        if state in MOVING or state in MIXED:
            raise DeployError(f"Swarm service {self.settings.service} is {state}: its "
                              "replicas serve more than one release")
        if labels is None or labels.get(LABEL_MODEL) != ref.model_id:
            return False
        try:
            _, digest = self._render(ref)
        except DeployError:
            return False
        return labels.get(LABEL_CONFIG) == digest

    def live_model_id(self) -> str | None:
        return self._api.model_id()

    def talk(self, sender: str, text: str, timeout: float = 120.0) -> list[str]:
        return self._api.talk(sender, text, timeout)

    def server_answers(self) -> bool:
        return self._api.answers()

    def ensure_server(self, log: LogSink) -> bool:
        """The proxy is the agent's to run; the replicas are Swarm's (it restarts
        them), so a missing service comes back only through the switch."""
        return self.proxy.ensure_running(log)

    def health(self) -> list[Health]:
        """The proxy, and how many replicas answer behind it. Swarm, not the agent,
        restarts replicas: fewer answering than wanted is reported (SLOW), never
        restarted here."""
        if not self.proxy.pid_file.exists():
            return []
        proxy = self.proxy.health()
        if proxy.state != ALIVE:
            return [proxy]
        try:
            up = self.proxy.replicas_up()
        except DeployError as exc:
            return [proxy, Health("rasa replicas", SLOW, str(exc))]
        short = up < self.settings.replicas
        return [proxy, Health("rasa replicas", SLOW if short else ALIVE,
                              f"{up} pass HAProxy's check ({self.settings.replicas} wanted)"
                              + (f"; see `docker service ps {self.settings.service}`"
                                 if short else ""))]

    def stop_all(self, log: LogSink) -> None:
        # The service outlives the agent by design, as the Swarm action service.
        self.proxy.stop(log)

    def secrets(self) -> list[str]:
        return [self._token.reveal()]

    # ------------------------------------------------------------ the update

    def _render(self, ref: ModelRef) -> tuple[ServerConfig, str]:
        config = render_server_config(
            Path(ref.bot_dir) if ref.bot_dir else None, self.state_dir / "config",
            action_url=self.action_endpoint,
            # Never used: a fleet without a shared tracker store is refused.
            default_tracker_db=self.state_dir / "unused" / "tracker.db",
            agent_env=self.agent_env)
        # The fleet's own settings too: a new replica count or repository is a
        # change of what should serve, which the next reconcile rolls out.
        settings = f"{self.settings.replicas}\0{self.settings.repository}".encode()
        digest = hashlib.sha256(config.endpoints.read_bytes()
                                + config.credentials.read_bytes() + settings).hexdigest()
        return config, digest

    def _settled(self, client: Any) -> tuple[dict[str, str] | None, str]:
        return _labels_and_state(self._service(client))

    def _service(self, client: Any) -> Any | None:
        import docker.errors

        try:
            return client.services.get(self.settings.service)
        except docker.errors.NotFound:
            return None

    def _roll(self, client: Any, ref: ModelRef, config: ServerConfig, digest: str,
              log: LogSink) -> None:
        import docker.errors

        swarm = client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            raise DeployError("the Docker engine is not part of a Swarm (docker swarm init, "
                              "or point the agent at a manager)")
        service = self._service(client)
        found, state = _labels_and_state(service)
        labels = found or {}
        if state in MOVING:
            raise DeployError(f"Swarm is still moving the replicas of {self.settings.service} "
                              f"({state}); nothing was changed: try again once it settled")
        if (labels.get(LABEL_MODEL) == ref.model_id and labels.get(LABEL_CONFIG) == digest
                and state not in MIXED):
            self._confirm(client, service, ref, log)
            log(f"model {ref.model_id} is already live on {self.settings.service}")
            return
        # Tagged per environment and config too: another environment's build of
        # the same release must not retag what this service restarts from.
        built = build_release_image(client, self.settings.image, ref, config, log,
                                    variant=f"{self.settings.place or 'fleet'}-{digest[:12]}")
        placed = place_image(client, built, release_id=ref.release_id,
                             repository=self.settings.repository,
                             node=str(swarm.get("NodeID", "")),
                             credentials=self._registry_auth,
                             push_attempts=self.settings.push_attempts, log=log)
        hosts = self._hosts(client, placed)
        # The old replicas' addresses too while Swarm moves them (and after a
        # rollback); only a confirmed release narrows HAProxy to its own.
        wanted = self._backends(hosts)
        self.proxy.use_backends(list(dict.fromkeys([*self.proxy.backends, *wanted])), log)
        old_base = int(labels.get(LABEL_PORTS, 0) or 0)
        base = next(b for b in self.settings.port_bases if b != old_base)
        previous = str((service.attrs.get("UpdateStatus") or {}).get("StartedAt", "")
                       if service is not None else "")
        # A replica reached from another host listens on every interface.
        interface = "127.0.0.1" if set(hosts) <= set(LOOPBACK) else "0.0.0.0"
        spec = service_spec(client, self.settings, placed, ref, config, digest, base,
                            fleet_secrets(client, self.settings, self._token, config,
                                          self.state_dir), interface)
        where = "any node (pulled from model.rasa_repository)" if placed.spans_nodes else \
            f"node {placed.node}"
        log(f"{'updating' if service else 'creating'} Swarm service {self.settings.service}: "
            f"{self.settings.replicas} replica(s) of release {ref.release_id} on port(s) "
            f"{', '.join(map(str, self.settings.ports(base)))} of {where}, start-first "
            f"(tracker store: {config.tracker_store}, lock store: {config.lock_store})")
        try:
            if service is None:
                service = client.services.create(**spec)
            else:
                service.reload()  # its version now: the build took a while
                service.update(**spec)
        except docker.errors.APIError as exc:
            raise DeployError(f"Swarm refused the Rasa service spec: {explain(exc)}") from None
        try:
            wait_for_update(client, self.settings, Update(
                ref, bool(labels), previous, self.settings.replicas), self._service, log)
        except DeployError:
            created = self._service(client)
            if not labels and created is not None:  # nothing served before: leave no
                created.remove()  # broken service behind
            raise
        wait_for_old_replicas(client, self.settings, ref.release_id, self._service, log)
        service = self._service(client)
        self._confirm(client, service, ref, log)
        self.proxy.use_backends(wanted, log)
        self.proxy.wait_for_replicas(self.settings.replicas)
        prune_release_images(client, built, log)
        prune_secrets(client, service, log)

    def _hosts(self, client: Any, placed: PlacedImage) -> list[str]:
        """Where the replicas' ports are reached: model.public_host when they all
        run on the engine's node, else every node's address."""
        if not placed.spans_nodes:
            return [self.settings.public_host]
        return sorted(set(node_addresses(client).values()))

    def _backends(self, hosts: list[str]) -> list[tuple[str, int]]:
        return [(host, port) for host in hosts for base in self.settings.port_bases
                for port in self.settings.ports(base)]

    def _confirm(self, client: Any, service: Any, ref: ModelRef, log: LogSink) -> None:
        labels = dict(service.attrs["Spec"].get("Labels") or {})
        pinned = service.attrs["Spec"].get("TaskTemplate", {}).get("Placement", {}).get(
            "Constraints")
        host_of = {"": self.settings.public_host} if pinned else node_addresses(client)
        endpoints = replica_endpoints(service, ref.release_id,
                                      int(labels.get(LABEL_PORTS, 0) or 0), host_of)
        confirm_replicas(ref, endpoints, self.settings.replicas,
                         lambda url: RasaApi(url, self._token), log)


def _labels_and_state(service: Any | None) -> tuple[dict[str, str] | None, str]:
    """A service's labels and the state of its last update ("" for none)."""
    if service is None:
        return None, ""
    return (dict(service.attrs["Spec"].get("Labels") or {}),
            str((service.attrs.get("UpdateStatus") or {}).get("State", "")))
