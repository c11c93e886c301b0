"""The Docker targets as the agent's config builds them (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.image.push import classify
from agent.targets.docker.host import DockerHostTarget
from agent.targets.docker.swarm import SwarmTarget
from agent.targets.factory import ACTION_SERVER_TARGETS


def config_file(tmp_path: Path, action_server: str) -> Path:
    path = tmp_path / "agent.yml"
    path.write_text("repo: bot.git\nwork_dir: work\naction_server:\n" + action_server
                    + "image:\n  repository: registry.example.com/bot\n"
                    "  registry_user: deployer\n  registry_password_env: TEST_REGISTRY_PW\n")
    return path


def test_docker_ssh_target_from_config_keeps_secrets_out_of_its_repr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_REGISTRY_PW", "registry-secret")
    monkeypatch.setenv("TEST_KEY_PASSPHRASE", "key-secret")
    config = load_config(config_file(tmp_path, (
        "  target: docker_ssh\n  port: 6055\n  ssh_host: actions.internal\n"
        "  ssh_key_passphrase_env: TEST_KEY_PASSPHRASE\n  instance: coffee\n")))
    assert not config.warnings
    target = ACTION_SERVER_TARGETS["docker_ssh"](config)
    assert isinstance(target, DockerHostTarget)
    assert target.url == "http://actions.internal:6055/webhook"
    assert target.settings.backend_ports == (6056, 6057)
    assert target.prefix == "rasa-actions-coffee"
    shown = repr(vars(target)) + repr(getattr(target._engine, "settings", ""))
    assert "key-secret" not in shown and "registry-secret" not in shown


def test_swarm_target_and_bad_backend_ports(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_REGISTRY_PW", "registry-secret")
    config = load_config(config_file(tmp_path, "  target: swarm\n  replicas: 2\n"))
    target = ACTION_SERVER_TARGETS["swarm"](config)
    assert isinstance(target, SwarmTarget) and target.settings.replicas == 2
    bad = load_config(config_file(tmp_path, "  target: docker\n  backend_ports: [5055, 5056]\n"))
    with pytest.raises(ConfigError) as caught:
        ACTION_SERVER_TARGETS["docker"](bad)
    assert "action_server.backend_ports" in str(caught.value)
    assert "neither of them action_server.port" in str(caught.value)


@pytest.mark.parametrize(("message", "kind"), [
    # Real dockerd messages; the ports hold 401, 403 and 502 as digits.
    ('Get "http://127.0.0.1:34013/v2/": dial tcp 127.0.0.1:34013: connect: connection refused',
     "unreachable"),
    ('Head "http://127.0.0.1:45021/v2/bot/blobs/sha256:5024": dial tcp: i/o timeout',
     "unreachable"),
    ("unauthorized: authentication required", "auth"),
    ("received unexpected HTTP status: 401 Unauthorized", "auth"),
    ("received unexpected HTTP status: 502 Bad Gateway", "unreachable"),
    ("received unexpected HTTP status: 500 Internal Server Error", "server"),
    ("write /var/lib/registry/x: no space left on device", "disk"),
])
def test_push_errors_are_classified_by_words_not_by_digits_in_addresses(
        message: str, kind: str) -> None:
    assert classify(message) == kind
