"""A deploy host on `model.serving: blue_green` for the blue/green crash tests.

A bare repo, the light-config example bot that pushes to it, and an agent
config serving through real HAProxy on a stable port (model.url) with real
`rasa run` servers behind it. Releases flip the bot's greeting between two
texts (`GREETINGS`), so a reply tells which release serves; the action code
never changes, so the action server started by the first release is kept.

No training cache is shared in: the agent trains each greeting once and every
later release of it (retries included) reuses that model through the journal
(`reusable_model`), so a shared cache would cost more than it saves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from agent.journal import Journal
from agent.targets.front_proxy import SLOTS, FrontProxy
from agent.targets.local_process import free_port
from tests.support.agent_config import agent_config
from tests.support.bots import deploy_repo
from tests.support.deploy_host import GREETINGS, assert_journal_settled
from tests.support.git import git
from tests.support.procs import kill_processes_of
from tests.support.rasa_memo import memo_rasa
from tests.support.serving import rasa_servers_of


@dataclass
class BlueGreenHost:
    root: Path
    src: Path
    config: Path
    url: str  # model.url: HAProxy's stable port
    rasa_bin: Path
    expected: dict[str, str] = field(default_factory=dict)  # commit: greeting

    @property
    def state(self) -> Path:
        """The blue/green target's state dir (agent/targets/factory.py)."""
        return self.root / "work" / "rasa-blue-green"

    def agent(self, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": f"{self.rasa_bin.parent}{os.pathsep}{os.environ['PATH']}",
               "RASA_TELEMETRY_ENABLED": "false"}
        env.pop("RASA_GITOPS_KILL_AT", None)
        if kill_at:
            env["RASA_GITOPS_KILL_AT"] = kill_at
        return subprocess.run(
            [sys.executable, "-m", "agent.cli", "-c", str(self.config), *args],
            capture_output=True, text=True, env=env, timeout=900,
            start_new_session=True,  # the agent leads its group, as under systemd
        )

    def push(self, message: str) -> str:
        """A commit with the other greeting (so another model); returns its sha."""
        domain = self.src / "domain.yml"
        text = domain.read_text(encoding="utf-8")
        current = next(g for g in GREETINGS if g in text)
        greeting = next(g for g in GREETINGS if g != current)
        domain.write_text(text.replace(current, greeting), encoding="utf-8")
        git(self.src, "commit", "-q", "-am", message)
        git(self.src, "push", "-q", "deploy", "main")
        sha = git(self.src, "rev-parse", "HEAD")
        self.expected[sha] = greeting
        return sha

    def journal(self) -> Journal:
        return Journal(self.root / "work" / "journal.sqlite")

    def servers(self) -> list[int]:
        """Pids of every `rasa run` of this host's target still alive."""
        return rasa_servers_of(self.state)

    def _pid_in(self, record: str) -> int | None:
        try:
            data = json.loads((self.state / record).read_text(encoding="utf-8"))
            return int(data["handle"]["pid"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def live_server(self) -> int | None:
        """Pid of the server switched to last (`live.json`)."""
        return self._pid_in("live.json")

    def standby_server(self) -> int | None:
        """Pid of the other slot's server: the warm standby between releases."""
        live = self.live_server()
        pids = [self._pid_in(f"{slot}.json") for slot in SLOTS]
        return next((pid for pid in pids if pid is not None and pid != live), None)

    def standby_requests(self) -> int:
        """Requests HAProxy sent to a standby so far (`stot` of the backup entries)."""
        proxy = FrontProxy(listen_host="127.0.0.1", listen_port=0, state_dir=self.state / "proxy")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as admin:
            admin.connect(str(proxy.socket_path))
            admin.sendall(b"show stat\n")
            answer = b"".join(iter(lambda: admin.recv(65536), b"")).decode()
        lines = answer.splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return sum(int(row["stot"] or 0) for row in rows if row.get("svname") == "standby")

    def live_model_id(self) -> str | None:
        """The model_id on /status through the stable port (the proxy)."""
        token = (self.state / "auth-token").read_text(encoding="utf-8").strip()
        status = requests.get(f"{self.url}/status", params={"token": token}, timeout=30)
        status.raise_for_status()
        model_id = status.json().get("model_id")
        return str(model_id) if model_id else None

    def say(self, text: str, sender: str) -> list[str]:
        answer = requests.post(f"{self.url}/webhooks/rest/webhook",
                               json={"sender": sender, "message": text}, timeout=120)
        answer.raise_for_status()
        return [m["text"] for m in answer.json() if "text" in m]


def make_blue_green_host(root: Path, rasa_bin: Path) -> BlueGreenHost:
    """A host with nothing released yet."""
    bare, src = deploy_repo(root)
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "coffeebot")  # the first push flips the greeting
    url = f"http://127.0.0.1:{free_port()}"
    config = agent_config(
        root / "agent.yml", repo=bare, branch="main", work_dir="work",
        rasa_command=memo_rasa(rasa_bin),
        pipeline={"test_stories": "tests/none_*.yml"},
        action_server={"port": free_port()},
        model={"url": url, "serving": "blue_green", "drain_timeout": 5},
        smoke={"conversations": [[{"say": "hello"}]]},
    )
    return BlueGreenHost(root, src, config, url, rasa_bin)


def assert_one_server_serves_production(host: BlueGreenHost, sender: str) -> int:
    """Exactly one Rasa server is left for the target, the stable port serves the
    model of the journal's production release and replies with its greeting;
    returns that release's id."""
    journal = host.journal()
    try:
        assert_journal_settled(journal)
        production = journal.production_release("production")
    finally:
        journal.close()
    assert production is not None
    servers = host.servers()
    assert len(servers) == 1, servers
    assert host.live_model_id() == production.model_id
    assert host.say("hello", sender) == [host.expected[production.commit]]
    return production.id


def stop_blue_green_host(host: BlueGreenHost) -> None:
    """`agent stop`; whatever it left of the host's Rasa servers is killed, then
    its failure is reported (nothing outlives a test)."""
    stopped = host.agent("stop")
    left = host.servers()
    for pid in left:
        try:
            os.killpg(pid, signal.SIGKILL)  # each server leads its own session
        except ProcessLookupError:
            os.kill(pid, signal.SIGKILL)
    others = kill_processes_of(host.root / "work")  # HAProxy, forwarder, action servers
    assert stopped.returncode == 0, stopped.stdout[-2000:] + stopped.stderr[-2000:]
    assert left == [], f"`agent stop` left Rasa servers {left}"
    assert others == [], f"`agent stop` left processes {others}"
