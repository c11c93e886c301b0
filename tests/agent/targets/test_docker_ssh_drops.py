"""An SSH host that drops the connection mid-handshake (sshd killed, say):
connect_ssh calls it unreachable, worth another try, and a Docker request
through the tunnel fails at once instead of waiting out its read timeout.

A stand-in server that speaks only the first line of SSH is enough here: what
is tested is what paramiko raises when the peer goes away, not SSH itself
(the real sshd is in tests/reliability/test_faults_docker.py).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.targets.docker.engine import EngineUnreachable
from agent.targets.docker.ssh import SshEngine, SshSettings, connect_ssh


@pytest.fixture
def dropping_host() -> Iterator[int]:
    """A loopback port whose server sends an SSH banner, then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            # Read what the client sends (its banner, its key exchange) so the
            # close is a clean end of stream, as from a killed sshd, not a reset.
            conn.settimeout(0.3)
            with contextlib.suppress(OSError):
                while conn.recv(65536):
                    pass
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def settings(port: int, tmp_path: Path) -> SshSettings:
    return SshSettings(host="127.0.0.1", port=port, key_file=tmp_path / "no-key",
                       known_hosts=tmp_path / "known_hosts", allow_unknown_hosts=True,
                       timeout=5.0)


def test_a_connection_dropped_in_the_handshake_is_unreachable_not_a_crash(
        dropping_host: int, tmp_path: Path) -> None:
    with pytest.raises(EngineUnreachable, match="closed the connection"):
        connect_ssh(settings(dropping_host, tmp_path))


def test_a_tunnel_that_cannot_reconnect_closes_the_request_at_once(
        dropping_host: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine's first connection went fine; it is dead now, and the host drops
    # every new one: the local socket must close, so the Docker client fails fast.
    class DeadTransport:
        def is_active(self) -> bool:
            return False

    class DeadClient:
        def get_transport(self) -> DeadTransport:
            return DeadTransport()

        def close(self) -> None:
            pass

    monkeypatch.setattr("agent.targets.docker.ssh.connect_ssh", lambda _: DeadClient())
    engine = SshEngine(settings(dropping_host, tmp_path))  # its first connection, now dead
    monkeypatch.setattr("agent.targets.docker.ssh.connect_ssh", connect_ssh)  # the real one
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)  # a request left waiting raises TimeoutError
            client.connect(engine.socket_path)
            client.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):  # closed, too
                assert client.recv(1024) == b""  # closed, not left waiting
    finally:
        engine.close()
