"""A blue/green slot's Rasa server as a container of the release on a Docker host.

The same design as the action servers (agent/targets/docker/host.py): each
release gets an image, `rasa-gitops-rasa:<release>`, made on the engine from
`model.rasa_image` plus the release's model file and its rendered
endpoints.yml/credentials.yml (agent/targets/docker/rasa_images.py), so what
serves is exactly what the release holds, also on a remote engine. Its container,
`rasa-gitops-rasa-<slot>`, runs with host networking on the slot's fixed port
(`model.slot_ports`), where HAProxy on the agent's host reaches it
(`model.public_host`).

The agent's default tracker store (SQLite, for a bot that configures none) lives
on one named volume mounted in both slots' containers, so a conversation keeps
its tracker through every switch. The volume is mounted at the path
`tracker_db()` names on the agent's host, below the agent's state dir: the
rendered endpoints.yml names that path, and rasa_config creates its folder on
the agent's host, where it then stays empty.

A loading container gets a low CPU weight (`cpu_shares`), as a loading
process gets nice 10, and neither restarts: an exit while loading is final and
reported with its log. Once warmed it gets the default weight and restarts
with the engine (`unless-stopped`).

The auth token is on no command line and in no environment `docker inspect`
shows: the container is created, the token copied into it as a file readable
by the image's user only (`put_archive`), then started; its entrypoint is
`python -m rasa` behind agent/targets/rasa_launch.py's launcher, which reads
the file and appends `--auth-token` inside the process. So `model.rasa_image`
needs `python` with Rasa on its PATH, as rasa/rasa has (its entrypoint `rasa`
is not used).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.secrets import Secret
from agent.targets.base import DeployError, LogSink, ModelRef
from agent.targets.docker.engine import EngineFactory
from agent.targets.docker.probe import PORT_IN_USE
from agent.targets.docker.rasa_images import (
    IN_IMAGE,
    LABEL_RELEASE,
    LABEL_ROLE,
    ROLE,
    build_release_image,
    explain,
    prune_release_images,
)
from agent.targets.rasa_config import ServerConfig
from agent.targets.rasa_launch import TOKEN_FILE_VARIABLE, container_entrypoint
from agent.targets.rasa_slots import SlotServer, Started, server_env

CONTAINER_PREFIX = "rasa-gitops-rasa"
TRACKER_VOLUME = "rasa-gitops-tracker"
LABEL_SLOT = "io.rasa-gitops.slot"
LABEL_PLACE = "io.rasa-gitops.place"  # "" (or absent, before places) for the first
# Docker's default CPU weight is 1024; a loading server gets about what nice 10
# gives a process beside one at nice 0 (110 : 1024).
LOADING_CPU_SHARES = 110
DEFAULT_CPU_SHARES = 1024
STOP_TIMEOUT = 20


@dataclass(frozen=True)
class ContainerSettings:
    image: str  # model.rasa_image, e.g. rasa/rasa:3.6.21-full
    ports: tuple[int, int]  # the blue and the green slot's port on the Docker host
    public_host: str  # where HAProxy and the agent reach those ports
    tracker_dir: Path  # where the tracker volume is mounted in the containers
    # Another environment's containers on the same engine are not this one's:
    # its name goes into theirs, their label and their tracker volume's name.
    place: str = ""

    def container(self, slot: str) -> str:
        return f"{CONTAINER_PREFIX}-{self.place}-{slot}" if self.place \
            else f"{CONTAINER_PREFIX}-{slot}"

    @property
    def tracker_volume(self) -> str:
        return f"{TRACKER_VOLUME}-{self.place}" if self.place else TRACKER_VOLUME


class ContainerSlotRunner:
    """SlotRunner for a Docker engine (local, or remote over SSH)."""

    def __init__(self, engine: EngineFactory, settings: ContainerSettings) -> None:
        self._engine = engine
        self.settings = settings

    def tracker_db(self) -> Path:
        return self.settings.tracker_dir / "tracker.db"

    @contextlib.contextmanager
    def _client(self) -> Iterator[Any]:
        """A connected client; the engine failing mid-way is a DeployError too."""
        import docker.errors
        import requests

        client = self._engine()
        try:
            yield client
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise DeployError(f"the Docker engine failed: {explain(exc)}") from None
        finally:
            client.close()

    # ------------------------------------------------------------ start

    def start(self, ref: ModelRef, slot: str, config: ServerConfig, token: Secret,
              log: LogSink) -> Started:
        import docker.errors

        port = self.settings.ports[0 if slot == "blue" else 1]
        name = self.settings.container(slot)
        address = _address(self.settings.public_host)
        with self._client() as client:
            image = build_release_image(client, self.settings.image, ref, config, log)
            self._ensure_tracker_volume(client, image)
            self._remove_slot(client, slot)
            prune_release_images(client, image, log)
            # A server reached from another host listens on every interface;
            # one only HAProxy on this host reaches stays on loopback.
            interface = ("127.0.0.1" if self.settings.public_host in ("127.0.0.1", "localhost")
                         else "0.0.0.0")
            # No token here: `docker inspect` and the host's `ps` show a command.
            command = ["run", "--enable-api",
                       "--endpoints", f"{IN_IMAGE}/endpoints.yml",
                       "--credentials", f"{IN_IMAGE}/credentials.yml",
                       "--port", str(port), "--interface", interface,
                       "--model", f"{IN_IMAGE}/model.tar.gz"]
            log(f"starting {name} from {image} for release {ref.release_id} (port {port} on "
                f"{self.settings.public_host}; tracker store: {config.tracker_store}, lock "
                f"store: {config.lock_store})")
            try:
                container = client.containers.create(
                    image, entrypoint=container_entrypoint(), command=command, name=name,
                    network_mode="host",
                    labels={LABEL_ROLE: ROLE, LABEL_SLOT: slot, LABEL_RELEASE: ref.release_id,
                            LABEL_PLACE: self.settings.place},
                    environment={**server_env(config, os.environ),
                                 TOKEN_FILE_VARIABLE: TOKEN_PATH},
                    volumes={self.settings.tracker_volume: {
                        "bind": str(self.settings.tracker_dir), "mode": "rw"}},
                    cpu_shares=LOADING_CPU_SHARES)
                # In the container's own layer: a restart (unless-stopped, a
                # dockerd restart) finds it again.
                container.put_archive(os.path.dirname(TOKEN_PATH),
                                      token_archive(token.reveal(), image_user(client, image)))
                container.start()
            except docker.errors.DockerException as exc:
                raise DeployError(f"cannot start {name}: {explain(exc, token)}") from None
        return Started(address, port,
                       {"container": str(container.id), "name": name, "image": image})

    def _ensure_tracker_volume(self, client: Any, image: str) -> None:
        """The shared volume, writable by the image's user (rasa/rasa runs as uid
        1001; a fresh volume belongs to root)."""
        import docker.errors

        volume = self.settings.tracker_volume
        try:
            client.volumes.get(volume)
            return
        except docker.errors.NotFound:
            pass
        mount = "/tracker"
        try:
            client.volumes.create(volume, labels={LABEL_ROLE: "rasa-tracker"})
            client.containers.run(image, entrypoint=["chmod", "1777", mount], user="root",
                                  volumes={volume: {"bind": mount, "mode": "rw"}},
                                  network_mode="none", remove=True)
        except docker.errors.DockerException as exc:
            with contextlib.suppress(docker.errors.DockerException):
                client.volumes.get(volume).remove(force=True)
            raise DeployError(f"cannot prepare the tracker store's volume {volume}: "
                              f"{explain(exc)}") from None

    # ------------------------------------------------------------ watch

    def _container(self, client: Any, server: SlotServer) -> Any | None:
        import docker.errors

        ident = server.handle.get("container")
        if not ident:
            return None  # a record of another runner's (a local process)
        try:
            return client.containers.get(ident)
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise DeployError(f"cannot inspect the Rasa container of slot {server.slot}: "
                              f"{explain(exc)}") from None

    def alive(self, server: SlotServer) -> bool:
        with self._client() as client:
            container = self._container(client, server)
            return container is not None and container.status == "running"

    def log_tail(self, server: SlotServer) -> str:
        with self._client() as client:
            container = self._container(client, server)
            if container is None:
                return "(no container)"
            try:
                text = container.logs(tail=15).decode("utf-8", "replace").rstrip()
            except Exception:  # the container may be gone by now
                return "(no log)"
        if any(word in text.lower() for word in PORT_IN_USE):
            text += (f"\n(port {server.port} is already in use on {self.settings.public_host}: "
                     "free it or change model.slot_ports)")
        return text or "(no log)"

    def restore_priority(self, server: SlotServer, log: LogSink) -> None:
        import docker.errors

        with self._client() as client:
            container = self._container(client, server)
            if container is None:
                return  # gone: the switch's health checks will say so
            try:
                container.update(cpu_shares=DEFAULT_CPU_SHARES,
                                 restart_policy={"Name": "unless-stopped"})
            except docker.errors.DockerException as exc:
                log(f"{container.name} keeps its loading CPU weight ({explain(exc)})")

    # ------------------------------------------------------------ stop

    def stop(self, slot: str, server: SlotServer | None, log: LogSink) -> None:
        # By label, not by record: a crash between `docker run` and the record
        # leaves a container only its labels name.
        with self._client() as client:
            for name in self._remove_slot(client, slot):
                release = f"release {server.release_id}, " if server is not None else ""
                log(f"stopped the Rasa server in slot {slot} ({release}container {name})")

    def _remove_slot(self, client: Any, slot: str) -> list[str]:
        import docker.errors

        found = client.containers.list(all=True, filters={
            "label": [f"{LABEL_ROLE}={ROLE}", f"{LABEL_SLOT}={slot}"]})
        removed = []
        for container in found:
            if (container.labels or {}).get(LABEL_PLACE, "") != self.settings.place:
                continue  # another environment's server
            with contextlib.suppress(docker.errors.NotFound):
                if container.status == "running":
                    container.stop(timeout=STOP_TIMEOUT)
                container.remove(force=True)
                removed.append(str(container.name))
        return removed

def _address(host: str) -> str:
    """The IP address of `host`: HAProxy's runtime API sets a server's address
    only as one (and reports it so, which the target compares with its record)."""
    try:
        return socket.gethostbyname(host)
    except OSError as exc:
        raise DeployError(f"cannot resolve model.public_host {host!r}: {exc}") from None


TOKEN_PATH = "/tmp/.rasa-gitops-auth-token"  # /tmp: in every image, writable


def image_user(client: Any, image: str) -> tuple[int, int] | None:
    """The numeric uid:gid the image runs as (rasa/rasa: 1001), None for a user
    name (the file is then readable by every user of the container)."""
    user = str(client.images.get(image).attrs.get("Config", {}).get("User") or "0")
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return None
    return int(uid), int(gid or 0)


def token_archive(token: str, owner: tuple[int, int] | None) -> bytes:
    """A tar of the token file for `put_archive`: 0400 for the image's user."""
    import io
    import tarfile

    data = (token + "\n").encode()
    member = tarfile.TarInfo(os.path.basename(TOKEN_PATH))
    member.size = len(data)
    member.mode = 0o400 if owner is not None else 0o444
    member.uid, member.gid = owner or (0, 0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()
