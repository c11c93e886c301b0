"""The Docker targets as the agent's config builds them (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.image.push import classify
from agent.retry import Backoff
from agent.targets.base import DeployError
from agent.targets.docker.common import container_environment
from agent.targets.docker.engine import EngineUnreachable, with_engine
from agent.targets.docker.host import DockerHostTarget
from agent.targets.docker.rasa_fleet import SwarmRasaTarget
from agent.targets.docker.ssh import SshSettings
from agent.targets.docker.swarm import SwarmTarget
from agent.targets.factory import ACTION_SERVER_TARGETS, build_targets


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
    # The registry stopped mid-push; the commit sha in the URL holds "401" and "502".
    ('Put "http://127.0.0.1:37195/v2/fault-actions/manifests/'
     '0c7c725095b5b9bf7661d5ab1e55008aa401a304": EOF', "unreachable"),
    ('Put "http://127.0.0.1:37195/v2/bot/manifests/ab502cd": connection reset by peer',
     "unreachable"),
    ("unexpected status code 503.", "unreachable"),
    ("error 502: bad gateway", "unreachable"),
    ("status 401.", "auth"),
    ("unauthorized: authentication required", "auth"),
    ("received unexpected HTTP status: 401 Unauthorized", "auth"),
    ("received unexpected HTTP status: 502 Bad Gateway", "unreachable"),
    ("received unexpected HTTP status: 500 Internal Server Error", "server"),
    ("write /var/lib/registry/x: no space left on device", "disk"),
])
def test_push_errors_are_classified_by_words_not_by_digits_in_addresses(
        message: str, kind: str) -> None:
    assert classify(message) == kind


def test_action_server_env_reaches_the_docker_targets_by_name_and_only_names_are_logged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_REGISTRY_PW", "registry-secret")
    monkeypatch.setenv("BOT_DB_URL", "postgres://bot:db-secret@db/bot")
    monkeypatch.delenv("BOT_UNSET", raising=False)
    env = "  env: [BOT_DB_URL, BOT_UNSET]\n"
    for name in ("docker", "docker_ssh", "swarm"):
        ssh = "  ssh_host: actions.internal\n" if name == "docker_ssh" else ""
        config = load_config(config_file(tmp_path, f"  target: {name}\n{ssh}{env}"))
        target = ACTION_SERVER_TARGETS[name](config)
        assert isinstance(target, (DockerHostTarget, SwarmTarget))
        assert target.settings.env_names == ("BOT_DB_URL", "BOT_UNSET")
    lines: list[str] = []
    passed = container_environment(("BOT_DB_URL", "BOT_UNSET"), "rasa-actions-bot-5056",
                                   lines.append)
    # The agent's other variables (its registry password) never reach the container.
    assert passed == {"BOT_DB_URL": "postgres://bot:db-secret@db/bot"}
    assert lines == ["passing BOT_DB_URL (action_server.env) to rasa-actions-bot-5056",
                     "not set in the agent's environment, so not passed: BOT_UNSET"]
    assert container_environment((), "x", lines.append) == {} and len(lines) == 2


class FakeClient:
    def __init__(self, closed: list[int]) -> None:
        self.closed = closed

    def close(self) -> None:
        self.closed.append(1)


def test_with_engine_retries_a_gone_engine_closes_every_client_and_names_the_attempts(
) -> None:
    """The one retry of the build and push steps and the Docker targets."""
    closed: list[int] = []
    down = [EngineUnreachable("cannot reach the Docker engine at unix:///x")] * 2
    lines: list[str] = []

    def engine() -> FakeClient:
        if down:
            raise down.pop()
        return FakeClient(closed)

    fast = Backoff(first=0.0, cap=0.0)
    assert with_engine(engine, lambda client: "built", what="docker build",
                       log=lines.append, backoff=fast) == "built"
    assert closed == [1] and [line.split(":")[0] for line in lines] == ["docker build"] * 2

    def cut(client: FakeClient) -> str:
        raise ConnectionError("dial-stdio closed")

    with pytest.raises(DeployError) as caught:
        with_engine(engine, cut, what="deploy to docker_ssh", log=lines.append, backoff=fast)
    assert str(caught.value) == ("the connection to the Docker engine broke: ConnectionError: "
                                 "dial-stdio closed (gave up after 4 attempt(s))")
    assert len(closed) == 5  # each attempt's client closed, the failed ones too

    def refused(client: FakeClient) -> str:
        raise DeployError("port 5056 is already in use")

    with pytest.raises(DeployError) as caught:
        with_engine(engine, refused, what="deploy", log=lines.append, backoff=fast)
    assert str(caught.value) == "port 5056 is already in use"
    assert len(closed) == 6  # not retried: another failure is the caller's


def test_an_ssh_error_message_never_shows_the_key_passphrase() -> None:
    settings = SshSettings(host="actions.internal", key_passphrase="key-secret")
    assert settings.scrub("bad passphrase key-secret for key") == "bad passphrase *** for key"
    assert SshSettings(host="actions.internal").scrub("no passphrase") == "no passphrase"


def test_each_environments_rasa_containers_and_tracker_volume_are_its_own(
        tmp_path: Path) -> None:
    from agent.targets.docker.rasa_slots import (
        LABEL_PLACE,
        ContainerSettings,
        ContainerSlotRunner,
    )

    first = ContainerSettings("rasa/rasa:3.6.21-full", (5006, 5007), "127.0.0.1",
                              tmp_path / "tracker")
    staging = ContainerSettings("rasa/rasa:3.6.21-full", (6006, 6007), "127.0.0.1",
                                tmp_path / "tracker", place="staging")
    # The environment that keeps the single-environment layout keeps its names.
    assert (first.container("blue"), first.tracker_volume) == (
        "rasa-gitops-rasa-blue", "rasa-gitops-tracker")
    assert (staging.container("blue"), staging.tracker_volume) == (
        "rasa-gitops-rasa-staging-blue", "rasa-gitops-tracker-staging")

    class Container:
        def __init__(self, name: str, labels: dict[str, str]) -> None:
            self.name, self.labels, self.status, self.removed = name, labels, "exited", False

        def remove(self, force: bool) -> None:
            self.removed = True

    class Containers:
        def __init__(self, found: list[Container]) -> None:
            self.found = found

        def list(self, all: bool, filters: dict[str, list[str]]) -> list[Container]:
            return self.found  # the engine's label filter: role and slot match both

    class Client:
        def __init__(self, found: list[Container]) -> None:
            self.containers = Containers(found)

    old = Container("rasa-gitops-rasa-blue", {})  # from before places: no place label
    theirs = Container("rasa-gitops-rasa-staging-blue", {LABEL_PLACE: "staging"})
    client = Client([old, theirs])
    engine = lambda: client  # noqa: E731
    assert ContainerSlotRunner(engine, first)._remove_slot(client, "blue") == [old.name]
    assert not theirs.removed
    assert ContainerSlotRunner(engine, staging)._remove_slot(client, "blue") == [theirs.name]


def test_the_config_names_each_environments_place(tmp_path: Path) -> None:
    path = tmp_path / "agent.yml"
    path.write_text("repo: bot.git\nwork_dir: work\nenvironments:\n  staging:\n"
                    "    action_server: {port: 5155}\n"
                    "    model: {url: 'http://127.0.0.1:5105'}\n  production: {}\n")
    config = load_config(path)
    places = {env.name: config.for_environment(env.name).place for env in config.environments}
    assert places == {"staging": "staging", "production": "production"}


def test_a_swarm_fleet_from_config_and_its_port_sets(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_REGISTRY_PW", "registry-secret")
    base = config_file(tmp_path, "  target: swarm\n").read_text()
    path = tmp_path / "agent.yml"
    path.write_text(base + "model:\n  serving: swarm\n  url: http://127.0.0.1:6005\n"
                    "  replicas: 3\n")
    fleet = build_targets(load_config(path)).model
    assert isinstance(fleet, SwarmRasaTarget)
    assert fleet.settings.port_bases == (6015, 6025)  # model.url's port + 10 and + 20
    assert fleet.settings.ports(6015) == [6015, 6016, 6017]
    assert fleet.proxy.listen_port == 6005 and len(fleet.proxy.backends) == 6
    assert fleet.settings.repository == ""  # the replicas stay on the engine's node

    # Several machines: the image goes to a repository, pushed and pulled with
    # image.registry_user and its password (never in the target's repr).
    path.write_text(base + "model:\n  serving: swarm\n  rasa_repository: "
                    "registry.example.com/bot-rasa\n")
    spanning = build_targets(load_config(path)).model
    assert isinstance(spanning, SwarmRasaTarget)
    assert spanning.settings.repository == "registry.example.com/bot-rasa"
    assert spanning.settings.push_attempts == 4
    assert "registry-secret" not in repr(vars(spanning))

    # Sets that overlap; one that holds the stable port; a single set.
    for ports in ([6015, 6016], [6003, 6030], [6015]):
        path.write_text(base + f"model:\n  serving: swarm\n  url: http://127.0.0.1:6005\n"
                        f"  replicas: 3\n  fleet_ports: {ports}\n")
        with pytest.raises(ConfigError, match=r"model\.fleet_ports"):
            build_targets(load_config(path))

    path.write_text(base + "model:\n  serving: swarm\n  manage_server: false\n")
    with pytest.raises(ConfigError, match="swarm starts its own Rasa servers"):
        build_targets(load_config(path))
