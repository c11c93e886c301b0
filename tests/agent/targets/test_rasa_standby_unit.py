"""The blue/green target's warm standby, fast: a stand-in Rasa server
(tests/support/fake_rasa_server.py) and the front proxy in memory
(tests/support/memory_proxy.py). HAProxy's own failover to the armed standby is
tests/agent/targets/test_front_proxy.py's; the whole thing with real Rasa and
the daemon is tests/reliability/test_supervision.py's.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from agent.targets.front_proxy import Upstream
from agent.targets.local_process import free_port
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from agent.targets.rasa_standby import FAILED, NOTHING, READY, STANDBY_PART, STARTED
from hooks.core.process import alive
from tests.support.fake_rasa_server import fake_model, fake_rasa_server
from tests.support.memory_proxy import MemoryProxy
from tests.support.serving import rasa_servers_of


def standby_target(tmp_path: Path) -> tuple[BlueGreenRasaTarget, MemoryProxy]:
    target = BlueGreenRasaTarget(
        url=f"http://127.0.0.1:{free_port()}", token=None, state_dir=tmp_path / "bg",
        rasa_argv=[str(fake_rasa_server(tmp_path / "bin"))],
        action_endpoint="http://127.0.0.1:5055/webhook", load_timeout=30, drain_timeout=0.1,
        standby=True)
    proxy = MemoryProxy(standby=True)
    target.proxy = proxy  # type: ignore[assignment]
    return target, proxy


def pid_in(target: BlueGreenRasaTarget, slot: str) -> int:
    record = json.loads((target.state_dir / f"{slot}.json").read_text(encoding="utf-8"))
    return int(record["handle"]["pid"])


def step_until_ready(target: BlueGreenRasaTarget) -> list[str]:
    """keep_standby as the supervisor calls it, once a round, until it is armed."""
    done = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        what, detail = target.keep_standby(print)
        assert what != FAILED, detail
        if what != NOTHING:
            done.append(what)
        if what == READY:
            return done
        time.sleep(0.1)
    raise AssertionError(f"no standby armed within 30 s: {done}")


def test_a_standby_is_armed_takes_over_a_dead_live_server_and_gives_way_to_a_release(
        tmp_path: Path) -> None:
    target, proxy = standby_target(tmp_path)
    state = target.state_dir
    try:
        target.activate(target.upload("1", fake_model(tmp_path / "m1.tar.gz", "m1"), print),
                        print)
        live = proxy.upstream
        assert live is not None and len(rasa_servers_of(state)) == 1
        # Started without waiting, then armed once it loaded and was warmed.
        assert step_until_ready(target) == [STARTED, READY]
        armed = proxy.armed
        assert armed is not None and armed.slot != live.slot
        spare = pid_in(target, armed.slot)
        assert target.keep_standby(print) == (NOTHING, "")  # armed: nothing to do
        parts = {h.part: h.state for h in target.health()}
        assert parts == {"front proxy": "alive", "rasa server": "alive", STANDBY_PART: "alive"}
        assert target.serves(target.upload("1", tmp_path / "m1.tar.gz", print))

        # The live server dies: the standby's slot becomes the live one at once,
        # with no new server started for it.
        os.killpg(pid_in(target, live.slot), signal.SIGKILL)
        time.sleep(0.2)
        assert {h.part: h.state for h in target.health()}["rasa server"] == "dead"
        assert target.ensure_server(print) is True
        assert proxy.upstream == Upstream(armed.slot, armed.host, armed.port)
        assert proxy.armed is None and proxy.drained == [live]
        assert rasa_servers_of(state) == [spare]
        assert target.live_file.read_text() == (state / f"{armed.slot}.json").read_text()
        assert not (state / f"{live.slot}.json").exists()
        # The freed slot gets the next standby.
        assert step_until_ready(target) == [STARTED, READY]
        assert len(rasa_servers_of(state)) == 2

        # A release stops the standby first (the idle slot is its server's), and
        # after the switch one server runs until the daemon arms the next.
        target.activate(target.upload("2", fake_model(tmp_path / "m2.tar.gz", "m2"), print),
                        print)
        assert len(rasa_servers_of(state)) == 1 and proxy.armed is None
        assert not alive(spare)
        assert step_until_ready(target) == [STARTED, READY]
        armed = proxy.armed
        assert armed is not None and armed != proxy.upstream
        standby_record = json.loads((state / f"{armed.slot}.json").read_text())
        assert standby_record["model_id"] == "m2"
    finally:
        target.stop_all(print)
    assert rasa_servers_of(state) == []


def test_a_standby_that_dies_is_disarmed_and_one_that_cannot_start_is_failed(
        tmp_path: Path) -> None:
    target, proxy = standby_target(tmp_path)
    try:
        target.activate(target.upload("1", fake_model(tmp_path / "m1.tar.gz", "m1"), print),
                        print)
        step_until_ready(target)
        assert proxy.armed is not None
        os.killpg(pid_in(target, proxy.armed.slot), signal.SIGKILL)
        time.sleep(0.2)
        assert {h.part: h.state for h in target.health()}[STANDBY_PART] == "dead"
        assert target.ensure_server(print) is True  # the restart repair disarms it
        assert proxy.armed is None and len(rasa_servers_of(target.state_dir)) == 1
        # The live model's file gone: no standby can start, said so (the
        # supervisor journals it and backs off), the live server untouched.
        (tmp_path / "m1.tar.gz").unlink()
        what, detail = target.keep_standby(print)
        assert what == FAILED and "m1.tar.gz is gone" in detail
        assert len(rasa_servers_of(target.state_dir)) == 1
    finally:
        target.stop_all(print)
