"""The Rasa server as a Swarm service (model.serving: swarm): what is refused.

Real dockerd as a single-node Swarm and real HAProxy. The 2-replica rolling
update under chat, with the action-subset invariant and Swarm's own rollback,
is tests/agent/targets/test_rasa_fleet_pipeline.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.secrets import Secret
from agent.targets.base import DeployError, ModelRef
from agent.targets.docker import rasa_fleet
from agent.targets.docker.engine import local_engine
from agent.targets.docker.fleet_service import FleetSettings
from agent.targets.docker.rasa_fleet import SwarmRasaTarget
from tests.support.services import DockerEngine, RedisServer, free_port

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


@pytest.fixture()
def fleet(tmp_path: Path, swarm: Any, docker_engine: DockerEngine, rasa_image: str,
          redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[SwarmRasaTarget]:
    monkeypatch.setenv("BOT_REDIS_PORT", str(redis_server.port))
    first, second = free_port(), free_port()
    while abs(first - second) < 2:
        second = free_port()
    target = SwarmRasaTarget(
        url=f"http://127.0.0.1:{free_port()}", token=Secret(TOKEN, "test"),
        state_dir=tmp_path / "fleet", action_endpoint="http://127.0.0.1:9/webhook",
        engine=local_engine(docker_engine.base_url),
        settings=FleetSettings(image=rasa_image, replicas=1, port_bases=(first, second),
                               public_host="127.0.0.1", load_timeout=90, monitor=2,
                               drain_timeout=10))
    try:
        yield target
    finally:
        target.stop_all(lambda line: None)


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
