"""The Swarm fleet's HAProxy (agent/targets/fleet_proxy.py), real, in front of
tiny HTTP servers standing in for replicas on two "nodes" (two loopback
addresses): the replicas' addresses it is given survive an agent restart, and
a change of them restarts it with the new ones."""

from __future__ import annotations

import json
import shutil
import stat
import time
from pathlib import Path

import requests

from agent.secrets import Secret
from agent.targets.fleet_proxy import FleetProxy
from agent.targets.local_process import free_port
from tests.support.ci import need
from tests.support.tiny_http import tiny_server

TOKEN = "fleet-proxy-token-1f3a"


def answers(url: str, wanted: str, seconds: float = 15.0) -> bool:
    """Whether `url` answers `wanted` within `seconds` (HAProxy's checks need a moment)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).text == wanted:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


def test_the_replicas_addresses_survive_a_restart_and_a_change_restarts_it(
        tmp_path: Path) -> None:
    need(shutil.which("haproxy") is not None, "HAProxy is not installed (apt-get install haproxy)")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"

    def proxy() -> FleetProxy:  # as the agent makes it at each start
        return FleetProxy(listen_host="127.0.0.1", listen_port=port, state_dir=tmp_path,
                          backends=[("127.0.0.1", 1)], token=Secret(TOKEN, "test"))

    first = proxy()
    lines: list[str] = []
    with tiny_server("node-a", host="127.0.0.1") as node_a, \
            tiny_server("node-b", host="127.0.0.2") as node_b:
        try:
            first.use_backends([("127.0.0.1", node_a)], lines.append)
            first.wait_for_replicas(1)
            assert requests.get(url, timeout=5).text == "node-a"
            assert stat.S_IMODE(first.backends_file.stat().st_mode) == 0o600
            assert json.loads(first.backends_file.read_text()) == [["127.0.0.1", node_a]]
            # The agent restarts: the same addresses, so HAProxy is left alone.
            again = proxy()
            assert again.backends == [("127.0.0.1", node_a)]
            assert again.ensure_running(lines.append) is False
            # A node joins and the first one's replica moves: HAProxy restarts.
            again.use_backends([("127.0.0.1", node_a + 1), ("127.0.0.2", node_b)],
                               lines.append)
            assert any("restarting it" in line for line in lines)
            assert answers(url, "node-b")
            assert TOKEN not in "\n".join(lines)
        finally:
            first.stop(lines.append)
