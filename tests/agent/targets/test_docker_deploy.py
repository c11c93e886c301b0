"""Deploying action-server images to a real dockerd: locally, over a real sshd, as a Swarm service.

Every check talks to the deployed server over HTTP (`/health`, `/actions`,
`/webhook`) the way a Rasa server would.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.image.build import build_image
from agent.image.context import assemble
from agent.image.dockerfile import ImageSettings
from agent.image.push import Credentials, push_image
from agent.targets.base import ActionServerSpec, DeployError
from agent.targets.docker.engine import local_engine
from agent.targets.docker.host import DockerHostTarget, HostSettings
from agent.targets.docker.ssh import SshEngineFactory, SshSettings
from agent.targets.docker.swarm import SwarmSettings, SwarmTarget
from tests.support.bots import MENU_ACTION, copy_bot
from tests.support.paths import COFFEEBOT
from tests.support.services import DockerEngine, Registry, SshServer, free_port

OPENING_HOURS = "action_tell_opening_hours"
BOT_VARIABLE = "RGT_TEST_BOT_VARIABLE"  # action_server.env of the targets below


@pytest.fixture(scope="module")
def images(docker_engine: DockerEngine, sdk_base_image: str,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Three releases' images: v1, v2 (adds action_tell_menu), and one missing an action."""
    client = docker_engine.client()
    root = tmp_path_factory.mktemp("deploy-bots")
    made: dict[str, str] = {}
    try:
        for name in ("v1", "v2", "missing"):
            bot = copy_bot(COFFEEBOT, root / name)
            actions = bot / "actions" / "actions.py"
            if name == "v2":
                actions.write_text(actions.read_text() + MENU_ACTION)
            if name == "missing":
                actions.write_text(actions.read_text().replace(OPENING_HOURS, "action_other"))
            built = build_image(client, assemble(bot, ImageSettings(base_image=sdk_base_image)),
                                repository="coffeebot-deploy", commit=name * 8, source="",
                                log=lambda line: None)
            made[name] = built.ref
    finally:
        client.close()
    return made


def spec(release: str, image: str, *required: str) -> ActionServerSpec:
    return ActionServerSpec(release_id=release, commit=release * 8, worktree=Path(),
                            required_actions=frozenset(required), image=image)


def actions_at(port: int) -> set[str]:
    answer = requests.get(f"http://127.0.0.1:{port}/actions", timeout=10)
    answer.raise_for_status()
    return {item["name"] for item in answer.json()}


def run_action(port: int, action: str) -> str:
    payload = {"next_action": action, "sender_id": "test", "version": "3.6.21",
               "tracker": {"sender_id": "test", "slots": {}, "latest_message": {},
                           "events": [], "paused": False, "latest_event_time": None,
                           "followup_action": None, "active_loop": {},
                           "latest_action_name": None},
               "domain": {}}
    answer = requests.post(f"http://127.0.0.1:{port}/webhook", json=payload, timeout=10)
    answer.raise_for_status()
    return str(answer.json()["responses"][0]["text"])


def three_ports() -> tuple[int, tuple[int, int]]:
    return free_port(), (free_port(), free_port())


@pytest.fixture()
def local_target(docker_engine: DockerEngine) -> Iterator[DockerHostTarget]:
    port, backends = three_ports()
    target = DockerHostTarget("docker", local_engine(docker_engine.base_url),
                              HostSettings(instance=f"local{port}", port=port,
                                           backend_ports=backends, start_timeout=90,
                                           env_names=(BOT_VARIABLE,)))
    yield target
    remove_instance(docker_engine, target.prefix)


def remove_instance(engine: DockerEngine, prefix: str) -> None:
    client = engine.client()
    try:
        for container in client.containers.list(
                all=True, filters={"label": f"io.rasa-gitops.target={prefix}"}):
            container.remove(force=True)
    finally:
        client.close()


def container_env(engine: DockerEngine, name: str) -> list[str]:
    """The container's environment as `docker inspect` shows it (`NAME=value`)."""
    client = engine.client()
    try:
        return list(client.containers.get(name).attrs["Config"]["Env"] or [])
    finally:
        client.close()


def test_local_release_starts_beside_the_old_one_and_switches_on_the_stable_port(
        local_target: DockerHostTarget, images: dict[str, str], docker_engine: DockerEngine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    port = local_target.settings.port
    lines: list[str] = []
    monkeypatch.setenv(BOT_VARIABLE, "bot-value-42")
    monkeypatch.setenv("RGT_TEST_NOT_NAMED", "agent-only")
    first = local_target.deploy(spec("1", images["v1"], OPENING_HOURS), lines.append)
    # action_server.env: the named variable is in the container, by the engine's API,
    # and nothing else of the agent's environment; the log names it without its value.
    env = container_env(docker_engine, first.handle["container"])
    assert f"{BOT_VARIABLE}=bot-value-42" in env
    assert not any(item.startswith("RGT_TEST_NOT_NAMED=") for item in env)
    assert any(BOT_VARIABLE in line for line in lines)
    assert "bot-value-42" not in "\n".join(lines)
    assert first.url == f"http://127.0.0.1:{port}/webhook"
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=10).json() == {"status": "ok"}
    assert actions_at(port) == {OPENING_HOURS}
    assert "7am to 7pm" in run_action(port, OPENING_HOURS)
    live = local_target.live()
    assert live is not None and live.release_id == "1"

    second = local_target.deploy(spec("2", images["v2"], OPENING_HOURS, "action_tell_menu"),
                                 lines.append)
    assert second.url == first.url  # the Rasa server's endpoint never moves
    assert second.handle["port"] != first.handle["port"]  # started beside the old one
    assert actions_at(port) == {OPENING_HOURS, "action_tell_menu"}
    assert "Espresso" in run_action(port, "action_tell_menu")
    assert any(f"beside {first.handle['container']}" in line for line in lines)
    with pytest.raises(requests.ConnectionError):  # the old one is stopped
        requests.get(f"http://127.0.0.1:{first.handle['port']}/health", timeout=5)
    assert local_target.served_actions() == {OPENING_HOURS, "action_tell_menu"}

    local_target.reactivate(first, lines.append)  # rollback to the kept image
    assert actions_at(port) == {OPENING_HOURS}


def test_a_server_missing_an_action_is_refused_and_the_old_one_keeps_serving(
        local_target: DockerHostTarget, images: dict[str, str]) -> None:
    port = local_target.settings.port
    local_target.deploy(spec("1", images["v1"], OPENING_HOURS), lambda line: None)
    with pytest.raises(DeployError) as caught:
        local_target.deploy(spec("3", images["missing"], OPENING_HOURS), lambda line: None)
    assert f"does not serve {OPENING_HOURS}" in str(caught.value)
    assert actions_at(port) == {OPENING_HOURS}
    live = local_target.live()
    assert live is not None and live.release_id == "1"


def test_a_backend_port_in_use_fails_clearly_and_the_old_one_keeps_serving(
        local_target: DockerHostTarget, images: dict[str, str]) -> None:
    port = local_target.settings.port
    first = local_target.deploy(spec("1", images["v1"], OPENING_HOURS), lambda line: None)
    spare = next(p for p in local_target.settings.backend_ports
                 if str(p) != first.handle["port"])
    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", spare))
        squatter.listen()
        with pytest.raises(DeployError) as caught:
            local_target.deploy(spec("2", images["v2"], OPENING_HOURS), lambda line: None)
    assert f"port {spare} is already in use" in str(caught.value)
    assert actions_at(port) == {OPENING_HOURS}


def test_the_stable_port_in_use_fails_clearly(
        docker_engine: DockerEngine, images: dict[str, str]) -> None:
    port, backends = three_ports()
    target = DockerHostTarget("docker", local_engine(docker_engine.base_url),
                              HostSettings(instance=f"busy{port}", port=port,
                                           backend_ports=backends))
    try:
        with socket.socket() as squatter:
            squatter.bind(("0.0.0.0", port))
            squatter.listen()
            with pytest.raises(DeployError) as caught:
                target.deploy(spec("1", images["v1"], OPENING_HOURS), lambda line: None)
        assert f"port {port} is already in use" in str(caught.value)
        assert target.live() is None
    finally:
        remove_instance(docker_engine, target.prefix)


def test_only_the_newest_images_are_kept_for_rollback(
        docker_engine: DockerEngine, images: dict[str, str], sdk_base_image: str,
        tmp_path: Path) -> None:
    port, backends = three_ports()
    repository = f"keep{port}"
    client = docker_engine.client()
    bot = copy_bot(COFFEEBOT, tmp_path / "bot")
    (bot / "actions" / "actions.py").write_text(
        (bot / "actions" / "actions.py").read_text() + f"\n# {repository}\n")
    refs = []
    for n, source in enumerate((images["v1"], images["v2"])):
        client.images.get(source).tag(repository, tag=str(n))
        refs.append(f"{repository}:{n}")
    refs.append(build_image(client, assemble(bot, ImageSettings(base_image=sdk_base_image)),
                            repository=repository, commit="2", source="",
                            log=lambda line: None).ref)
    target = DockerHostTarget("docker", local_engine(docker_engine.base_url), HostSettings(
        instance=repository, port=port, backend_ports=backends, keep_images=1))
    try:
        for n, ref in enumerate(refs):
            target.deploy(spec(str(n), ref, OPENING_HOURS), lambda line: None)
        names = {tag for image in client.images.list(name=repository) for tag in image.tags}
        # keep_images=1: only the live image stays, and the first, which the router runs.
        assert refs[2] in names and refs[0] in names
        assert refs[1] not in names
        assert client.images.get(images["v2"])  # its other names are left alone
    finally:
        remove_instance(docker_engine, target.prefix)
        client.close()


# ---------------------------------------------------------------- over SSH


def ssh_settings(server: SshServer, docker_engine: DockerEngine, **overrides: Any
                 ) -> SshSettings:
    values: dict[str, Any] = dict(
        host=server.host, port=server.port, user=server.user, key_file=server.key_file,
        known_hosts=server.known_hosts, remote_docker_host=docker_engine.base_url)
    values.update(overrides)
    return SshSettings(**values)


def test_deploy_to_a_remote_engine_over_ssh_pulling_by_digest(
        sshd: SshServer, docker_engine: DockerEngine, images: dict[str, str],
        auth_registry: Registry) -> None:
    assert auth_registry.username and auth_registry.password
    credentials = Credentials(auth_registry.username, auth_registry.password)
    port, backends = three_ports()
    engine = SshEngineFactory(ssh_settings(sshd, docker_engine))
    target = DockerHostTarget("docker_ssh", engine, HostSettings(
        instance=f"ssh{port}", port=port, backend_ports=backends, public_host=sshd.host),
        pull_auth=credentials)
    # Release 2 is only in the registry: the remote engine must pull it by digest.
    client = docker_engine.client()
    remote = f"{auth_registry.address}/ssh-actions:{port}"
    client.images.get(images["v2"]).tag(remote)
    pushed = push_image(client, remote, lambda line: None, credentials=credentials)
    client.images.remove(remote)
    client.close()
    lines: list[str] = []
    try:
        deployment = target.deploy(spec("1", images["v1"], OPENING_HOURS), lines.append)
        assert deployment.url == f"http://127.0.0.1:{port}/webhook"
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
        assert actions_at(port) == {OPENING_HOURS}
        target.deploy(spec("2", f"{remote}@{pushed.digest}", OPENING_HOURS), lines.append)
        assert f"pulling {remote.rsplit(':', 1)[0]}@{pushed.digest}" in lines
        assert actions_at(port) == {OPENING_HOURS, "action_tell_menu"}
        live = target.live()
        assert live is not None and live.release_id == "2"
        assert live.handle["digest"] == pushed.digest
        assert auth_registry.password not in "\n".join(lines)
    finally:
        engine.close()
        remove_instance(docker_engine, target.prefix)


def test_an_unknown_ssh_host_key_is_refused(
        sshd: SshServer, docker_engine: DockerEngine, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    engine = SshEngineFactory(ssh_settings(sshd, docker_engine, known_hosts=empty))
    with pytest.raises(DeployError) as caught:
        engine()
    assert "not in" in str(caught.value) and "refusing an unknown host key" in str(caught.value)

    other = tmp_path / "other_key"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    kind, key = (tmp_path / "other_key.pub").read_text().split()[:2]
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[{sshd.host}]:{sshd.port} {kind} {key}\n")
    engine = SshEngineFactory(ssh_settings(sshd, docker_engine, known_hosts=wrong))
    with pytest.raises(DeployError) as caught:
        engine()
    assert "does not match" in str(caught.value)

    allowed = SshEngineFactory(ssh_settings(sshd, docker_engine, known_hosts=empty,
                                            allow_unknown_hosts=True))
    try:
        assert allowed().ping()
    finally:
        allowed.close()


# ---------------------------------------------------------------- Swarm


def test_swarm_service_updates_start_first_and_rolls_back_a_missing_action(
        swarm: Any, docker_engine: DockerEngine, images: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    port, backends = three_ports()
    target = SwarmTarget("swarm", local_engine(docker_engine.base_url), SwarmSettings(
        instance=f"swarm{port}", port=port, backend_ports=backends, monitor=3,
        start_period=20,  # the SDK answers within 3-7 s here; release 3 must fail
        env_names=(BOT_VARIABLE,)))
    lines: list[str] = []
    monkeypatch.setenv(BOT_VARIABLE, "swarm-value-7")
    try:
        first = target.deploy(spec("1", images["v1"], OPENING_HOURS), lines.append)
        assert first.served_actions == {OPENING_HOURS}
        task_spec = swarm.services.get(target.service_name).attrs["Spec"]["TaskTemplate"]
        assert task_spec["ContainerSpec"]["Env"] == [f"{BOT_VARIABLE}=swarm-value-7"]
        assert actions_at(port) == {OPENING_HOURS}
        update = swarm.services.get(target.service_name).attrs["Spec"]["UpdateConfig"]
        assert update["Order"] == "start-first" and update["FailureAction"] == "rollback"

        second = target.deploy(spec("2", images["v2"], OPENING_HOURS, "action_tell_menu"),
                               lines.append)
        assert second.served_actions == {OPENING_HOURS, "action_tell_menu"}
        assert actions_at(port) == {OPENING_HOURS, "action_tell_menu"}

        with pytest.raises(DeployError) as caught:
            target.deploy(spec("3", images["missing"], OPENING_HOURS), lines.append)
        assert "rolled back" in str(caught.value)
        live = target.live()
        assert live is not None and live.release_id == "2"
        assert actions_at(port) == {OPENING_HOURS, "action_tell_menu"}
    finally:
        remove_instance(docker_engine, f"{target.service_name}")
