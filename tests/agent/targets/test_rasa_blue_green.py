"""Blue/green Rasa servers behind HAProxy: a switch under chat loses no message.

The first tests use real `rasa run` servers, real HAProxy and two light models
of the example bot that greet differently (tests/support/light_models.py), so
each reply says which model answered. The fast ones after them use a stand-in
server (tests/support/fake_rasa_server.py) for what needs many starts: a crash
at each kill point, failed loads and warm-ups, a changed bot config.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.targets.base import DeployError
from agent.targets.local_process import free_port
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from hooks.core.process import alive
from tests.support.ci import need
from tests.support.fake_rasa_server import fake_model, fake_rasa_server
from tests.support.light_models import GREETINGS, corrupt_copy, light_coffeebots
from tests.support.paths import REPO_ROOT
from tests.support.serving import rasa_servers_of, switch_while_chatting


def make_target(state_dir: Path, rasa_bin: Path, url: str = "") -> BlueGreenRasaTarget:
    need(shutil.which("haproxy") is not None, "HAProxy is not installed (apt-get install haproxy)")
    return BlueGreenRasaTarget(
        url=url or f"http://127.0.0.1:{free_port()}", token=None, state_dir=state_dir,
        rasa_argv=[str(rasa_bin)], action_endpoint="http://127.0.0.1:5055/webhook",
        load_timeout=300, drain_timeout=10, warmup=["hello"])


def recorded_pid(record: Path) -> int:
    """The pid a slot record names (its runner's handle: a local process)."""
    return int(json.loads(record.read_text())["handle"]["pid"])


def test_a_switch_under_chat_loses_no_message_leaves_one_server_and_a_bad_load_nothing(
        tmp_path: Path, rasa_bin: Path) -> None:
    target = make_target(tmp_path / "bg", rasa_bin)
    models = light_coffeebots(str(rasa_bin))
    try:
        (bot1, model1), (bot2, model2) = models["one"], models["two"]
        first = target.upload("1", model1, print, bot1)
        target.activate(first, print)
        assert target.talk("someone", "hello") == [GREETINGS["one"]]
        old_pid = recorded_pid(tmp_path / "bg" / "live.json")

        chatter, second = switch_while_chatting(target, "2", model2, bot2, print)
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

        # A model that fails to load leaves the live one serving, and no new server.
        broken = target.upload("3", corrupt_copy(model2, tmp_path), print, bot2)
        with pytest.raises(DeployError, match=r"could not load the model|exited while loading"):
            target.activate(broken, print)
        assert target.live_model_id() == second.model_id
        assert target.talk("someone new", "hello") == [GREETINGS["two"]]
        assert len(rasa_servers_of(tmp_path / "bg")) == 1
    finally:
        target.stop_all(print)
    assert rasa_servers_of(tmp_path / "bg") == []
    assert not target.proxy.running()


# ------------------------------------------------------- with the stand-in


def fast_target(tmp_path: Path, url: str = "", warmup: tuple[str, ...] = ("hello",)
                ) -> BlueGreenRasaTarget:
    need(shutil.which("haproxy") is not None, "HAProxy is not installed (apt-get install haproxy)")
    return BlueGreenRasaTarget(
        url=url or f"http://127.0.0.1:{free_port()}", token=None, state_dir=tmp_path / "bg",
        rasa_argv=[str(fake_rasa_server(tmp_path / "bin"))],
        action_endpoint="http://127.0.0.1:5055/webhook", load_timeout=30, drain_timeout=5,
        warmup=warmup)


def niceness(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[16])


ACTIVATE_M2 = """
import sys
from pathlib import Path
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
url, state_dir, rasa, model = sys.argv[1:]
target = BlueGreenRasaTarget(url=url, token=None, state_dir=Path(state_dir), rasa_argv=[rasa],
                             action_endpoint="http://127.0.0.1:5055/webhook", load_timeout=30)
target.activate(target.upload("2", Path(model), print), print)
"""


@pytest.mark.parametrize(("point", "serving"), [
    ("rasa.started", "m1"), ("rasa.warmed", "m1"), ("rasa.switched", "m2")])
def test_after_a_crash_at_each_point_of_the_switch_one_server_serves(
        tmp_path: Path, point: str, serving: str) -> None:
    target = fast_target(tmp_path)
    try:
        target.activate(target.upload("1", fake_model(tmp_path / "m1.tar.gz", "m1"), print),
                        print)
        m2 = fake_model(tmp_path / "m2.tar.gz", "m2")
        died = subprocess.run(
            [sys.executable, "-c", ACTIVATE_M2, target.url, str(target.state_dir),
             str(tmp_path / "bin" / "rasa"), str(m2)],
            env={**os.environ, "RASA_GITOPS_KILL_AT": point, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True, text=True, timeout=60)
        assert died.returncode == -signal.SIGKILL, died.stdout + died.stderr
        new = recorded_pid(target.state_dir / "green.json")
        # A new server loads at a lower CPU priority and gets the agent's back when warmed.
        assert niceness(new) == (10 if point == "rasa.started" else os.getpriority(
            os.PRIO_PROCESS, 0))
        restarted = fast_target(tmp_path, url=target.url)
        restarted.ensure_server(print)
        assert restarted.live_model_id() == serving
        assert len(rasa_servers_of(target.state_dir)) == 1
        # The next switch works from there.
        restarted.activate(restarted.upload("3", fake_model(tmp_path / "m3.tar.gz", "m3"),
                                            print), print)
        assert restarted.talk("someone", "hello") == ["model m3"]
        assert len(rasa_servers_of(target.state_dir)) == 1
    finally:
        target.stop_all(print)
    assert rasa_servers_of(target.state_dir) == []


def test_a_failed_load_or_warm_up_leaves_the_old_server_serving(tmp_path: Path) -> None:
    target = fast_target(tmp_path)
    try:
        target.activate(target.upload("1", fake_model(tmp_path / "m1.tar.gz", "m1"), print),
                        print)
        broken = fake_model(tmp_path / "bad.tar.gz", "bad", loadable=False)
        with pytest.raises(DeployError, match="could not load the model of release 3"):
            target.activate(target.upload("3", broken, print), print)
        failing = fast_target(tmp_path, url=target.url, warmup=("fail",))
        with pytest.raises(DeployError, match="warm-up failed: 'fail': REST channel: HTTP 500"):
            failing.activate(failing.upload("2", fake_model(tmp_path / "m2.tar.gz", "m2"),
                                            print), print)
        assert target.live_model_id() == "m1"
        assert target.talk("someone", "hello") == ["model m1"]
        assert len(rasa_servers_of(target.state_dir)) == 1
        assert all(target.secrets()[0] not in line
                   for line in (tmp_path / "bg" / "live.json").read_text().splitlines())
    finally:
        target.stop_all(print)


def test_a_changed_bot_config_starts_a_new_server_for_the_same_model(tmp_path: Path) -> None:
    bot = tmp_path / "bot"
    bot.mkdir()
    (bot / "credentials.yml").write_text("rest:\n", encoding="utf-8")
    target = fast_target(tmp_path)
    model = fake_model(tmp_path / "m1.tar.gz", "m1")
    try:
        target.activate(target.upload("1", model, print, bot), print)
        first = recorded_pid(tmp_path / "bg" / "live.json")
        target.activate(target.upload("1", model, print, bot), print)
        assert recorded_pid(tmp_path / "bg" / "live.json") == first
        (bot / "credentials.yml").write_text("rest:\nsocketio:\n", encoding="utf-8")
        target.activate(target.upload("2", model, print, bot), print)
        assert recorded_pid(tmp_path / "bg" / "live.json") != first
        assert not alive(first)
        assert target.live_model_id() == "m1"
    finally:
        target.stop_all(print)
