"""The front proxy (real HAProxy) switches and drains with no request lost.

Upstreams are two tiny threaded Python HTTP servers that say their name, so
each test sees exactly which slot answered.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from agent.targets.base import DeployError
from agent.targets.front_proxy import FrontProxy, Upstream
from agent.targets.haproxy_config import Routes, parse, render
from agent.targets.local_process import free_port
from tests.support.ci import need
from tests.support.tiny_http import tiny_server

HOST = "127.0.0.1"


@contextmanager
def running_proxy(state_dir: Path, *, standby: bool = False) -> Iterator[FrontProxy]:
    need(shutil.which("haproxy") is not None, "HAProxy is not installed (apt-get install haproxy)")
    proxy = FrontProxy(listen_host=HOST, listen_port=free_port(), state_dir=state_dir,
                       standby=standby)
    assert proxy.ensure_running(lambda line: None)
    try:
        yield proxy
    finally:
        proxy.stop(lambda line: None)


class Client(threading.Thread):
    """Sends a request through the proxy every 10 ms and records each answer."""

    def __init__(self, url: str, keep_alive: bool) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.session = requests.Session() if keep_alive else None
        self.answers: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                if self.session is not None:
                    answer = self.session.get(self.url, timeout=5)
                else:
                    answer = requests.get(self.url, timeout=5,
                                          headers={"Connection": "close"})
                if answer.status_code == 200:
                    self.answers.append((time.monotonic(), answer.text))
                else:
                    self.failures.append(f"HTTP {answer.status_code}")
            except requests.RequestException as exc:
                self.failures.append(type(exc).__name__)
            time.sleep(0.01)

    def answered_since(self, since: float) -> list[str]:
        return [text for at, text in list(self.answers) if at > since]

    def wait_for(self, count: int, since: float, timeout: float = 20.0) -> None:
        """Until `count` answers came after `since`: a fixed sleep counts fewer
        on a loaded machine, where this thread runs less often."""
        deadline = time.monotonic() + timeout
        while len(self.answered_since(since)) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "new-connections"])
def test_switch_under_a_stream_of_requests_loses_none(tmp_path: Path, keep_alive: bool) -> None:
    with tiny_server("blue") as blue, tiny_server("green") as green, \
            running_proxy(tmp_path / "proxy") as proxy:
        assert proxy.live() is None
        assert proxy.switch(Upstream("blue", HOST, blue), print) is None
        client = Client(f"http://{HOST}:{proxy.listen_port}/webhooks/rest/webhook", keep_alive)
        client.start()
        time.sleep(0.5)
        switching = time.monotonic()
        old = proxy.switch(Upstream("green", HOST, green), print)
        switched = time.monotonic()
        assert old == Upstream("blue", HOST, blue)
        proxy.drain(old, timeout=10, log=print)
        # A request answered just after the switch may have been sent just before it.
        client.wait_for(30, since=switched + 0.05)
        client.stop()
    assert client.failures == []
    before = [text for at, text in client.answers if at < switching]
    after = client.answered_since(switched + 0.05)
    assert before and set(before) == {"blue"}
    assert len(after) >= 30 and set(after) == {"green"}
    assert proxy.live() is None  # stopped


def test_a_slow_request_on_the_old_slot_completes_before_it_goes_to_maint(
        tmp_path: Path) -> None:
    with tiny_server("blue") as blue, tiny_server("green") as green, \
            running_proxy(tmp_path / "proxy") as proxy:
        proxy.switch(Upstream("blue", HOST, blue), print)
        url = f"http://{HOST}:{proxy.listen_port}"
        slow: list[str] = []
        sent: list[float] = []

        def call_slow() -> None:
            sent.append(time.monotonic())
            slow.append(requests.get(f"{url}/slow?seconds=1.5", timeout=10).text)

        caller = threading.Thread(target=call_slow)
        caller.start()
        time.sleep(0.3)  # the slow request is in flight on blue
        old = proxy.switch(Upstream("green", HOST, green), print)
        assert old is not None
        assert requests.get(url, timeout=5).text == "green"
        assert proxy.sessions("blue") == 1
        proxy.drain(old, timeout=10, log=print)
        drained = time.monotonic()
        caller.join(timeout=10)
        assert slow == ["blue"]
        # The drain waited for the request in flight: blue answered it no sooner
        # than 1.5 s after it was sent. (Not "the client saw the answer before the
        # drain returned": under load the caller's thread may run a moment later.)
        assert drained - sent[0] >= 1.5
        assert proxy._servers()[("blue", "rasa")][1] == "maint"
        assert proxy.live() == Upstream("green", HOST, green)


def test_drain_timeout_cuts_what_still_runs(tmp_path: Path) -> None:
    with tiny_server("blue") as blue, tiny_server("green") as green, \
            running_proxy(tmp_path / "proxy") as proxy:
        proxy.switch(Upstream("blue", HOST, blue), print)
        url = f"http://{HOST}:{proxy.listen_port}"
        outcome: list[str] = []

        def call_slow() -> None:
            try:
                outcome.append(requests.get(f"{url}/slow?seconds=5", timeout=10).text)
            except requests.RequestException as exc:
                outcome.append(type(exc).__name__)

        caller = threading.Thread(target=call_slow)
        caller.start()
        time.sleep(0.3)
        old = proxy.switch(Upstream("green", HOST, green), print)
        assert old is not None
        lines: list[str] = []
        started = time.monotonic()
        proxy.drain(old, timeout=0.5, log=lines.append)
        assert time.monotonic() - started < 3
        assert any("cut" in line for line in lines)
        caller.join(timeout=10)
        assert outcome and outcome[0] != "blue"
        assert proxy.sessions("blue") == 0


def test_the_proxy_outlives_its_python_object_and_restarts_on_the_live_slot(
        tmp_path: Path) -> None:
    with tiny_server("blue") as blue, tiny_server("green") as green, \
            running_proxy(tmp_path / "proxy") as first:
        first.switch(Upstream("blue", HOST, blue), print)
        first.switch(Upstream("green", HOST, green), print)
        port = first.listen_port
        del first
        second = FrontProxy(listen_host=HOST, listen_port=port, state_dir=tmp_path / "proxy")
        assert second.running()
        assert second.ensure_running(print) is False
        assert second.live() == Upstream("green", HOST, green)
        assert requests.get(f"http://{HOST}:{port}/", timeout=5).text == "green"
        # A crashed HAProxy comes back from its rewritten config on the live slot.
        second.stop(print)
        assert not second.running()
        assert second.ensure_running(print) is True
        assert second.live() == Upstream("green", HOST, green)
        assert requests.get(f"http://{HOST}:{port}/", timeout=5).text == "green"
        # A new stable port (model.url changed) is taken at the next start.
        second.stop(print)
        moved = FrontProxy(listen_host=HOST, listen_port=free_port(),
                           state_dir=tmp_path / "proxy")
        assert moved.ensure_running(print) is True
        assert requests.get(f"http://{HOST}:{moved.listen_port}/", timeout=5).text == "green"
        moved.stop(print)


def test_a_websocket_upgrade_passes_through(tmp_path: Path) -> None:
    with tiny_server("blue") as blue, running_proxy(tmp_path / "proxy") as proxy:
        proxy.switch(Upstream("blue", HOST, blue), print)
        with socket.create_connection((HOST, proxy.listen_port), timeout=5) as sock:
            sock.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                         b"Host: bot\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 101")
            sock.sendall(b"ping")
            assert sock.recv(4096) == b"blue:ping"
            assert proxy.sessions("blue") == 1


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    need(shutil.which("haproxy") is not None, "HAProxy is not installed (apt-get install haproxy)")
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        proxy = FrontProxy(listen_host=HOST, listen_port=port, state_dir=tmp_path / "proxy")
        with pytest.raises(DeployError, match=f"port {port} .*already in use"):
            proxy.ensure_running(print)
        assert not proxy.running()


def test_a_deep_work_dir_gets_its_admin_socket_in_a_short_private_folder(
        tmp_path: Path) -> None:
    # HAProxy refuses a `stats socket` path over 97 bytes; a real work_dir can be
    # deeper (found by the agent's blue/green pipeline test under pytest's tmp).
    deep = tmp_path / ("d" * 60) / "work" / "rasa-blue-green" / "proxy"
    with running_proxy(deep) as proxy, tiny_server("one") as port:
        assert not proxy.socket_path.is_relative_to(deep)
        assert proxy.socket_path.parent.stat().st_mode & 0o777 == 0o700
        proxy.switch(Upstream("blue", HOST, port), lambda line: None)
        answer = requests.get(f"http://{HOST}:{proxy.listen_port}/", timeout=5)
        assert answer.text == "one"
        again = FrontProxy(listen_host=HOST, listen_port=proxy.listen_port, state_dir=deep)
        assert again.socket_path == proxy.socket_path
        assert again.live() == Upstream("blue", HOST, port)


def test_a_standby_takes_the_requests_the_moment_the_live_server_dies_and_only_then(
        tmp_path: Path) -> None:
    with tiny_server("green") as green, \
            running_proxy(tmp_path / "proxy", standby=True) as proxy:
        url = f"http://{HOST}:{proxy.listen_port}/"
        client = Client(url, keep_alive=False)
        with tiny_server("blue") as blue:
            proxy.switch(Upstream("blue", HOST, blue), print)
            proxy.set_standby(Upstream("green", HOST, green), print)
            assert proxy.routes() == (Upstream("blue", HOST, blue), Upstream("green", HOST, green))
            client.start()
            time.sleep(1.0)
            assert {text for _, text in client.answers} == {"blue"}  # never both
        died = time.monotonic()  # blue's port now refuses connections
        time.sleep(2.0)
        client.stop()
        # Only the one request the dying server had taken may fail (HAProxy can't
        # resend what was sent); none finds no server (503) or no answer.
        assert client.failures in ([], ["HTTP 502"]), client.failures
        took_over = min(at for at, text in client.answers if text == "green")
        assert took_over - died < 1.5, took_over - died
        assert {text for at, text in client.answers if at > took_over} == {"green"}
        # A restarted HAProxy comes back with the standby armed (the config is
        # rewritten at every change), and disarming it is kept too.
        proxy.stop(print)
        assert proxy.ensure_running(print) is True
        assert proxy.routes() == (Upstream("blue", HOST, blue), Upstream("green", HOST, green))
        proxy.set_standby(None, print)
        assert proxy.routes()[1] is None
        # A switch to the standby's slot (the agent's take-over) leaves no
        # standby armed until the agent arms a new one.
        proxy.switch(Upstream("green", HOST, green), print)
        assert proxy.routes() == (Upstream("green", HOST, green), None)
        assert requests.get(url, timeout=5).text == "green"


def test_the_config_reads_back_what_it_was_written_with(tmp_path: Path) -> None:
    live, old, spare = (Upstream("green", HOST, 7001), Upstream("blue", HOST, 7002),
                        Upstream("blue", HOST, 7003))

    def written(routes: Routes, standby: bool) -> str:
        return render(socket_path=tmp_path / "admin.sock", listen_host=HOST, listen_port=7000,
                      map_file=tmp_path / "route.map", routes=routes, standby=standby)

    armed = written(Routes(live, old, spare), standby=True)
    assert parse(armed, "green") == Routes(live, old, spare)
    # Only the live backend's backup entry is out of maint; death is a refused
    # connect (TCP checks, no HTTP check a busy Rasa would fail).
    assert armed.count(" backup\n") == 1 and armed.count(" backup disabled\n") == 1
    assert "httpchk" not in armed and "observe layer4" in armed
    assert parse(written(Routes(live, old, None), standby=True), "green") == Routes(live, old)
    plain = written(Routes(live, old, spare), standby=False)
    assert "standby" not in plain and "check" not in plain and "redispatch" not in plain
    assert parse(plain, "green") == Routes(live, old)
    assert parse(written(Routes(), standby=True), "blue") == Routes()



def test_a_proxy_started_without_standby_entries_switches_and_gets_them_at_its_restart(
        tmp_path: Path) -> None:
    # HAProxy outlives the agent: one started before model.standby was on keeps
    # serving and switching; the backup entries come with its next start.
    with tiny_server("blue") as blue, tiny_server("green") as green, \
            running_proxy(tmp_path / "proxy") as old:
        old.switch(Upstream("blue", HOST, blue), print)
        new = FrontProxy(listen_host=HOST, listen_port=old.listen_port,
                         state_dir=tmp_path / "proxy", standby=True)
        assert new.ensure_running(print) is False and not new.has_standby_entries()
        with pytest.raises(DeployError, match="no standby entries"):
            new.set_standby(Upstream("green", HOST, green), print)
        new.switch(Upstream("green", HOST, green), print)
        new.switch(Upstream("blue", HOST, blue), print)
        new.stop(print)
        assert new.ensure_running(print) is True and new.has_standby_entries()
        assert new.live() == Upstream("blue", HOST, blue)
        new.set_standby(Upstream("green", HOST, green), print)
        assert new.routes() == (Upstream("blue", HOST, blue), Upstream("green", HOST, green))
