"""A deploy host for the reliability and security tests, shared by the session.

A bare repo the tests push to, the agent's config and work dir, and the Rasa
server, action forwarder and action servers the agent starts. The bot flips
between two training states (the greeting), so only two models are ever
trained and every later release reuses one; test stories are off (they are
not what these tests are about). Each commit also changes the opening hours the
custom action answers with, so that both the model and the action server of
any two releases differ, and a reply tells which release serves.

The `host` fixture in tests/conftest.py hands out the one `shared_host`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from agent.journal import Journal
from agent.targets.local_process import free_port
from tests.support.agent_config import agent_config
from tests.support.bots import deploy_repo, push_all, set_hours
from tests.support.procs import kill_processes_of

GREETINGS = ("Hi! Coffee, or opening hours?", "Hello there! Coffee, or opening hours?")


@dataclass
class Host:
    root: Path
    bare: Path
    src: Path
    config: Path
    rasa_url: str
    action_port: int
    rasa_bin: Path
    flips: int = 0
    expected: dict[str, tuple[str, str]] = field(default_factory=dict)  # commit: replies

    def env(self, kill_at: str | None = None) -> dict[str, str]:
        env = {**os.environ, "PATH": f"{self.rasa_bin.parent}{os.pathsep}{os.environ['PATH']}",
               "RASA_TELEMETRY_ENABLED": "false"}
        env.pop("RASA_GITOPS_KILL_AT", None)
        if kill_at:
            env["RASA_GITOPS_KILL_AT"] = kill_at
        return env

    def agent(self, *args: str, kill_at: str | None = None,
              config: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent.cli", "-c", str(config or self.config), *args],
            capture_output=True, text=True, env=self.env(kill_at), timeout=1200,
            start_new_session=True,  # the agent leads its group, as under systemd
        )

    def push_change(self, message: str, *, retrain: bool = True) -> str:
        """A commit that changes the action code and (by default) the model."""
        self.flips += 1
        current = self.greeting_in_src()
        greeting = next(g for g in GREETINGS if g != current) if retrain else current
        domain = (self.src / "domain.yml").read_text(encoding="utf-8")
        for text in GREETINGS:
            domain = domain.replace(text, greeting)
        (self.src / "domain.yml").write_text(domain, encoding="utf-8")
        hours = f"Open from {self.flips} am, commit {self.flips}."
        set_hours(self.src, hours)
        sha = push_all(self.src, message)
        self.expected[sha] = (greeting, hours)
        return sha

    def greeting_in_src(self) -> str:
        domain = (self.src / "domain.yml").read_text(encoding="utf-8")
        return next(g for g in GREETINGS if g in domain)

    def journal(self) -> Journal:
        return Journal(self.root / "work" / "journal.sqlite")

    def token(self) -> str:
        return (self.root / "work" / "rasa-server" / "auth-token").read_text().strip()

    def say(self, text: str, sender: str) -> list[str]:
        answer = requests.post(f"{self.rasa_url}/webhooks/rest/webhook",
                               json={"sender": sender, "message": text}, timeout=300)
        answer.raise_for_status()
        return [m["text"] for m in answer.json() if "text" in m]

    def live(self) -> tuple[str | None, frozenset[str]]:
        """(model_id on /status, actions the live action server lists)."""
        status = requests.get(f"{self.rasa_url}/status", params={"token": self.token()},
                              timeout=30)
        model_id = status.json().get("model_id") if status.status_code == 200 else None
        served = requests.get(f"http://127.0.0.1:{self.action_port}/actions", timeout=30)
        served.raise_for_status()
        return model_id, frozenset(a["name"] for a in served.json())


def assert_journal_settled(journal: Journal) -> None:
    """The journal file is sound, no lock is held and no release is in flight."""
    assert journal._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert journal.lock_holder("deploy") is None, journal.lock_holder("deploy")
    assert journal.lock_holder("pipeline") is None, journal.lock_holder("pipeline")
    assert not journal.in_flight()


def assert_consistent(host: Host, sender: str) -> int:
    """Production is wholly one release; returns its id."""
    journal = host.journal()
    try:
        assert_journal_settled(journal)
        production = journal.production_release("production")
        assert production is not None
        model_id, served = host.live()
        assert model_id == production.model_id
        assert set(production.required_actions) <= served  # the invariant
        greeting, hours = host.expected[production.commit]
        assert host.say("hello", sender) == [greeting]
        assert host.say("when are you open", sender) == [hours]
        return production.id
    finally:
        journal.close()


def assert_invariant_now(host: Host) -> None:
    """Right after a crash: whatever model is live, its actions are served."""
    model_id, served = host.live()
    journal = host.journal()
    try:
        owner = next((r for r in journal.releases(limit=500) if r.model_id == model_id), None)
        assert owner is not None, f"the live model {model_id} is no release's"
        assert set(owner.required_actions) <= served
    finally:
        journal.close()


_SHARED: list[Host] = []


def shared_host(tmp_path_factory: pytest.TempPathFactory, rasa_bin: Path,
                add_cleanup: Callable[[Callable[[], object]], None]) -> Host:
    """One deploy host for the whole session, made for whichever test asks first;
    its agent is stopped when the session ends (`add_cleanup`)."""
    if _SHARED:
        return _SHARED[0]
    root = tmp_path_factory.mktemp("crash-host")
    bare, src = deploy_repo(root)
    rasa_port, action_port = free_port(), free_port()
    config = agent_config(
        root / "agent.yml", repo=bare, branch="main", work_dir="work", rasa_command=rasa_bin,
        keep_releases=12,
        pipeline={"test_stories": "tests/none_*.yml"},
        action_server={"port": action_port},
        model={"url": f"http://127.0.0.1:{rasa_port}"},
    )
    made = Host(root, bare, src, config, f"http://127.0.0.1:{rasa_port}", action_port,
                rasa_bin)
    _SHARED.append(made)
    add_cleanup(lambda: stop_host(made))
    return made


def stop_host(host: Host) -> None:
    """`agent stop` at the end of the session; whatever it left is killed (a
    leaked server would outlive the CI run) and named on stderr: this runs after
    the last test, where a failed assertion would belong to no test."""
    stopped = host.agent("stop")
    left = kill_processes_of(host.root / "work")
    if stopped.returncode != 0 or left:
        print(f"\nthe shared deploy host's `agent stop` failed or left processes: "
              f"{stopped.stderr[-2000:]} {left}", file=sys.stderr)
