"""The Swarm service spec of a Rasa fleet (agent/targets/docker/rasa_fleet.py), and
what its tasks say about an update."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.secrets import Redactor, Secret
from agent.targets.base import DeployError, LogSink, ModelRef
from agent.targets.docker.fleet_image import PlacedImage
from agent.targets.docker.rasa_images import IN_IMAGE, explain
from agent.targets.docker.rasa_slots import image_user
from agent.targets.rasa_api import local_token
from agent.targets.rasa_config import ServerConfig
from agent.targets.rasa_launch import ENV_FILE_VARIABLE, LAUNCHER, TOKEN_FILE_VARIABLE
from hooks.core.child_env import QUIET_RASA_ENV

SECOND = 1_000_000_000
SERVICE = "rasa-gitops-rasa-fleet"
LABEL_MODEL = "io.rasa-gitops.model-id"
LABEL_CONFIG = "io.rasa-gitops.config-hash"
LABEL_PORTS = "io.rasa-gitops.port-base"
LABEL_RELEASE = "io.rasa-gitops.release"
LABEL_LOCATION = "io.rasa-gitops.model-file"
LABEL_BOT_DIR = "io.rasa-gitops.bot-dir"
TOKEN_SECRET_FILE = "rasa-gitops-token"  # under /run/secrets in every task
ENV_SECRET_FILE = "rasa-gitops-env"  # the bot's ${VAR} values, as JSON
SECRET_ROLE = "io.rasa-gitops.role"
SECRET_SERVICE = "io.rasa-gitops.service"
SHARED_TRACKERS = ("redis", "sql (postgresql)", "sql (mysql)", "mongod", "dynamo")
# Swarm's UpdateStatus.State: still moving replicas; stopped with a mix of releases.
MOVING = ("updating", "rollback_started")
MIXED = ("paused", "rollback_paused")

# The replica's port, from Swarm's task slot: Swarm templates reach the
# environment, not the command line. Appended to Rasa's arguments in-process.
PORT_CODE = (
    "import os, sys\n"
    "sys.argv.append('--port=%d' % (int(os.environ['RASA_GITOPS_PORT_BASE'])"
    " + int(os.environ['RASA_GITOPS_TASK_SLOT']) - 1))\n"
)
# Swarm's health check: this release's model is what the replica serves.
HEALTH_CODE = (
    "import json, os, sys, urllib.request as u\n"
    "port = int(os.environ['RASA_GITOPS_PORT_BASE']) + int(os.environ['RASA_GITOPS_TASK_SLOT'])"
    " - 1\n"
    "token = open(os.environ['" + TOKEN_FILE_VARIABLE + "']).read().strip()\n"
    "status = json.load(u.urlopen('http://127.0.0.1:%d/status?token=%s' % (port, token),"
    " timeout=5))\n"
    "print('model_id', status.get('model_id'))\n"
    "sys.exit(0 if status.get('model_id') == os.environ['RASA_GITOPS_MODEL_ID'] else 1)\n"
)


@dataclass(frozen=True)
class FleetSettings:
    image: str  # model.rasa_image
    replicas: int
    port_bases: tuple[int, int]  # model.fleet_ports: the two port sets' first ports
    public_host: str  # where HAProxy and the agent reach the replicas' ports
    load_timeout: float  # a replica's start period: it loads its model meanwhile
    monitor: float = 5.0  # seconds Swarm watches a new task before it counts
    drain_timeout: float = 30.0  # a stopping replica's grace to finish its requests
    place: str = ""  # the environment, for its own service beside another's
    repository: str = ""  # model.rasa_repository: every node pulls the image from there
    push_attempts: int = 4  # image.push_attempts

    @property
    def service(self) -> str:
        return f"{SERVICE}-{self.place}" if self.place else SERVICE

    def ports(self, base: int) -> list[int]:
        return [base + i for i in range(self.replicas)]


def check_shared_stores(ref: ModelRef, config: ServerConfig) -> None:
    """Every replica may get any message: the stores must be ones they all share."""
    where = f"{ref.bot_dir or 'the bot'}/endpoints.yml"
    if not config.tracker_store.startswith(SHARED_TRACKERS):
        raise DeployError(
            f"{where}: the tracker store is {config.tracker_store}, which the replicas of "
            "a Swarm fleet can't share; name a shared one (tracker_store: type: redis, or "
            "SQL on a PostgreSQL server) or use model.serving blue_green")
    if config.lock_store != "redis":
        raise DeployError(
            f"{where}: the lock store is {config.lock_store}; the replicas of a Swarm fleet "
            "need one they share, so one conversation's messages run one at a time: add "
            "lock_store: type: redis")


@dataclass(frozen=True)
class FleetSecrets:
    """The Swarm secrets a release's tasks mount: the agent's token, and the
    bot's ${VAR} values (None when its config names none)."""

    token: Any
    bot_env: Any | None


def service_spec(client: Any, settings: FleetSettings, image: PlacedImage, ref: ModelRef,
                 config: ServerConfig, digest: str, base: int, secrets: FleetSecrets,
                 interface: str) -> dict[str, Any]:
    """docker-py's `services.create`/`update` arguments for the release: its
    replicas on `image.node` (where the image was built) or, when the image is
    in a registry, on any node."""
    from docker.types import Healthcheck, RollbackConfig, SecretReference, UpdateConfig

    # Only Rasa's quiet settings and the agent's own stay in the spec, which
    # `docker service inspect` shows: the bot's values come from a secret.
    env = {**QUIET_RASA_ENV, TOKEN_FILE_VARIABLE: f"/run/secrets/{TOKEN_SECRET_FILE}",
           "RASA_GITOPS_PORT_BASE": str(base), "RASA_GITOPS_TASK_SLOT": "{{.Task.Slot}}",
           "RASA_GITOPS_MODEL_ID": ref.model_id}
    owner = _owner(client, image.built)
    mounts = [SecretReference(secrets.token.id, secrets.token.name,
                              filename=TOKEN_SECRET_FILE, **owner)]
    if secrets.bot_env is not None:
        env[ENV_FILE_VARIABLE] = f"/run/secrets/{ENV_SECRET_FILE}"
        mounts.append(SecretReference(secrets.bot_env.id, secrets.bot_env.name,
                                      filename=ENV_SECRET_FILE, **owner))
    labels = {LABEL_MODEL: ref.model_id, LABEL_CONFIG: digest, LABEL_PORTS: str(base),
              LABEL_RELEASE: ref.release_id, LABEL_LOCATION: ref.location,
              LABEL_BOT_DIR: ref.bot_dir}
    return dict(
        image=image.run, name=settings.service, labels=labels,
        command=["python", "-c", PORT_CODE + LAUNCHER, "module", "rasa"],
        args=["run", "--enable-api", "--endpoints", f"{IN_IMAGE}/endpoints.yml",
              "--credentials", f"{IN_IMAGE}/credentials.yml", "--interface", interface,
              "--model", f"{IN_IMAGE}/model.tar.gz"],
        env=[f"{name}={value}" for name, value in env.items()],
        container_labels={LABEL_RELEASE: ref.release_id, LABEL_PORTS: str(base)},
        networks=["host"], mode={"Replicated": {"Replicas": settings.replicas}},
        # [] not None: docker-py keeps the current spec's constraints for a None.
        constraints=[f"node.id=={image.node}"] if image.node else [],
        secrets=mounts,
        stop_grace_period=int(settings.drain_timeout * SECOND),
        # A replica busy with chat answers late: only 5 failed checks in a row
        # (about 20 s) make it unhealthy, which Swarm replaces.
        healthcheck=Healthcheck(
            test=["CMD", "python", "-c", HEALTH_CODE], interval=2 * SECOND,
            timeout=10 * SECOND, retries=5, start_period=int(settings.load_timeout * SECOND)),
        update_config=UpdateConfig(
            parallelism=1, order="start-first", failure_action="rollback",
            monitor=int(settings.monitor * SECOND), max_failure_ratio=0.0),
        rollback_config=RollbackConfig(parallelism=1, order="start-first",
                                       failure_action="pause"),
    )


def _owner(client: Any, image: str) -> dict[str, Any]:
    owner = image_user(client, image)
    if owner is None:  # a user name: readable by every user of the task
        return {"uid": "0", "gid": "0", "mode": 0o444}
    return {"uid": str(owner[0]), "gid": str(owner[1]), "mode": 0o400}


def fleet_secrets(client: Any, settings: FleetSettings, token: Secret, config: ServerConfig,
                  state_dir: Path) -> FleetSecrets:
    """The token, and the bot's ${VAR} values as JSON (what the launcher puts in
    Rasa's environment before it reads endpoints.yml and credentials.yml)."""
    values = {name: os.environ[name] for name in sorted(config.env_names)
              if name in os.environ}
    scrub = Redactor([token.reveal(), *values.values()])
    salt = local_token(state_dir / "token-secret-salt").reveal()
    made = swarm_secret(client, settings.service, "token", token.reveal(), salt, scrub)
    bot_env = (swarm_secret(client, settings.service, "env", json.dumps(values), salt, scrub)
               if values else None)
    return FleetSecrets(made, bot_env)


def swarm_secret(client: Any, service: str, kind: str, data: str, salt: str,
                 scrub: Redactor) -> Any:
    """A Swarm secret holding `data`, named by a salted hash of it: a secret can't
    change, so new data is a new secret, and the salt (kept 0600 by the agent)
    makes the name useless for guessing the data offline."""
    import docker.errors

    name = f"rasa-gitops-fleet-{kind}-" + hashlib.sha256(
        f"{salt}{service}\0{data}".encode()).hexdigest()[:20]
    found = client.secrets.list(filters={"name": name})
    if found:
        return found[0]
    try:
        return client.secrets.create(name=name, data=data.encode(), labels={
            SECRET_ROLE: f"rasa-{kind}", SECRET_SERVICE: service})
    except docker.errors.APIError as exc:
        raise DeployError(f"cannot store the Rasa {kind} as a Swarm secret: "
                          f"{scrub(explain(exc))}") from None


def prune_secrets(client: Any, service: Any, log: LogSink) -> None:
    """The service's secrets that neither its spec nor its previous one mounts
    (the previous spec is what `docker service rollback` goes back to). Secrets
    of a failed update stay until a later release succeeds."""
    import docker.errors

    name = service.attrs["Spec"]["Name"]
    mounted = {str(ref.get("SecretID"))
               for spec in (service.attrs.get("Spec"), service.attrs.get("PreviousSpec"))
               for ref in ((spec or {}).get("TaskTemplate", {}).get("ContainerSpec", {})
                           .get("Secrets") or [])}
    for secret in client.secrets.list(filters={"label": f"{SECRET_SERVICE}={name}"}):
        if secret.id in mounted:
            continue
        try:
            secret.remove()
            log(f"removed the unused Swarm secret {secret.name}")
        except docker.errors.APIError:
            pass  # Swarm still holds it for a service: the next release tries again
