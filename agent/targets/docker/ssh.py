"""A remote Docker engine reached over SSH with paramiko.

The host key is checked against a known_hosts file; an unknown host is
refused unless `allow_unknown_hosts` is set. The docker SDK talks to a local
unix socket; each connection to it becomes one SSH session running
`docker system dial-stdio` on the remote host, the same bridge Docker's own
`ssh://` transport uses, so the remote engine never listens on TCP.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shlex
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from agent.secrets import Redactor
from agent.targets.base import DeployError
from agent.targets.docker.engine import EngineUnreachable

# paramiko's transport thread logs a dropped connection with its traceback
# through Python's last-resort handler (stderr). The agent reports and retries
# each SSH failure itself, with a clear message, so that traceback is noise in
# its output: paramiko's records go nowhere.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

DROPPED = ("banner", "reset", "eof", "no existing session", "closed", "timed out")


@dataclass(frozen=True)
class SshSettings:
    host: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    key_passphrase: str | None = None  # a secret: never logged
    known_hosts: Path = Path("~/.ssh/known_hosts")
    allow_unknown_hosts: bool = False
    remote_docker_host: str | None = None  # e.g. unix:///var/run/docker.sock
    docker_command: str = "docker"
    timeout: float = 15.0

    def __repr__(self) -> str:
        return f"SshSettings({self.user}@{self.host}:{self.port})"

    def scrub(self, text: str) -> str:
        """`text` (a paramiko message, say) with the key's passphrase blanked out."""
        return Redactor([self.key_passphrase or ""])(text)


def connect_ssh(settings: SshSettings) -> paramiko.SSHClient:
    """An SSH connection whose host key has been verified (or explicitly allowed)."""
    client = paramiko.SSHClient()
    known = settings.known_hosts.expanduser()
    if known.is_file():
        client.load_host_keys(str(known))
    elif not settings.allow_unknown_hosts:
        raise DeployError(f"known_hosts file {known} does not exist; add the host key of "
                          f"{settings.host} to it (ssh-keyscan -p {settings.port} "
                          f"{settings.host}) or allow unknown hosts explicitly")
    if settings.allow_unknown_hosts:
        client.set_missing_host_key_policy(paramiko.WarningPolicy())
    else:
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            settings.host, port=settings.port, username=settings.user,
            key_filename=str(settings.key_file.expanduser()) if settings.key_file else None,
            passphrase=settings.key_passphrase, timeout=settings.timeout,
            banner_timeout=settings.timeout, auth_timeout=settings.timeout,
            look_for_keys=settings.key_file is None, allow_agent=settings.key_file is None,
        )
    except paramiko.BadHostKeyException:
        client.close()
        raise DeployError(f"the host key of {settings.host}:{settings.port} does not match "
                          f"{known}; refusing to connect (possible man-in-the-middle)") from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise DeployError(f"SSH to {settings.user}@{settings.host}:{settings.port} failed: "
                          f"{settings.scrub(str(exc))}") from None
    except paramiko.SSHException as exc:
        client.close()
        if "not found in known_hosts" in str(exc):
            raise DeployError(f"{settings.host}:{settings.port} is not in {known}; refusing an "
                              "unknown host key (add it with ssh-keyscan, or allow unknown "
                              "hosts explicitly)") from None
        # A dropped connection or a banner that never came: the host may be back soon;
        # a bad key or passphrase would only fail again.
        dropped = any(word in str(exc).lower() for word in DROPPED)
        raise (EngineUnreachable if dropped else DeployError)(
            f"SSH to {settings.user}@{settings.host}:{settings.port} failed: "
            f"{settings.scrub(str(exc))}") from None
    except OSError as exc:
        client.close()
        raise EngineUnreachable(f"cannot reach {settings.host}:{settings.port} over SSH: "
                                f"{exc.strerror or exc}") from None
    except EOFError:  # the server closed the connection during the handshake (sshd killed)
        client.close()
        raise EngineUnreachable(f"SSH to {settings.user}@{settings.host}:{settings.port} "
                                "failed: the server closed the connection") from None
    return client


class SshEngine:
    """Forwards a local unix socket to the remote engine, one SSH session per connection."""

    def __init__(self, settings: SshSettings) -> None:
        self.settings = settings
        self._ssh = connect_ssh(settings)
        self._dir = tempfile.mkdtemp(prefix="rgssh-")
        self.socket_path = os.path.join(self._dir, "docker.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        self._listener.listen(16)
        self._closed = False
        self._extra: list[paramiko.SSHClient] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        command = [settings.docker_command]
        if settings.remote_docker_host:
            command += ["-H", settings.remote_docker_host]
        self._remote_command = shlex.join([*command, "system", "dial-stdio"])

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket_path}"

    def client(self) -> Any:
        import docker
        import docker.errors

        try:
            client = docker.DockerClient(base_url=self.base_url, timeout=300, max_pool_size=4)
            client.ping()
        except docker.errors.DockerException as exc:
            raise EngineUnreachable(f"cannot reach the Docker engine on {self.settings.host} "
                                    f"over SSH (`{self._remote_command}`): {exc}") from None
        return client

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._ssh.close()
        for extra in self._extra:
            extra.close()
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
            os.rmdir(self._dir)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # Whatever happens, `conn` is closed: a Docker request whose tunnel could not
        # be opened must fail at once, not wait out its 300 s read timeout.
        try:
            channel = self._open_channel()
        except Exception:
            channel = None
        if channel is None:
            conn.close()
            return
        _pump(conn, channel)

    def _open_channel(self) -> paramiko.Channel | None:
        """A session running dial-stdio; a server allows only MaxSessions (10) per
        connection, so a new connection is opened when the current ones are full."""
        with self._lock:
            for ssh in [self._ssh, *self._extra]:
                transport = ssh.get_transport()
                if transport is None or not transport.is_active():
                    continue
                try:
                    channel = transport.open_session(timeout=self.settings.timeout)
                    channel.exec_command(self._remote_command)
                    return channel
                except (paramiko.SSHException, OSError):
                    continue
            if self._closed:
                return None
            try:
                extra = connect_ssh(self.settings)
            except DeployError:
                return None
            self._extra.append(extra)
            transport = extra.get_transport()
            if transport is None:
                return None
            try:
                channel = transport.open_session(timeout=self.settings.timeout)
                channel.exec_command(self._remote_command)
            except (paramiko.SSHException, OSError):
                return None
            return channel


def _pump(conn: socket.socket, channel: paramiko.Channel) -> None:
    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ)
    selector.register(channel, selectors.EVENT_READ)
    transport = channel.get_transport()
    try:
        open_ends = 2
        while open_ends:
            # A dead SSH connection does not always wake the channel: looked at
            # each second, so the Docker client sees its request cut at once
            # (and retries) instead of waiting out its 300 s read timeout.
            if channel.closed or transport is None or not transport.is_active():
                break
            for key, _ in selector.select(timeout=1.0):
                if key.fileobj is conn:
                    data = conn.recv(65536)
                    if not data:
                        channel.shutdown_write()
                        selector.unregister(conn)
                        open_ends -= 1
                    else:
                        channel.sendall(data)
                else:
                    data = channel.recv(65536)
                    if not data:
                        with contextlib.suppress(OSError):
                            conn.shutdown(socket.SHUT_WR)
                        selector.unregister(channel)
                        open_ends -= 1
                    else:
                        conn.sendall(data)
            if channel.exit_status_ready() and not channel.recv_ready():
                break
    except (OSError, EOFError, paramiko.SSHException):
        pass  # either end went away; both are closed below
    finally:
        selector.close()
        channel.close()
        conn.close()


class SshEngineFactory:
    """An EngineFactory that keeps one SSH connection open and reconnects when it drops."""

    def __init__(self, settings: SshSettings) -> None:
        self.settings = settings
        self._engine: SshEngine | None = None

    def __call__(self) -> Any:
        engine = self._engine
        transport = engine._ssh.get_transport() if engine is not None else None
        if engine is None or transport is None or not transport.is_active():
            if engine is not None:
                engine.close()
            self._engine = engine = SshEngine(self.settings)
        return engine.client()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
