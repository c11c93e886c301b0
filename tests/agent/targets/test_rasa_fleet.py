"""The Rasa server as a Swarm service (model.serving: swarm): the image from a
registry every node pulls from, the bot's ${VAR}s as a Swarm secret, and what
is refused.

Real dockerd as a single-node Swarm, a real docker-registry with auth, real
redis-server and real HAProxy. The 2-replica rolling update under chat, with
the action-subset invariant and Swarm's own rollback, is
tests/agent/targets/test_rasa_fleet_pipeline.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from agent.image.push import Credentials
from agent.secrets import Secret
from agent.targets.base import ALIVE, DeployError, Health, ModelRef
from agent.targets.docker import rasa_fleet
from agent.targets.docker.engine import local_engine
from agent.targets.docker.fleet_image import PlacedImage, place_image
from agent.targets.docker.fleet_service import FleetSettings
from agent.targets.docker.rasa_fleet import SwarmRasaTarget
from tests.support.light_models import GREETINGS, light_coffeebots
from tests.support.services import (
    DockerEngine,
    RedisServer,
    Registry,
    free_port,
    probed_ports,
)

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(1500)]

TOKEN = "fleet-token-5b1e0c7a"
SHARED_STORES = """\
tracker_store:
  type: redis
  url: 127.0.0.1
  port: ${BOT_REDIS_PORT}
  db: 6
lock_store:
  type: redis
  url: 127.0.0.1
  port: ${BOT_REDIS_PORT}
  db: 7
"""


def checkout(root: Path, name: str, endpoints: str) -> Path:
    """A release's worktree as far as the server's config goes: its endpoints.yml."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "endpoints.yml").write_text(endpoints, encoding="utf-8")
    return folder


def make_fleet(tmp_path: Path, docker_engine: DockerEngine, rasa_image: str,
               registry: Registry | None = None) -> SwarmRasaTarget:
    # Below the ephemeral range (tests/support/services.py: probed_ports).
    first, second = probed_ports(1), probed_ports(1)
    while first == second:
        second = probed_ports(1)
    return SwarmRasaTarget(
        url=f"http://127.0.0.1:{free_port()}", token=Secret(TOKEN, "test"),
        state_dir=tmp_path / "fleet", action_endpoint="http://127.0.0.1:9/webhook",
        engine=local_engine(docker_engine.base_url),
        registry_auth=(Credentials(str(registry.username), str(registry.password))
                       if registry else None),
        settings=FleetSettings(image=rasa_image, replicas=1, port_bases=(first, second),
                               public_host="127.0.0.1", load_timeout=90, monitor=2,
                               drain_timeout=10, repository=(
                                   f"{registry.address}/bot-rasa" if registry else "")))


@pytest.fixture()
def fleet(tmp_path: Path, swarm: Any, docker_engine: DockerEngine, rasa_image: str,
          redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[SwarmRasaTarget]:
    monkeypatch.setenv("BOT_REDIS_PORT", str(redis_server.port))
    target = make_fleet(tmp_path, docker_engine, rasa_image)
    try:
        yield target
    finally:
        target.stop_all(lambda line: None)


def with_registry(target: SwarmRasaTarget, registry: Registry) -> SwarmRasaTarget:
    """The same fleet once its config names model.rasa_repository (the agent restarted)."""
    assert registry.username and registry.password
    return SwarmRasaTarget(
        url=target.url, token=Secret(TOKEN, "test"), state_dir=target.state_dir,
        action_endpoint=target.action_endpoint, engine=target._engine,
        registry_auth=Credentials(registry.username, registry.password),
        settings=replace(target.settings, repository=f"{registry.address}/bot-rasa"))


def test_with_a_repository_every_node_pulls_the_image_and_a_node_that_cant_is_named(
        tmp_path: Path, swarm: Any, docker_engine: DockerEngine, rasa_image: str,
        redis_server: RedisServer, auth_registry: Registry, rasa_bin: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Release 1 runs pinned to the engine's node. Then the config names
    model.rasa_repository: release 2's image goes to a registry with auth, and
    the service runs it by digest with no placement constraint left. The
    engine keeps no reference to it by that name, so this node pulls it back
    like any other node would, with the credentials the update carries (the
    registry refuses anonymous pulls). The bot's ${VAR} (the Redis port of its
    stores) is not in what `docker service inspect` shows, yet the replicas
    reach Redis. Then a release whose image is not in the registry: Swarm
    rejects its task, rolls back by itself, and the agent names the node."""
    assert auth_registry.password
    monkeypatch.setenv("BOT_REDIS_PORT", str(redis_server.port))
    pinned = make_fleet(tmp_path, docker_engine, rasa_image)
    bots = light_coffeebots(str(rasa_bin))
    release = checkout(tmp_path, "release", SHARED_STORES.replace("db: 6", "db: 10"))
    lines: list[str] = []
    unnamed_after_push: list[str] = []

    def place_and_check(client: Any, built: str, **kwargs: Any) -> PlacedImage:
        placed = place_image(client, built, **kwargs)
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(placed.run)
        unnamed_after_push.append(placed.run)
        return placed

    try:
        assert "db10:" not in redis_server.command("INFO", "keyspace")
        one = pinned.upload("1", bots["one"][1], lines.append, release)
        pinned.activate(one, lines.append)
        assert pinned.talk("pinned", "hello") == [GREETINGS["one"]]
        assert "db10:keys=" in redis_server.command("INFO", "keyspace")
        task = swarm.services.get(pinned.settings.service).attrs["Spec"]["TaskTemplate"]
        assert task["Placement"]["Constraints"] == [f"node.id=={swarm.info()['Swarm']['NodeID']}"]

        target = with_registry(pinned, auth_registry)
        monkeypatch.setattr(rasa_fleet, "place_image", place_and_check)
        two = target.upload("2", bots["two"][1], lines.append, release)
        target.activate(two, lines.append)
        assert target.live_model_id() == two.model_id
        assert target.talk("pulled", "hello") == [GREETINGS["two"]]
        replicas = [h for h in target.health() if h.part == "rasa replicas"]
        assert replicas == [Health("rasa replicas", ALIVE, "1 pass HAProxy's check (1 wanted)")]

        inspected = swarm.services.get(target.settings.service).attrs  # docker service inspect
        task = inspected["Spec"]["TaskTemplate"]
        image = task["ContainerSpec"]["Image"]
        assert image.startswith(f"{auth_registry.address}/bot-rasa@sha256:"), image
        assert not (task.get("Placement") or {}).get("Constraints")  # any node now
        shown = json.dumps(inspected)
        assert "BOT_REDIS_PORT" not in shown and TOKEN not in shown
        assert {s["SecretName"].rsplit("-", 2)[1] for s in
                task["ContainerSpec"]["Secrets"]} == {"token", "env"}
        # The agent left no reference by the registry's name on the engine
        # (checked right after the push), so this node pulled it back.
        assert image in swarm.images.get(image).attrs["RepoDigests"]
        assert unnamed_after_push == [image]
        assert any(f"pushed {auth_registry.address}/bot-rasa:" in line for line in lines)
        assert auth_registry.password not in "\n".join(lines)

        def missing(client: Any, built: str, **kwargs: Any) -> PlacedImage:
            return PlacedImage(f"{auth_registry.address}/bot-rasa@sha256:{'0' * 64}", built, "")

        monkeypatch.setattr(rasa_fleet, "place_image", missing)
        three = ModelRef("3", "model-three", one.location, one.bot_dir)
        with pytest.raises(DeployError, match=r"a Swarm node has no image for release 3 "
                                              r"\(task rejected on node [\w.-]+: No such image"
                                              r".*rolled the update back") as failed:
            target.activate(three, lines.append)
        assert auth_registry.password not in str(failed.value)
        assert target.live_model_id() == two.model_id  # release 2 never stopped
        assert target.talk("after-rollback", "hello") == [GREETINGS["two"]]
    finally:
        pinned.stop_all(lambda line: None)


def test_a_node_without_the_release_image_is_named(
        fleet: SwarmRasaTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node the replicas are placed on lacks the release's image (removed
    between build and update), played by an image name that node never had
    (so no model is read: the build is skipped)."""
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"not read")
    ref = ModelRef("1", "m", str(model), str(checkout(tmp_path, "release", SHARED_STORES)))
    monkeypatch.setattr(rasa_fleet, "build_release_image",
                        lambda *args, **kwargs: "rasa-gitops-rasa:not-on-this-node")
    with pytest.raises(DeployError, match=r"Swarm node \w+ has no image rasa-gitops-rasa:"
                                          r"not-on-this-node for release 1"):
        fleet.activate(ref, lambda line: None)
    with pytest.raises(DeployError):
        fleet.live_model_id()  # nothing serves: no service was left behind


def test_a_fleet_without_shared_stores_is_refused_before_anything_starts(
        tmp_path: Path) -> None:
    target = SwarmRasaTarget(
        url="http://127.0.0.1:1", token=Secret(TOKEN, "test"), state_dir=tmp_path / "fleet",
        action_endpoint="http://127.0.0.1:9/webhook",
        engine=lambda: pytest.fail("no engine may be reached"),  # type: ignore[arg-type]
        settings=FleetSettings(image="unused", replicas=2, port_bases=(1000, 1010),
                               public_host="127.0.0.1", load_timeout=10))
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"not read")
    sqlite = checkout(tmp_path, "sqlite", "action_endpoint:\n  url: http://x/webhook\n")
    with pytest.raises(DeployError, match=r"sqlite/endpoints.yml: the tracker store is sql "
                                          r"\(sqlite, agent default\).*shared"):
        target.activate(ModelRef("1", "m", str(model), str(sqlite)), lambda line: None)
    no_locks = checkout(tmp_path, "no-locks", SHARED_STORES.split("lock_store:")[0])
    with pytest.raises(DeployError, match=r"no-locks/endpoints.yml: the lock store is "
                                          r"in-memory.*lock_store: type: redis"):
        target.activate(ModelRef("1", "m", str(model), str(no_locks)), lambda line: None)
    assert not target.proxy.pid_file.exists()  # not even the proxy started
