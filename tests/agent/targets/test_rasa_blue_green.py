"""Blue/green Rasa servers behind HAProxy: a switch under chat loses no message.

Real `rasa run` servers, real HAProxy, two light models of the example bot
that greet differently (tests/support/light_models.py), so each reply says
which model answered.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import threading
import time
from pathlib import Path

import pytest
import requests

from agent.targets.base import DeployError
from agent.targets.local_process import free_port
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from hooks.core.process import alive
from tests.support.ci import need
from tests.support.light_models import GREETINGS, light_coffeebots


def make_target(state_dir: Path, rasa_bin: Path, url: str = "") -> BlueGreenRasaTarget:
    need(shutil.which("haproxy") is not None, "HAProxy is not installed (apt-get install haproxy)")
    return BlueGreenRasaTarget(
        url=url or f"http://127.0.0.1:{free_port()}", token=None, state_dir=state_dir,
        rasa_argv=[str(rasa_bin)], action_endpoint="http://127.0.0.1:5055/webhook",
        load_timeout=300, drain_timeout=10, warmup=["hello"])


def rasa_servers_of(state_dir: Path) -> list[int]:
    """Pids of every `rasa run` whose config lives in `state_dir` (this target's)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = b"--enable-api" in argv and any(str(state_dir).encode() in a for a in argv)
        if ours and alive(int(proc.name)):
            found.append(int(proc.name))
    return found


class Chatter(threading.Thread):
    """A user saying hello through the stable port every 100 ms."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{url}/webhooks/rest/webhook"
        self.replies: list[str] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                answer = requests.post(self.url, json={"sender": "chatter", "message": "hello"},
                                       timeout=10)
                if answer.status_code == 200:
                    self.replies.append(" ".join(item.get("text", "") for item in answer.json()))
                else:
                    self.failures.append(f"HTTP {answer.status_code}")
            except requests.RequestException as exc:
                self.failures.append(type(exc).__name__)
            time.sleep(0.1)


def test_a_switch_under_chat_loses_no_message_and_leaves_one_server(
        tmp_path: Path, rasa_bin: Path) -> None:
    target = make_target(tmp_path / "bg", rasa_bin)
    models = light_coffeebots(str(rasa_bin))
    try:
        (bot1, model1), (bot2, model2) = models["one"], models["two"]
        first = target.upload("1", model1, print, bot1)
        target.activate(first, print)
        assert target.talk("someone", "hello") == [GREETINGS["one"]]
        old_pid = json.loads((tmp_path / "bg" / "live.json").read_text())["pid"]

        chatter = Chatter(target.url)
        chatter.start()
        time.sleep(1.0)
        second = target.upload("2", model2, print, bot2)
        target.activate(second, print)
        time.sleep(1.0)
        chatter.done.set()
        chatter.join(timeout=15)

        assert chatter.failures == []
        assert chatter.replies[0] == GREETINGS["one"]
        assert chatter.replies[-1] == GREETINGS["two"]
        assert target.live_model_id() == second.model_id
        assert not alive(old_pid)
        assert len(rasa_servers_of(tmp_path / "bg")) == 1
        # An agent restart finds the live server and starts nothing.
        again = make_target(tmp_path / "bg", rasa_bin, url=target.url)
        assert again.ensure_server(print) is False
        assert again.live_model_id() == second.model_id
    finally:
        target.stop_all(print)
    assert rasa_servers_of(tmp_path / "bg") == []
    assert not target.proxy.running()


def corrupt_copy(model: Path, dest: Path) -> Path:
    """A model file whose metadata names a new model_id but holds nothing else."""
    with tarfile.open(model, "r:gz") as archive:
        member = archive.extractfile("metadata.json")
        assert member is not None
        metadata = json.load(member)
    metadata["model_id"] = "corrupt-model"
    (dest / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    path = dest / "corrupt.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        archive.add(dest / "metadata.json", arcname="metadata.json")
    return path


def test_a_model_that_fails_to_load_leaves_the_old_one_serving(
        tmp_path: Path, rasa_bin: Path) -> None:
    target = make_target(tmp_path / "bg", rasa_bin)
    models = light_coffeebots(str(rasa_bin))
    try:
        bot1, model1 = models["one"]
        target.activate(target.upload("1", model1, print, bot1), print)
        broken = target.upload("3", corrupt_copy(model1, tmp_path), print, bot1)
        with pytest.raises(DeployError, match=r"could not load the model|exited while loading"):
            target.activate(broken, print)
        assert target.live_model_id() == target.upload("1", model1, print).model_id
        assert target.talk("someone", "hello") == [GREETINGS["one"]]
        assert len(rasa_servers_of(tmp_path / "bg")) == 1
    finally:
        target.stop_all(print)
