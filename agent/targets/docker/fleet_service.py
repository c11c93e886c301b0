"""The Swarm service spec of a Rasa fleet (agent/targets/docker/rasa_fleet.py), and
what its tasks say about an update."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.secrets import Secret
from agent.targets.base import DeployError, ModelRef
from agent.targets.docker.rasa_images import IN_IMAGE, explain
from agent.targets.docker.rasa_slots import image_user
from agent.targets.rasa_api import local_token
from agent.targets.rasa_config import ServerConfig
from agent.targets.rasa_launch import LAUNCHER, TOKEN_FILE_VARIABLE
from agent.targets.rasa_slots import server_env

SECOND = 1_000_000_000
SERVICE = "rasa-gitops-rasa-fleet"
LABEL_MODEL = "io.rasa-gitops.model-id"
LABEL_CONFIG = "io.rasa-gitops.config-hash"
LABEL_PORTS = "io.rasa-gitops.port-base"
LABEL_RELEASE = "io.rasa-gitops.release"
LABEL_LOCATION = "io.rasa-gitops.model-file"
LABEL_BOT_DIR = "io.rasa-gitops.bot-dir"
TOKEN_SECRET_FILE = "rasa-gitops-token"  # under /run/secrets in every task
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

    @property
    def service(self) -> str:
        return f"{SERVICE}-{self.place}" if self.place else SERVICE

    def ports(self, base: int) -> list[int]:
        return [base + i for i in range(self.replicas)]


def service_spec(client: Any, settings: FleetSettings, image: str, ref: ModelRef,
                 config: ServerConfig, digest: str, base: int, secret: Any,
                 node: str) -> dict[str, Any]:
    """docker-py's `services.create`/`update` arguments for the release, its
    replicas placed on `node` (the engine's own, where the image was built)."""
    from docker.types import Healthcheck, RollbackConfig, SecretReference, UpdateConfig

    token_path = f"/run/secrets/{TOKEN_SECRET_FILE}"
    env = {**server_env(config, os.environ), TOKEN_FILE_VARIABLE: token_path,
           "RASA_GITOPS_PORT_BASE": str(base), "RASA_GITOPS_TASK_SLOT": "{{.Task.Slot}}",
           "RASA_GITOPS_MODEL_ID": ref.model_id}
    labels = {LABEL_MODEL: ref.model_id, LABEL_CONFIG: digest, LABEL_PORTS: str(base),
              LABEL_RELEASE: ref.release_id, LABEL_LOCATION: ref.location,
              LABEL_BOT_DIR: ref.bot_dir}
    # A replica reached from another host listens on every interface.
    interface = "127.0.0.1" if settings.public_host in ("127.0.0.1", "localhost") else "0.0.0.0"
    return dict(
        image=image, name=settings.service, labels=labels,
        command=["python", "-c", PORT_CODE + LAUNCHER, "module", "rasa"],
        args=["run", "--enable-api", "--endpoints", f"{IN_IMAGE}/endpoints.yml",
              "--credentials", f"{IN_IMAGE}/credentials.yml", "--interface", interface,
              "--model", f"{IN_IMAGE}/model.tar.gz"],
        env=[f"{name}={value}" for name, value in env.items()],
        container_labels={LABEL_RELEASE: ref.release_id, LABEL_PORTS: str(base)},
        networks=["host"], mode={"Replicated": {"Replicas": settings.replicas}},
        constraints=[f"node.id=={node}"] if node else None,
        secrets=[SecretReference(secret.id, secret.name, filename=TOKEN_SECRET_FILE,
                                 **_owner(client, image))],
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


def token_secret(client: Any, token: Secret, state_dir: Path) -> Any:
    """The token as a Swarm secret named by a salted hash of it (a secret can't
    change, so a new token is a new secret; the salt, kept 0600 in `state_dir`,
    makes the name useless for guessing the token offline)."""
    import docker.errors

    salt = local_token(state_dir / "token-secret-salt").reveal()
    name = "rasa-gitops-fleet-token-" + hashlib.sha256(
        (salt + token.reveal()).encode()).hexdigest()[:16]
    found = client.secrets.list(filters={"name": name})
    if found:
        return found[0]
    try:
        return client.secrets.create(name=name, data=token.reveal().encode(),
                                     labels={"io.rasa-gitops.role": "rasa-token"})
    except docker.errors.APIError as exc:
        raise DeployError(f"cannot store the Rasa token as a Swarm secret: "
                          f"{explain(exc, token)}") from None


def healthy_count(client: Any, service: str, release_id: str) -> int:
    found = client.containers.list(filters={"label": [
        f"com.docker.swarm.service.name={service}", f"{LABEL_RELEASE}={release_id}"]})
    return sum(1 for c in found
               if (c.attrs.get("State", {}).get("Health") or {}).get("Status") == "healthy")


def task_error(service: Any, release_id: str = "") -> str:
    """The newest failed task's error (of the release, when named); else what the
    release's tasks are doing."""
    if service is None:
        return "no service"
    tasks = sorted(service.tasks(), key=lambda t: str(t.get("UpdatedAt", "")), reverse=True)
    seen = []
    for task in tasks:
        status = task.get("Status", {})
        labels = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels") or {}
        if release_id and labels.get(LABEL_RELEASE) != release_id:
            continue
        if status.get("Err") or status.get("State") in ("failed", "rejected"):
            return f"task {status.get('State')}: {status.get('Err') or status.get('Message')}"
        seen.append(f"slot {task.get('Slot')}: {status.get('State')} ({status.get('Message')})")
    return "no failed task" + (f"; {', '.join(seen[:4])}" if seen else "")


def missing_image(task_error: str) -> bool:
    text = task_error.lower()
    return "no such image" in text or ("image" in text and "not found" in text)
