"""Every fixture of the test suite, and nothing else.

Helpers (paths, git, bot copies, the agent config writer, the services, the
deploy host, the hook repo) live in tests/support/; a fixture here only says
what a test gets and for how long. Expensive things (a trained model, services,
the deploy host) are made once per test run and shared, which keeps the suite
inside its CI budget.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.base_images import sdk_base_image_in
from tests.support.blue_green_host import (
    BlueGreenHost,
    make_blue_green_host,
    stop_blue_green_host,
)
from tests.support.bots import LIGHT_CONFIG, copy_bot
from tests.support.ci import need
from tests.support.deploy_host import Host, shared_host
from tests.support.git import init_repo
from tests.support.paths import COFFEEBOT, SHARED_BOTS
from tests.support.precommit import copy_hook_repo, pre_commit_cache
from tests.support.rasa_image import rasa_image_in
from tests.support.services import (
    DockerEngine,
    RedisServer,
    Registry,
    SshServer,
    running_auth_registry,
    running_docker_engine,
    running_redis,
    running_sshd,
)

# The test venv's console scripts (rasa, pre-commit, our hooks) come first on
# PATH, as they do under .ci/test, so a bare `pytest` run finds them too.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("PYENV_VERSION", "3.11.7:3.10.13")

# `--ci-part heavy|light`: the serial and the two-worker parts of CI (.ci/test).
pytest_plugins = ["tests.support.ci_split"]

# ---------------------------------------------------------------- Rasa and bots


@pytest.fixture(scope="session")
def rasa_bin() -> Path:
    """The real `rasa` executable of the test venv."""
    candidate = Path(sys.executable).parent / "rasa"
    found = candidate if candidate.exists() else shutil.which("rasa")
    need(found is not None, "rasa 3.6.21 is not installed in the test environment")
    return Path(str(found))


@pytest.fixture()
def coffeebot(tmp_path: Path) -> Path:
    """A fresh copy of the example bot, not yet a git repo."""
    return copy_bot(COFFEEBOT, tmp_path / "coffeebot")


@pytest.fixture()
def coffeebot_repo(coffeebot: Path) -> Path:
    """A fresh copy of the example bot as a one-commit git repo."""
    return init_repo(coffeebot)


@pytest.fixture(scope="session")
def trained_coffeebot(
    tmp_path_factory: pytest.TempPathFactory, rasa_bin: Path
) -> Iterator[tuple[Path, Path]]:
    """The example bot with the light config, trained once per session: (bot folder,
    model file). The story hook's tests need a real model of the tree, not a good one."""
    bot = copy_bot(COFFEEBOT, tmp_path_factory.mktemp("trained") / "coffeebot")
    (bot / "config.yml").write_text(LIGHT_CONFIG, encoding="utf-8")
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false"}
    done = subprocess.run(
        [str(rasa_bin), "train", "--fixed-model-name", "coffeebot", "--out", "models"],
        cwd=bot,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield bot, bot / "models" / "coffeebot.tar.gz"


@pytest.fixture(scope="session")
def shared_bots() -> Path:
    """The real public bots in ../shared/bots (only where that folder exists)."""
    if not SHARED_BOTS.is_dir():
        pytest.skip("../shared/bots is not present on this machine")
    return SHARED_BOTS


# ---------------------------------------------------------------- pre-commit


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This working tree as a one-commit git repo that pre-commit can clone."""
    return copy_hook_repo(tmp_path_factory.mktemp("hookrepo") / "rasa-gitops")


@pytest.fixture(scope="session")
def pre_commit_home() -> Iterator[Path]:
    """pre-commit's env cache, kept between local runs (Rasa takes minutes)."""
    yield pre_commit_cache()


# ---------------------------------------------------------------- deploy host


@pytest.fixture()
def host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         rasa_bin: Path) -> Host:
    """The reliability and security tests' one deploy host, made by whichever asks first
    (tests/agent/test_pipeline.py has a module-scoped `host` of its own)."""
    return shared_host(tmp_path_factory, rasa_bin, request.config.add_cleanup)


@pytest.fixture()
def blue_green_host(tmp_path: Path, rasa_bin: Path) -> Iterator[BlueGreenHost]:
    """A fresh deploy host on `model.serving: blue_green` (nothing released);
    `agent stop` ends its servers and HAProxy afterwards."""
    need(shutil.which("haproxy") is not None, "HAProxy is not installed (apt-get install haproxy)")
    made = make_blue_green_host(tmp_path, rasa_bin)
    try:
        yield made
    finally:
        stop_blue_green_host(made)


# ---------------------------------------------------------------- Docker services


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    need(shutil.which("dockerd") is not None, "dockerd (Debian's docker.io) is not installed")
    need(os.geteuid() == 0, "dockerd needs root")
    with running_docker_engine() as engine:
        yield engine


@pytest.fixture(scope="session")
def sdk_base_image(docker_engine: DockerEngine) -> str:
    need(shutil.which("mmdebstrap") is not None, "mmdebstrap is not installed")
    return sdk_base_image_in(docker_engine)


@pytest.fixture(scope="session")
def rasa_image(docker_engine: DockerEngine) -> str:
    """A Rasa 3.6.21 image in that engine, standing in for rasa/rasa (made on first use)."""
    need(shutil.which("mmdebstrap") is not None, "mmdebstrap is not installed")
    return rasa_image_in(docker_engine)


@pytest.fixture()
def swarm(docker_engine: DockerEngine) -> Iterator[Any]:
    """The engine as a single-node Swarm manager, left again after the test."""
    client = docker_engine.client()
    client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
    yield client
    for service in client.services.list():
        service.remove()
    client.swarm.leave(force=True)
    client.close()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    need(shutil.which("docker-registry") is not None, "docker-registry is not installed")
    with running_auth_registry(tmp_path_factory.mktemp("registry-auth")) as registry:
        yield registry


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    need(Path("/usr/sbin/sshd").exists(), "openssh-server is not installed")
    need(os.geteuid() == 0, "sshd with a root login needs root")
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server (Debian's), shared by the tests of bots with their own stores."""
    need(shutil.which("redis-server") is not None, "redis-server (Debian's) is not installed")
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server
