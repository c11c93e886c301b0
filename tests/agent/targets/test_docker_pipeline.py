"""The agent's whole pipeline with the Docker target: a push becomes a built, pushed and
deployed action-server image that a real Rasa server calls; a training-only change reuses it.

Real git, real Rasa, real dockerd and a real docker-registry with htpasswd auth.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from agent.config import load_config
from agent.journal import PROMOTED, Journal
from agent.progress import Progress
from agent.runtime import Agent
from agent.tick import tick
from tests.support.agent_config import agent_config
from tests.support.bots import deploy_repo
from tests.support.git import git
from tests.support.rasa_memo import memo_rasa
from tests.support.services import DockerEngine, Registry, free_port

HOURS = "We are open 7am to 7pm, every day."
PASSWORD_VARIABLE = "RASA_GITOPS_TEST_REGISTRY_PASSWORD"


@dataclass
class DockerHost:
    root: Path
    src: Path
    config: Path
    rasa_url: str
    password: str
    instance: str

    def push(self, message: str) -> None:
        git(self.src, "add", "-A")
        git(self.src, "commit", "-q", "-m", message)
        git(self.src, "push", "-q", "deploy", "main")

    def tick(self) -> int:
        agent = Agent.open(load_config(self.config), Progress(quiet=True))
        try:
            result = tick(agent)
        finally:
            agent.close()
        release = self.journal().release(result.release_id or 0)
        assert result.status == PROMOTED, release.reason
        return release.id

    def journal(self) -> Journal:
        return Journal(self.root / "work" / "journal.sqlite")

    def say(self, text: str) -> list[str]:
        answer = requests.post(f"{self.rasa_url}/webhooks/rest/webhook",
                               json={"sender": "docker", "message": text}, timeout=300)
        answer.raise_for_status()
        return [m["text"] for m in answer.json() if "text" in m]


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory: pytest.TempPathFactory, rasa_bin: Path,
                docker_engine: DockerEngine, sdk_base_image: str, auth_registry: Registry
                ) -> Iterator[DockerHost]:
    assert auth_registry.password
    root = tmp_path_factory.mktemp("docker-host")
    bare, src = deploy_repo(root)
    rasa_port, action_port = free_port(), free_port()
    instance = f"pipeline{action_port}"
    config = agent_config(
        root / "agent.yml", repo=bare, branch="main", work_dir="work",
        rasa_command=memo_rasa(rasa_bin),
        # Test stories are the spine's tests' business; here they only cost time.
        pipeline={"test_stories": "tests/none_*.yml"},
        action_server={
            "target": "docker",
            "port": action_port,
            "backend_ports": [free_port(), free_port()],
            "instance": instance,
            "docker_host": docker_engine.base_url,
        },
        image={
            "repository": f"{auth_registry.address}/coffeebot-actions",
            "base_image": sdk_base_image,
            "docker_host": docker_engine.base_url,
            "registry_user": auth_registry.username,
            "registry_password_env": PASSWORD_VARIABLE,
        },
        model={"url": f"http://127.0.0.1:{rasa_port}"},
    )
    os.environ[PASSWORD_VARIABLE] = auth_registry.password
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    made = DockerHost(root, src, config, f"http://127.0.0.1:{rasa_port}",
                      auth_registry.password, instance)
    try:
        yield made
    finally:
        subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(config), "stop"],
                       capture_output=True, timeout=300)
        os.environ.pop(PASSWORD_VARIABLE, None)
        client = docker_engine.client()
        for container in client.containers.list(all=True, filters={
                "label": f"io.rasa-gitops.target=rasa-actions-{instance}"}):
            container.remove(force=True)
        client.close()


def test_a_push_is_built_pushed_and_served_from_docker_to_a_real_rasa_server(
        docker_host: DockerHost) -> None:
    docker_host.push("coffeebot, first release")
    release_id = docker_host.tick()
    journal = docker_host.journal()
    release = journal.release(release_id)
    steps = {s.name: s.status for s in journal.steps(release_id)}
    assert steps["build"] == "passed" and steps["push"] == "passed"
    assert steps["deploy_actions"] == "passed"
    assert release.image is not None and "@sha256:" in release.image  # the pushed digest
    # The Rasa server calls the action server in the container through the stable port.
    assert docker_host.say("when are you open") == [HOURS]
    # The registry password never reaches the journal.
    assert docker_host.password.encode() not in (
        docker_host.root / "work" / "journal.sqlite").read_bytes()


def test_a_training_only_change_reuses_the_production_image(docker_host: DockerHost) -> None:
    before = docker_host.journal().production_release("production")
    assert before is not None and before.image
    # A response text lives in a training file (domain.yml) and not in the image.
    domain = docker_host.src / "domain.yml"
    domain.write_text(domain.read_text(encoding="utf-8").replace(
        "Hi! Coffee, or opening hours?", "Hello! Coffee, or opening hours?"), encoding="utf-8")
    docker_host.push("a warmer greeting")
    release_id = docker_host.tick()
    journal = docker_host.journal()
    steps = {s.name: s.status for s in journal.steps(release_id)}
    assert steps["train"] == "passed"  # a new model ...
    assert steps["build"] == "reused"  # ... on the same image
    assert steps["push"] == "skipped"
    assert journal.release(release_id).image == before.image
    assert docker_host.say("hello") == ["Hello! Coffee, or opening hours?"]
    assert docker_host.say("when are you open") == [HOURS]
