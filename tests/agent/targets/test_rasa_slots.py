"""Where blue/green runs its Rasa servers, as the config builds it, and the slot
records those servers leave (no engine, no Rasa needed)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.secrets import Secret
from agent.targets.base import ModelRef
from agent.targets.docker.rasa_slots import ContainerSlotRunner
from agent.targets.docker.ssh import SshEngineFactory
from agent.targets.factory import build_targets
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from agent.targets.rasa_config import ServerConfig
from agent.targets.rasa_slots import ProcessSlotRunner, SlotServer


def config_file(tmp_path: Path, action_server: str, model: str) -> Path:
    path = tmp_path / "agent.yml"
    path.write_text(f"repo: bot.git\nwork_dir: {tmp_path / 'work'}\naction_server:\n"
                    f"{action_server}model:\n  serving: blue_green\n  url: http://127.0.0.1:6005\n"
                    f"{model}image:\n  repository: registry.example.com/bot\n",
                    encoding="utf-8")
    return path


def blue_green(tmp_path: Path, action_server: str, model: str = "") -> BlueGreenRasaTarget:
    target = build_targets(load_config(config_file(tmp_path, action_server, model))).model
    assert isinstance(target, BlueGreenRasaTarget)
    return target


def test_model_runtime_picks_processes_or_containers_on_the_action_servers_docker_host(
        tmp_path: Path) -> None:
    assert isinstance(blue_green(tmp_path, "  target: docker\n").runner, ProcessSlotRunner)

    local = blue_green(tmp_path, "  target: docker\n", "  runtime: docker\n").runner
    assert isinstance(local, ContainerSlotRunner)
    assert local.settings.image == "rasa/rasa:3.6.21-full"
    assert local.settings.ports == (6006, 6007)  # model.url's port + 1 and + 2
    assert local.settings.public_host == "127.0.0.1"
    assert local.tracker_db() == tmp_path / "work" / "rasa-blue-green" / "tracker" / "tracker.db"

    remote = blue_green(tmp_path, "  target: docker_ssh\n  ssh_host: rasa.internal\n",
                        "  runtime: docker\n  rasa_image: registry.example.com/rasa:3.6.21\n"
                        "  slot_ports: [7001, 7002]\n").runner
    assert isinstance(remote, ContainerSlotRunner)
    assert isinstance(remote._engine, SshEngineFactory)
    assert remote._engine.settings.host == "rasa.internal"
    assert (remote.settings.public_host, remote.settings.ports) == ("rasa.internal",
                                                                    (7001, 7002))
    assert remote.settings.image == "registry.example.com/rasa:3.6.21"


@pytest.mark.parametrize(("action_server", "model", "message"), [
    ("  target: swarm\n", "  runtime: docker\n",
     "model.runtime: docker: blue_green Rasa containers run on a Docker host (action_server."
     "target docker or docker_ssh), not 'swarm'; Swarm is not supported for them yet"),
    ("  target: local\n", "  runtime: docker\n", "not 'local'"),
    ("  target: docker\n", "  runtime: docker\n  slot_ports: [6005, 6006]\n",
     "model.slot_ports: must be two different TCP ports, neither of them model.url's port"),
    ("  target: docker\n", "  runtime: docker\n  slot_ports: [7001]\n", "model.slot_ports"),
    ("  target: docker\n", "  runtime: docker\n  slot_ports: [7001, 7001]\n",
     "model.slot_ports"),
    ("  target: docker\n", "  runtime: kubernetes\n",
     "'kubernetes' is not one of: process, docker"),
])
def test_a_docker_runtime_it_cannot_serve_is_refused_naming_the_key(
        tmp_path: Path, action_server: str, model: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        blue_green(tmp_path, action_server, model)
    assert message in str(caught.value)


def test_slot_records_of_session_4_still_load_as_a_local_process() -> None:
    old = {"slot": "green", "pid": 4242, "port": 40123, "release_id": "7", "model_id": "m7",
           "location": "/work/models/7.tar.gz", "bot_dir": "", "config_hash": "abc",
           "started": 99}
    server = SlotServer.from_json(json.dumps(old))
    assert server.handle == {"pid": "4242", "started": "99"}
    assert (server.host, server.port, server.slot) == ("127.0.0.1", 40123, "green")
    assert SlotServer.from_json(server.to_json()) == server
    container = SlotServer("blue", "rasa.internal", 7001, "8", "m8", "/m.tar.gz", "", "def",
                           {"container": "0123abcd", "image": "rasa-gitops-rasa:8"})
    assert SlotServer.from_json(container.to_json()) == container
    # A container record is no process of this host: never signalled as one.
    assert not ProcessSlotRunner(["rasa"], Path("/nonexistent")).alive(container)


def test_a_new_server_in_a_slot_keeps_the_last_ones_log_as_previous(tmp_path: Path) -> None:
    """After a crash the next server (the new standby) starts in the dead one's
    slot: the dead one's log, which says why it died, must survive that start."""
    fake_rasa = tmp_path / "rasa"
    fake_rasa.write_text(f"#!{sys.executable}\nimport sys, time\n"
                         "print('serving', sys.argv[sys.argv.index('--model') + 1], flush=True)\n"
                         "time.sleep(60)\n",
                         encoding="utf-8")
    fake_rasa.chmod(0o755)
    runner = ProcessSlotRunner([str(fake_rasa)], tmp_path / "state")
    config = ServerConfig(tmp_path / "endpoints.yml", tmp_path / "credentials.yml",
                          frozenset(), "in-memory", "in-memory")
    said: list[str] = []
    log = tmp_path / "state" / "rasa-blue.log"
    servers = []
    try:
        for release in ("1", "2"):
            started = runner.start(ModelRef(release, f"m{release}", f"/models/{release}.tar.gz"),
                                   "blue", config, Secret("tok", "test"), said.append)
            servers.append(SlotServer("blue", started.host, started.port, release, f"m{release}",
                                      f"/models/{release}.tar.gz", "", "h", started.handle))
            deadline = time.monotonic() + 20
            while "serving" not in (log.read_text() if log.exists() else ""):
                assert time.monotonic() < deadline, "the fake server never wrote its log"
                time.sleep(0.05)
    finally:
        for server in servers:
            runner.stop("blue", server, said.append)
    assert "/models/2.tar.gz" in log.read_text()
    previous = log.with_name("rasa-blue.log.previous").read_text()
    assert "/models/1.tar.gz" in previous and "/models/2.tar.gz" not in previous
