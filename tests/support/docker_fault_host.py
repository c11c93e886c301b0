"""The deploy host of tests/reliability/test_faults_docker.py and its checks.

One host on the `docker_ssh` action-server target (the session's dockerd reached
through its own sshd), its own docker-registry with htpasswd auth behind a
`RegistryGate` (tests/support/docker_faults.py), and the agent's managed Rasa
server (put_model, light config). Only the first release trains; every later
commit changes only the action code (the opening hours), so it reuses the model
and builds, pushes and deploys a new image. The agent runs as the real
`agent once` process; `serving()` tells which release serves by the live
model's id and the hours its action server answers with.

The last test releases the spy bot (tests/support/docker_spy.py), whose custom
component the running Rasa server must load: every agent here runs with
`PYTHONPATH` naming `spy_path` (empty until then) and with `RGT_DUMP_DIR`
(`pipeline.env`), so the server the first release starts finds the component
and reports its own environment, with no restart of its own (~25 s).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from agent.journal import FAILED, Journal, Release
from tests.support.agent_config import agent_config
from tests.support.bots import deploy_repo, push_all, set_hours
from tests.support.deploy_host import assert_journal_settled
from tests.support.docker_faults import RegistryGate
from tests.support.env_dump_bot import DUMP_VARIABLE
from tests.support.git import git
from tests.support.rasa_memo import memo_rasa
from tests.support.services import (
    DockerEngine,
    SshServer,
    free_port,
    htpasswd_for,
    running_sshd,
    start_registry,
    stop_process,
)

PASSWORD_VARIABLE = "RASA_GITOPS_FAULT_REGISTRY_PASSWORD"
HOURS = "We are open 7am to 7pm, every day."
REPOSITORY = "fault-actions"


@dataclass
class FaultHost:
    root: Path
    src: Path
    config: Path
    rasa_url: str
    registry_root: Path
    registry_port: int
    gate: RegistryGate
    registry: subprocess.Popen[bytes]
    sshd: SshServer
    engine: DockerEngine
    password: str
    rasa_bin: Path
    instance: str
    hours: dict[str, str] = field(default_factory=dict)  # commit: what the action answers
    changes: int = 0

    def env(self, kill_at: str | None = None, **extra: str) -> dict[str, str]:
        env = {**os.environ, "PATH": f"{self.rasa_bin.parent}{os.pathsep}{os.environ['PATH']}",
               "RASA_TELEMETRY_ENABLED": "false", PASSWORD_VARIABLE: self.password,
               DUMP_VARIABLE: str(self.spy_dumps), "PYTHONPATH": os.pathsep.join(
                   filter(None, [str(self.spy_path), os.environ.get("PYTHONPATH")]))}
        env.pop("RASA_GITOPS_KILL_AT", None)
        if kill_at:
            env["RASA_GITOPS_KILL_AT"] = kill_at
        return {**env, **extra}

    def agent(self, *args: str, kill_at: str | None = None, config: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`agent ARGS` run to its end; `config` and `env` (over `self.env()`): a variant."""
        return subprocess.run(
            [sys.executable, "-m", "agent.cli", "-c", str(config or self.config), *args],
            capture_output=True, text=True, env=self.env(kill_at, **(env or {})), timeout=600,
            start_new_session=True,  # the agent leads its group, as under systemd
        )

    def spawn_agent(self, *args: str, config: Path | None = None,
                    env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """The agent started, not waited for (a watcher may pause it)."""
        return subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "-c", str(config or self.config), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=self.env(**(env or {})), start_new_session=True)

    def push_actions_change(self, message: str,
                            also: Callable[[Path], None] | None = None) -> str:
        """A commit that changes only the action code: the model is reused, the image not.
        `also(src)` changes more (the spy bot: its component makes a training run)."""
        self.changes += 1
        hours = f"Open from {self.changes} am, fault commit {self.changes}."
        set_hours(self.src, hours)
        if also is not None:
            also(self.src)
        sha = push_all(self.src, message)
        self.hours[sha] = hours
        return sha

    @property
    def spy_path(self) -> Path:
        """On the agent's PYTHONPATH: where the spy bot's component is put for the server."""
        return self.root / "spy-path"

    @property
    def spy_dumps(self) -> Path:
        """$RGT_DUMP_DIR: where the spy bot's code reports what it sees."""
        return self.root / "spy-dumps"

    def journal(self) -> Journal:
        return Journal(self.root / "work" / "journal.sqlite")

    def last_release_id(self) -> int:
        journal = self.journal()
        try:
            releases = journal.releases(limit=1)
            return releases[0].id if releases else 0
        finally:
            journal.close()

    def token(self) -> str:
        return (self.root / "work" / "rasa-server" / "auth-token").read_text().strip()

    def serving(self) -> tuple[str | None, str]:
        """(the live model's id on /status, the hours a REST chat gets from the live actions)."""
        status = requests.get(f"{self.rasa_url}/status", params={"token": self.token()},
                              timeout=30)
        model_id = status.json().get("model_id") if status.status_code == 200 else None
        answer = requests.post(f"{self.rasa_url}/webhooks/rest/webhook",
                               json={"sender": "faults", "message": "when are you open"},
                               timeout=120)
        answer.raise_for_status()
        texts = [m["text"] for m in answer.json() if "text" in m]
        return model_id, " ".join(texts)

    def production_is(self, production_id: int) -> None:
        """What serves is wholly release `production_id`, which the journal names."""
        journal = self.journal()
        try:
            production = journal.production_release("production")
            assert production is not None and production.id == production_id
            assert self.serving() == (production.model_id, self.hours[production.commit])
        finally:
            journal.close()

    def readable(self) -> None:
        """The journal is sound, settled and readable by the CLI."""
        journal = self.journal()
        try:
            assert_journal_settled(journal)
        finally:
            journal.close()
        for command in (("status",), ("history",), ("status", "--json")):
            shown = self.agent(*command)
            assert shown.returncode == 0, (command, shown.stdout[-2000:], shown.stderr[-2000:])
            assert "Traceback" not in shown.stdout + shown.stderr
            assert self.password not in shown.stdout + shown.stderr

    def step_log(self, release_id: int, step: str) -> str:
        return (self.root / "work" / "logs" / f"release-{release_id}" / f"{step}.log").read_text()

    def stop_registry(self) -> None:
        self.gate.cut()
        stop_process(self.registry)

    def restart_registry(self) -> None:
        """The registry and its gate anew, whether or not a fault stopped them."""
        stop_process(self.registry)
        self.gate.cut()
        self.registry = start_registry(self.registry_root, self.registry_port,
                                       self.registry_root / "htpasswd")
        self.gate = RegistryGate(self.registry_port, port=self.gate.port)

    def tag_in_registry(self, tag: str) -> bool:
        answer = requests.get(
            f"http://127.0.0.1:{self.registry_port}/v2/{REPOSITORY}/manifests/{tag}",
            auth=("deployer", self.password), timeout=10,
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert answer.status_code in (200, 404), answer.text
        return answer.status_code == 200


def watch(action: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    """`action` on a thread; what it raised is kept for the test to re-raise."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # re-raised by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


@contextmanager
def running_fault_host(root: Path, rasa_bin: Path, docker_engine: DockerEngine,
                       sdk_base_image: str) -> Iterator[FaultHost]:
    """The host with its first release promoted; everything it started stopped after."""
    bare, src = deploy_repo(root)
    registry_root = root / "registry"
    registry_root.mkdir()
    password = htpasswd_for(registry_root / "htpasswd", "deployer")
    registry_port = free_port()
    rasa_port, action_port = free_port(), free_port()
    instance = f"faults{action_port}"
    with contextlib.ExitStack() as stack:
        registry = start_registry(registry_root, registry_port, registry_root / "htpasswd")
        gate = RegistryGate(registry_port)
        (root / "sshd").mkdir()
        sshd = stack.enter_context(running_sshd(root / "sshd"))
        config = agent_config(
            root / "agent.yml", repo=bare, branch="main", rasa_command=memo_rasa(rasa_bin),
            pipeline={"test_stories": "tests/none_*.yml", "env": [DUMP_VARIABLE]},
            action_server={
                "target": "docker_ssh", "port": action_port,
                "backend_ports": [free_port(), free_port()], "instance": instance,
                "ssh_host": sshd.host, "ssh_port": sshd.port, "ssh_user": sshd.user,
                "ssh_key_file": sshd.key_file, "ssh_known_hosts": sshd.known_hosts,
                "remote_docker_host": docker_engine.base_url, "start_timeout": 90,
            },
            image={
                "repository": f"127.0.0.1:{gate.port}/{REPOSITORY}",
                "base_image": sdk_base_image, "docker_host": docker_engine.base_url,
                "registry_user": "deployer", "registry_password_env": PASSWORD_VARIABLE,
            },
            model={"url": f"http://127.0.0.1:{rasa_port}"},
        )
        host = FaultHost(root, src, config, f"http://127.0.0.1:{rasa_port}", registry_root,
                         registry_port, gate, registry, sshd, docker_engine, password, rasa_bin,
                         instance)
        host.spy_path.mkdir()
        host.spy_dumps.mkdir()
        # The host's current registry and gate (a test restarts them), then its
        # containers and its agent's servers, are stopped in that order, last first.
        stack.callback(host.stop_registry)
        stack.callback(remove_containers, docker_engine, f"rasa-actions-{instance}")
        stack.callback(host.agent, "stop")
        git(src, "add", "-A")
        git(src, "commit", "-q", "-m", "coffeebot, first release")
        git(src, "push", "-q", "deploy", "main")
        host.hours[git(src, "rev-parse", "HEAD")] = HOURS
        first = host.agent("once")
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        host.production_is(host.last_release_id())
        yield host


def remove_containers(engine: DockerEngine, target: str) -> None:
    client = engine.client()
    try:
        for container in client.containers.list(all=True, filters={
                "label": f"io.rasa-gitops.target={target}"}):
            container.remove(force=True)
    finally:
        client.close()


def failed_release(host: FaultHost, ran: subprocess.CompletedProcess[str], after: int
                   ) -> Release:
    """The one release `agent once` made after `after`: failed, its output clean."""
    output = ran.stdout + ran.stderr
    assert "Traceback" not in output, output[-3000:]
    assert host.password not in output
    journal = host.journal()
    try:
        (release,) = [r for r in journal.releases(limit=20) if r.id > after]
        assert release.status == FAILED, (release.status, release.reason, output[-3000:])
        return release
    finally:
        journal.close()


def retried_with_backoff(log: str, what: str, attempts: int = 4) -> None:
    """`attempts` tries with waits of 1, 2, 4 ... s between them, in the step's log."""
    for n in range(1, attempts):
        assert f"{what}: attempt {n}/{attempts} failed" in log, log[-3000:]
        assert f"retrying in {2 ** (n - 1)} s" in log
    assert f"{what}: giving up after {attempts} attempt(s)" in log, log[-3000:]
