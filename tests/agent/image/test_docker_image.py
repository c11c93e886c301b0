"""Building and pushing action-server images against a real dockerd and docker-registry."""

from __future__ import annotations

import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.image.build import BuildError, build_image
from agent.image.context import FINGERPRINT_LABEL, assemble
from agent.image.dockerfile import ImageSettings
from agent.image.push import Credentials, PushError, push_image
from tests.support.bots import copy_bot
from tests.support.paths import COFFEEBOT
from tests.support.services import DockerEngine, Registry, free_port


class Lines:
    """A log sink that keeps every line, so tests can read what the release log got."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture()
def client(docker_engine: DockerEngine) -> Iterator[Any]:
    client = docker_engine.client()
    yield client
    client.close()


@pytest.fixture()
def bot(tmp_path: Path) -> Path:
    return copy_bot(COFFEEBOT, tmp_path / "coffeebot")


def settings(base: str) -> ImageSettings:
    return ImageSettings(base_image=base)


def test_default_image_is_built_labelled_pushed_with_credentials_and_pulled_back_by_digest(
        client: Any, bot: Path, sdk_base_image: str, auth_registry: Registry) -> None:
    assert auth_registry.username and auth_registry.password
    log = Lines()
    repository = f"{auth_registry.address}/coffeebot-actions"
    context = assemble(bot, settings(sdk_base_image), log=log)
    built = build_image(client, context, repository=repository, commit="a" * 40,
                        source="https://example.com/coffeebot.git", log=log)
    assert not built.reused
    assert built.ref == f"{repository}:{'a' * 40}"
    assert "Step 1/" in log.text  # the build output reached the log sink
    attrs = client.images.get(built.ref).attrs
    labels = attrs["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == "a" * 40
    assert labels["org.opencontainers.image.source"] == "https://example.com/coffeebot.git"
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert labels[FINGERPRINT_LABEL] == context.fingerprint()
    assert attrs["Config"]["User"] == "1001"  # not root

    good = Credentials(auth_registry.username, auth_registry.password)
    pushed = push_image(client, built.ref, log, credentials=good)
    assert pushed.digest.startswith("sha256:")
    assert auth_registry.password not in log.text
    client.images.remove(built.ref, force=True)
    pulled = client.images.pull(pushed.by_digest, auth_config={
        "username": auth_registry.username, "password": auth_registry.password})
    assert pulled.id == built.image_id
    assert pulled.attrs["Config"]["Labels"][FINGERPRINT_LABEL] == context.fingerprint()


def test_a_training_only_change_reuses_the_production_image(
        client: Any, bot: Path, sdk_base_image: str) -> None:
    log = Lines()
    first = build_image(client, assemble(bot, settings(sdk_base_image)),
                        repository="coffeebot-reuse", commit="1" * 40, source="", log=log)
    nlu = bot / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text() + "\n- intent: chitchat\n  examples: |\n    - how are you\n")
    second = build_image(client, assemble(bot, settings(sdk_base_image)),
                         repository="coffeebot-reuse", commit="2" * 40, source="", log=log,
                         production_ref=first.ref)
    assert second.reused
    assert second.ref == first.ref
    assert "reusing" in log.lines[-1]


def test_an_action_only_change_rebuilds_but_keeps_the_requirements_layer(
        client: Any, bot: Path, sdk_base_image: str) -> None:
    # rasa-sdk is in the base image already, so pip needs no network here.
    (bot / "actions" / "requirements.txt").write_text("rasa-sdk\n")
    first = build_image(client, assemble(bot, settings(sdk_base_image)),
                        repository="coffeebot-cache", commit="3" * 40, source="", log=Lines())
    actions = bot / "actions" / "actions.py"
    # Unique per run: the engine's build cache outlives the test session.
    actions.write_text(actions.read_text() + f"\n# change {uuid.uuid4()}\n")
    log = Lines()
    second = build_image(client, assemble(bot, settings(sdk_base_image)),
                         repository="coffeebot-cache", commit="4" * 40, source="", log=log,
                         production_ref=first.ref)
    assert not second.reused
    pip_step = next(i for i, line in enumerate(log.lines) if "pip install" in line)
    assert "Using cache" in log.lines[pip_step + 1]
    copy_step = next(i for i, line in enumerate(log.lines) if "COPY actions" in line)
    assert "Using cache" not in log.lines[copy_step + 1]


def test_a_broken_dockerfile_fails_naming_the_step(
        client: Any, bot: Path, sdk_base_image: str) -> None:
    (bot / "Dockerfile").write_text(
        f"FROM {sdk_base_image}\nCOPY actions /app/actions\nRUN echo compiling && exit 3\n")
    with pytest.raises(BuildError) as caught:
        build_image(client, assemble(bot, settings(sdk_base_image)), repository="broken",
                    commit="5" * 40, source="", log=Lines())
    message = str(caught.value)
    assert "at Step 3/" in message and "`RUN echo compiling && exit 3`" in message
    assert "last output: compiling" in message
    assert "returned a non-zero code: 3" in message


def test_requirements_that_fail_to_install_name_the_pip_step(
        client: Any, bot: Path, sdk_base_image: str) -> None:
    (bot / "actions" / "requirements.txt").write_text("./wheels/not-there-1.0-py3-none-any.whl\n")
    with pytest.raises(BuildError) as caught:
        build_image(client, assemble(bot, settings(sdk_base_image)), repository="badreq",
                    commit="6" * 40, source="", log=Lines())
    message = str(caught.value)
    assert "`RUN python3 -m pip install --no-cache-dir -r /app/requirements.txt`" in message
    assert "not-there" in message


def test_symlinks_pointing_outside_the_bot_never_reach_the_context(
        bot: Path, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("deploy host secret\n")
    (bot / "actions" / "leak.txt").symlink_to(secret)
    (bot / "actions" / "inside.py").symlink_to("actions.py")
    log = Lines()
    context = assemble(bot, ImageSettings(), log=log)
    with tarfile.open(fileobj=context.tar()) as archive:
        names = archive.getnames()
        inside = archive.getmember("actions/inside.py")
        assert inside.issym() and inside.linkname == "actions.py"
        contents = b"".join(
            archive.extractfile(m).read() for m in archive.getmembers()  # type: ignore[union-attr]
            if m.isfile())
    assert "actions/leak.txt" not in names
    assert b"deploy host secret" not in contents
    assert "actions/leak.txt is a symlink pointing outside" in log.text


def test_wrong_registry_credentials_are_refused_clearly_and_never_printed(
        client: Any, bot: Path, sdk_base_image: str, auth_registry: Registry) -> None:
    assert auth_registry.username and auth_registry.password
    built = build_image(client, assemble(bot, settings(sdk_base_image)),
                        repository=f"{auth_registry.address}/refused", commit="7" * 40,
                        source="", log=Lines())
    wrong = Credentials(auth_registry.username, "wrong-" + auth_registry.password)
    log = Lines()
    with pytest.raises(PushError) as caught:
        push_image(client, built.ref, log, credentials=wrong, sleep=lambda s: None)
    assert caught.value.kind == "auth"
    assert f"registry {auth_registry.address} refused the credentials" in str(caught.value)
    assert "after 1 attempt(s)" in str(caught.value)  # auth errors are not retried
    assert wrong.password not in str(caught.value) + log.text + repr(wrong)


def test_credentials_from_the_docker_config_are_used_when_none_are_given(
        docker_engine: DockerEngine, bot: Path, sdk_base_image: str, auth_registry: Registry,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    import json

    token = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode())
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {auth_registry.address: {"auth": token.decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    client = docker_engine.client()  # reads $DOCKER_CONFIG/config.json
    try:
        built = build_image(client, assemble(bot, settings(sdk_base_image)),
                            repository=f"{auth_registry.address}/from-config", commit="9" * 40,
                            source="", log=Lines())
        log = Lines()
        pushed = push_image(client, built.ref, log)
        assert pushed.digest.startswith("sha256:")
        assert str(auth_registry.password) not in log.text
    finally:
        client.close()


def test_an_unreachable_registry_is_retried_with_backoff_then_fails_clearly(
        client: Any, bot: Path, sdk_base_image: str) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens here
    built = build_image(client, assemble(bot, settings(sdk_base_image)),
                        repository=f"{address}/coffeebot", commit="8" * 40, source="",
                        log=Lines())
    waits: list[float] = []
    log = Lines()
    with pytest.raises(PushError) as caught:
        push_image(client, built.ref, log, attempts=3, backoff=0.5, sleep=waits.append)
    assert caught.value.kind == "unreachable"
    assert f"registry {address} is unreachable" in str(caught.value)
    assert "after 3 attempt(s)" in str(caught.value)
    assert waits == [0.5, 1.0]



def test_a_full_registry_disk_fails_with_a_clear_message(
        client: Any, sdk_base_image: str, tmp_path: Path) -> None:
    """The registry's disk fills up after the image's layers are in: the next push
    (a new tag) fails writing the tag, as any write would. Only the manifest
    write fails, which dockerd does not retry (a full disk during a layer
    upload costs dockerd's own five tries, about 45 s, and fails the same way)."""
    import os
    import subprocess

    from tests.support.ci import need
    from tests.support.services import start_registry, stop_process

    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(disk)],
                             capture_output=True)
    need(mounted.returncode == 0, "mounting a small tmpfs needs root")
    port = free_port()
    registry = start_registry(tmp_path / "registry", port, None, data_dir=disk / "data")
    refs = [f"127.0.0.1:{port}/too-big:{tag}" for tag in ("1", "2")]
    try:
        for ref in refs:
            client.images.get(sdk_base_image).tag(ref)
        push_image(client, refs[0], Lines(), attempts=1)
        free = os.statvfs(disk)
        with (disk / "filler").open("wb") as filler:
            os.posix_fallocate(filler.fileno(), 0, free.f_bavail * free.f_frsize)
        with pytest.raises(PushError) as caught:
            push_image(client, refs[1], Lines(), attempts=1)
        assert caught.value.kind == "server"
        assert "a full disk on the registry is the usual cause" in str(caught.value)
        log = (tmp_path / "registry" / "registry.log").read_text()
        assert "no space left on device" in log
    finally:
        stop_process(registry)
        for ref in refs:
            client.images.remove(ref)
        subprocess.run(["umount", str(disk)], check=False)
