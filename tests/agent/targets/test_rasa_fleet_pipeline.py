"""The whole agent with Swarm for both servers: the action service and a 2-replica
Rasa service (model.serving: swarm), while a user chats every 100 ms.

Real git, the agent's own tick (validate, train, build), real dockerd as a
single-node Swarm, real Rasa in the replicas, a real redis-server as the bot's
shared tracker and lock store, real HAProxy. Release 2 adds a custom action its
model calls. A sampler checks every 100 ms that each action the model of any
replica may call (its domain, `GET /domain`) is served by the action service
(`GET /actions` through its router): the action-subset invariant, held by the
one switch's order (action service first, then the replicas). Then a release
whose model fails to load makes Swarm roll back by itself, with no user
reaching its replica.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.config import load_config
from agent.targets.base import DeployError, ModelRef
from agent.targets.docker.fleet_service import LABEL_BOT_DIR, LABEL_LOCATION, LABEL_MODEL
from agent.targets.docker.rasa_fleet import SwarmRasaTarget
from agent.targets.factory import build_targets
from tests.support.agent_config import agent_config
from tests.support.agent_run import tick_promoted
from tests.support.bots import MENU_ACTION, deploy_repo, push_all
from tests.support.light_models import corrupt_copy
from tests.support.rasa_memo import memo_rasa
from tests.support.services import DockerEngine, RedisServer, free_port, probed_ports

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(1500)]

GREETING = "Hi! Coffee, or opening hours?"
MENU = "Espresso, latte, cappuccino."
SHARED_STORES = """\
action_endpoint:
  url: "http://localhost:5055/webhook"
tracker_store:
  type: redis
  url: 127.0.0.1
  port: ${BOT_REDIS_PORT}
  db: 8
lock_store:
  type: redis
  url: 127.0.0.1
  port: ${BOT_REDIS_PORT}
  db: 9
"""
MENU_NLU = """
  - intent: ask_menu
    examples: |
      - what is on the menu
      - show me the menu
      - which drinks do you have
      - menu please
"""
MENU_RULE = """
  - rule: tell the menu
    steps:
      - intent: ask_menu
      - action: action_tell_menu
"""


def add_menu(src: Path) -> None:
    """Release 2: a new custom action, an intent and a rule that calls it."""
    actions = src / "actions" / "actions.py"
    actions.write_text(actions.read_text(encoding="utf-8") + MENU_ACTION, encoding="utf-8")
    for name, extra in (("nlu.yml", MENU_NLU), ("rules.yml", MENU_RULE)):
        path = src / "data" / name
        path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + "\n" + extra,
                        encoding="utf-8")
    domain = src / "domain.yml"
    text = domain.read_text(encoding="utf-8")
    text = text.replace("  - thank\n", "  - thank\n  - ask_menu\n", 1)
    text = text.replace("  - action_tell_opening_hours\n",
                        "  - action_tell_opening_hours\n  - action_tell_menu\n", 1)
    text = text.replace(GREETING, "Hello again! Coffee, the menu, or opening hours?")
    domain.write_text(text, encoding="utf-8")


@dataclass
class Watch:
    """A user chatting every 100 ms, and the invariant sampled every 100 ms."""

    rasa_url: str
    replica_ports: list[int]
    action_url: str
    token: str
    failures: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    samples: int = 0
    sender: str = "user"  # each message starts a conversation: "<sender>-<n>"
    domains: dict[str, frozenset[str]] = field(default_factory=dict)  # model_id -> calls
    models_seen: set[frozenset[str]] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def chat(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                answer = requests.post(f"{self.rasa_url}/webhooks/rest/webhook", timeout=30,
                                       json={"sender": f"{self.sender}-{n}", "message": "hello"})
                if answer.status_code != 200:
                    self.failures.append(f"#{n}: HTTP {answer.status_code}")
                else:
                    self.replies.extend(m.get("text", "") for m in answer.json())
            except requests.RequestException as exc:
                self.failures.append(f"#{n}: {type(exc).__name__}")
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    @contextmanager
    def running(self) -> Iterator[None]:
        """The chat and the sampler, each in a thread, for the `with` block."""
        threads = [threading.Thread(target=self.chat, daemon=True),
                   threading.Thread(target=self.sample, daemon=True)]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=60)

    def assert_clean(self) -> None:
        assert self.failures == [], self.failures
        assert self.violations == [], self.violations[:5]

    def _calls(self, port: int) -> frozenset[str] | None:
        """The custom actions the model of the replica on `port` may call; None
        when nothing there serves a model. Its /status each time, its domain once
        per model (a domain is big: asking it 40 times a second loads the host)."""
        base, auth = f"http://127.0.0.1:{port}", {"token": self.token}
        try:
            status = requests.get(f"{base}/status", params=auth, timeout=5)
            if status.status_code != 200:
                return None
            model = str(status.json().get("model_id"))
            if model not in self.domains:
                domain = requests.get(f"{base}/domain", params=auth, timeout=5,
                                      headers={"Accept": "application/json"})
                domain.raise_for_status()
                self.domains[model] = frozenset(
                    a for a in domain.json().get("actions", []) if a.startswith("action_"))
        except requests.RequestException:
            return None  # not running (or not yet loaded): serves nobody
        return self.domains[model]

    def sample(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            needed: set[str] = set()
            for port in self.replica_ports:  # both port sets: every replica that runs
                calls = self._calls(port)
                if calls is not None:
                    self.models_seen.add(calls)
                    needed |= calls
            try:
                served = {a["name"] for a in requests.get(self.action_url, timeout=5).json()}
            except (requests.RequestException, ValueError) as exc:
                served = set()
                if needed:
                    self.violations.append(f"action service unreachable: {exc}")
            self.samples += 1
            if needed - served:
                self.violations.append(f"sample {self.samples}: {sorted(needed - served)} "
                                       f"not served (serves {sorted(served)})")
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))


@pytest.fixture()
def fleet_host(tmp_path: Path, rasa_bin: Path, swarm: Any, docker_engine: DockerEngine,
               sdk_base_image: str, rasa_image: str, redis_server: RedisServer,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    monkeypatch.setenv("BOT_REDIS_PORT", str(redis_server.port))
    monkeypatch.setenv("RASA_TELEMETRY_ENABLED", "false")
    bare, src = deploy_repo(tmp_path)
    (src / "endpoints.yml").write_text(SHARED_STORES, encoding="utf-8")
    # Below the ephemeral range: HAProxy and the sampler probe both sets all along.
    first, second = probed_ports(2), probed_ports(2)
    while abs(first - second) < 2:
        second = probed_ports(2)
    config = agent_config(
        tmp_path / "agent.yml", repo=bare, branch="main", rasa_command=memo_rasa(rasa_bin),
        pipeline={"test_stories": "tests/none_*.yml"},
        action_server={"target": "swarm", "port": free_port(), "instance": f"fleet{first}",
                       "backend_ports": [free_port(), free_port()], "monitor": 2,
                       "docker_host": docker_engine.base_url},
        image={"repository": "coffeebot-fleet-actions", "base_image": sdk_base_image,
               "docker_host": docker_engine.base_url, "push": False},
        model={"url": f"http://127.0.0.1:{free_port()}", "serving": "swarm",
               "rasa_image": rasa_image, "replicas": 2, "fleet_monitor": 2,
               "fleet_ports": [first, second], "load_timeout": 120},
    )
    try:
        yield config, src
    finally:
        subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(config), "stop"],
                       capture_output=True, timeout=300, env=os.environ.copy())


def slot_of(rasa_url: str, token: str, sender: str) -> Any:
    answer = requests.get(f"{rasa_url}/conversations/{sender}/tracker",
                          params={"token": token}, timeout=30)
    answer.raise_for_status()
    return answer.json()["slots"].get("size")


def test_both_services_roll_on_swarm_keeping_every_action_served_while_users_chat(
        fleet_host: tuple[Path, Path], swarm: Any) -> None:
    config, src = fleet_host
    push_all(src, "coffeebot on a Swarm fleet")
    tick_promoted(config)
    loaded = load_config(config)
    rasa_url = str(loaded["model.url"])
    token = (Path(loaded.state_dir) / "rasa-fleet" / "auth-token").read_text().strip()
    answer = requests.post(f"{rasa_url}/webhooks/rest/webhook", timeout=30,
                           json={"sender": "first", "message": "hello"})
    assert [m["text"] for m in answer.json()] == [GREETING]
    for text in ("hello", "a small coffee please"):
        requests.post(f"{rasa_url}/webhooks/rest/webhook", timeout=30,
                      json={"sender": "customer", "message": text}).raise_for_status()
    assert slot_of(rasa_url, token, "customer") == "small"
    service = swarm.services.get("rasa-gitops-rasa-fleet")
    assert len([t for t in service.tasks() if t["Status"]["State"] == "running"]) == 2
    # The token is a Swarm secret: in no spec, label or environment Swarm shows.
    assert token not in str(service.attrs)

    first, second = (int(base) for base in loaded["model.fleet_ports"])
    watch = Watch(rasa_url, [first, first + 1, second, second + 1],
                  f"http://127.0.0.1:{loaded['action_server.port']}/actions", token)
    add_menu(src)
    push_all(src, "a menu, told by a new custom action")
    with watch.running():
        tick_promoted(config)
        time.sleep(1.0)
    watch.assert_clean()
    assert watch.samples > 100
    # Both models were live during the sampling, the second calling the new action.
    assert frozenset({"action_tell_opening_hours"}) in watch.models_seen
    assert frozenset({"action_tell_opening_hours", "action_tell_menu"}) in watch.models_seen
    assert GREETING in watch.replies
    assert watch.replies[-1] == "Hello again! Coffee, the menu, or opening hours?"
    answer = requests.post(f"{rasa_url}/webhooks/rest/webhook", timeout=30,
                           json={"sender": "menu", "message": "what is on the menu"})
    assert [m["text"] for m in answer.json()] == [MENU]
    # The conversation from before the update goes on with its slot, on any replica.
    assert slot_of(rasa_url, token, "customer") == "small"
    update = swarm.services.get("rasa-gitops-rasa-fleet").attrs["Spec"]["UpdateConfig"]
    assert update["Order"] == "start-first" and update["FailureAction"] == "rollback"
    print(f"{len(watch.replies)} replies, {watch.samples} invariant samples")

    # Release 3's model fails to load (its replica binds its port but has no
    # model, /status 409): Swarm's health check never passes, Swarm rolls back
    # by itself, the switch fails naming why, and no user reached that replica:
    # chatting and sampling go on through the whole failed update.
    fleet = build_targets(loaded).model
    assert isinstance(fleet, SwarmRasaTarget)
    fleet.settings = replace(fleet.settings, load_timeout=15)
    labels = swarm.services.get(fleet.settings.service).attrs["Spec"]["Labels"]
    live = ModelRef("2", labels[LABEL_MODEL], labels[LABEL_LOCATION], labels[LABEL_BOT_DIR])
    broken_dir = config.parent / "broken"
    broken_dir.mkdir()
    broken = replace(live, release_id="3", model_id="corrupt-model",
                     location=str(corrupt_copy(Path(live.location), broken_dir)))
    watch = Watch(rasa_url, watch.replica_ports, watch.action_url, token, sender="later")
    with watch.running(), pytest.raises(
            DeployError, match=r"rolled the Rasa service back.*model_id corrupt-model"):
        fleet.activate(broken, lambda line: None)
    watch.assert_clean()
    assert len(watch.replies) > 20
    assert set(watch.replies) == {"Hello again! Coffee, the menu, or opening hours?"}
    assert fleet.serves(live) and not fleet.serves(broken)
    status = swarm.services.get(fleet.settings.service).attrs["UpdateStatus"]
    assert status["State"] == "rollback_completed"
    print(f"failed update: {len(watch.replies)} replies, {watch.samples} samples")
