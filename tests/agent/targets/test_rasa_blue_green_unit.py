"""The blue/green target, fast: stand-in Rasa servers behind the front proxy in memory.

Real processes (tests/support/fake_rasa_server.py starts in half a second) and
the target's own records, but no HAProxy (tests/support/memory_proxy.py), so a
proxy failure can be made at any point. Each test pins a defect found in review:
a clean-up failure after the switch undid a release that served fine; a
config-only release was not told apart from the one serving; a recorded pid
was trusted after it may have become another program's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from agent.targets.base import ModelRef
from agent.targets.local_process import free_port
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from hooks.core.pid_identity import started_at
from hooks.core.process import alive, stop
from tests.support.fake_rasa_server import fake_model, fake_rasa_server
from tests.support.memory_proxy import MemoryProxy


def target_for(tmp_path: Path) -> tuple[BlueGreenRasaTarget, MemoryProxy]:
    target = BlueGreenRasaTarget(
        url=f"http://127.0.0.1:{free_port()}", token=None, state_dir=tmp_path / "bg",
        rasa_argv=[str(fake_rasa_server(tmp_path / "bin"))],
        action_endpoint="http://127.0.0.1:5055/webhook", load_timeout=30, drain_timeout=0.1)
    proxy = MemoryProxy()
    target.proxy = proxy  # type: ignore[assignment]
    return target, proxy


def record(target: BlueGreenRasaTarget, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((target.state_dir / name).read_text())
    return data


def pid_of(server: dict[str, object]) -> int:
    """The pid a slot record names (its runner's handle: a local process)."""
    handle = server["handle"]
    assert isinstance(handle, dict)
    return int(handle["pid"])


def bot_with(tmp_path: Path, credentials: str) -> Path:
    folder = tmp_path / "bot"
    folder.mkdir(exist_ok=True)
    (folder / "credentials.yml").write_text(credentials, encoding="utf-8")
    return folder


def test_a_failure_after_the_switch_is_logged_not_raised_and_the_old_server_stops(
        tmp_path: Path) -> None:
    target, proxy = target_for(tmp_path)
    lines: list[str] = []
    try:
        target.activate(target.upload("1", fake_model(tmp_path / "m1.tar.gz", "m1"), print),
                        print)
        old = record(target, "live.json")
        proxy.fail.add("drain")  # HAProxy's runtime API fails once the new server serves
        second = target.upload("2", fake_model(tmp_path / "m2.tar.gz", "m2"), print)
        target.activate(second, lines.append)  # the release IS live: no DeployError
        new = record(target, "live.json")
        assert (new["release_id"], new["model_id"]) == ("2", "m2")
        assert proxy.upstream is not None and proxy.upstream.port == new["port"]
        assert alive(pid_of(new))
        assert not alive(pid_of(old))  # stopped best-effort, after drain_timeout
        assert any("could not drain the old Rasa server" in line for line in lines)
        assert target.serves(second)
    finally:
        target.stop_all(print)


def test_serves_tells_a_config_only_release_from_the_one_serving(tmp_path: Path) -> None:
    target, _ = target_for(tmp_path)
    model = fake_model(tmp_path / "m1.tar.gz", "m1")
    bot = bot_with(tmp_path, "rest:\n")
    try:
        first = target.upload("1", model, print, bot)
        assert not target.serves(first)  # nothing serves yet
        target.activate(first, print)
        assert target.serves(first)
        assert target.serves(target.upload("2", model, print, bot))  # same model, same config
        bot_with(tmp_path, "rest:\nsocketio:\n")
        changed = target.upload("3", model, print, bot)
        assert not target.serves(changed)
        target.activate(changed, print)
        assert target.serves(changed)
        assert not target.serves(target.upload("4", fake_model(tmp_path / "m2.tar.gz", "m2"),
                                               print, bot))
    finally:
        target.stop_all(print)


def test_a_slot_record_whose_pid_now_names_another_process_is_never_signalled(
        tmp_path: Path) -> None:
    target, _ = target_for(tmp_path)
    # The pid of a stranger, as after a reboot: another program got the recorded pid.
    stranger = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        target.activate(target.upload("1", fake_model(tmp_path / "m1.tar.gz", "m1"), print),
                        print)
        live = record(target, "live.json")
        slot_file = target.state_dir / f"{live['slot']}.json"
        handle = record(target, slot_file.name)["handle"]
        assert isinstance(handle, dict)
        assert int(handle["started"]) == started_at(pid_of(live))
        stop(pid_of(live), timeout=20)  # the "reboot": our server is gone
        # The record as a reboot leaves it: its pid names the stranger, which started
        # at another time (one tick before it here: both may start within a 10 ms tick).
        earlier = (started_at(stranger.pid) or 1) - 1
        slot_file.write_text(json.dumps(
            {**live, "handle": {"pid": str(stranger.pid), "started": str(earlier)}}),
            encoding="utf-8")
        assert not target.serves(target.upload("1", tmp_path / "m1.tar.gz", print))
        target.stop_all(print)
        assert stranger.poll() is None  # still running: not ours to stop
        assert not slot_file.exists()
    finally:
        target.stop_all(print)
        stranger.kill()
        stranger.wait()


def test_a_record_without_a_start_time_still_loads_and_is_trusted(tmp_path: Path) -> None:
    # Records written before the start time was kept: the server they name must
    # still be found (and stopped), or an upgrade would orphan the live server.
    target, proxy = target_for(tmp_path)
    try:
        target.activate(target.upload("1", fake_model(tmp_path / "m1.tar.gz", "m1"), print),
                        print)
        live = record(target, "live.json")
        slot_file = target.state_dir / f"{live['slot']}.json"
        # As session 3 wrote them: the pid at the top level, no start time, no host.
        old_style = {k: v for k, v in live.items() if k not in ("handle", "host")}
        slot_file.write_text(json.dumps({**old_style, "pid": pid_of(live)}), encoding="utf-8")
        assert target.serves(ModelRef("1", "m1", str(tmp_path / "m1.tar.gz")))
        target.stop_all(print)
        assert not alive(pid_of(live))
        assert not proxy.running()
    finally:
        target.stop_all(print)
