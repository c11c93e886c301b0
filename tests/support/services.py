"""Real services the tests drive (Docker's, SSH, Redis), each started once per test session.

- `docker_engine`: Debian's `dockerd` (overlay2 where the kernel has it, else
  vfs; host networking, no iptables) on its own socket. Its data root lives in the cache dir
  ($RASA_GITOPS_CACHE/docker) so the base image survives between local runs.
- `sdk_base_image` and `rasa_image`: the images made in that engine
  (tests/support/base_images.py, tests/support/rasa_image.py).
- `registry`: Debian's `docker-registry` on 127.0.0.1 with htpasswd auth, and
  `open_registry` without auth.
- `sshd`: OpenSSH on a loopback port with a throwaway host key, an authorized
  key for root, and a known_hosts file naming that host key.
- `redis`: Debian's `redis-server` on a loopback port, persisting nothing (the
  bot-with-its-own-stores tests' tracker and lock store).

Each service is a context manager here; tests/conftest.py turns them into
session fixtures (and skips, or fails in CI, when a part is missing). Helpers
here are also used by bench/image_build.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("RASA_GITOPS_CACHE", Path.home() / ".cache" / "rasa-gitops"))
DOCKER_CACHE = CACHE / "docker"
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probed_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports below Linux's
    ephemeral range, for servers that others probe while they are still closed
    (HAProxy's checks, samplers). A connect to a closed local port inside that
    range may get that very port as its source and connect to itself (TCP
    self-connect); it then holds the port, and the server can't bind it (Rasa's
    Sanic logs "Unable to start server" and exits 0). free_port() picks from
    that range."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(500):
        first = random.randrange(10000, low - count)
        if all(_bindable(port) for port in range(first, first + count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports below {low}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- dockerd


@dataclass
class DockerEngine:
    socket: Path
    base_url: str
    log: Path
    # The running dockerd; a test that restarts it (tests/support/docker_faults.py)
    # swaps it here, so the fixture stops whichever runs at the end.
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.base_url, timeout=600)


def storage_driver() -> str:
    """overlay2 where the kernel has it (fast), else vfs; RASA_GITOPS_DOCKER_STORAGE overrides."""
    chosen = os.environ.get("RASA_GITOPS_DOCKER_STORAGE")
    if chosen:
        return chosen
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        return "vfs"
    return "overlay2" if "\toverlay\n" in filesystems else "vfs"


def start_dockerd(run_dir: Path) -> tuple[DockerEngine, subprocess.Popen[bytes]]:
    """Start dockerd with its data root in the cache; its sockets under `run_dir`."""
    driver = storage_driver()
    data = DOCKER_CACHE / f"data-{driver}"
    data.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    sock = run_dir / "docker.sock"
    log = run_dir / "dockerd.log"
    pidfile = run_dir / "docker.pid"
    argv = [
        "dockerd", "--storage-driver", driver, "--iptables=false", "--ip6tables=false",
        "--bridge=none", "--data-root", str(data), "--exec-root", str(run_dir / "exec"),
        "-H", f"unix://{sock}", "--pidfile", str(pidfile),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    engine = DockerEngine(sock, f"unix://{sock}", log, proc)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"dockerd exited: {log.read_text()[-2000:]}")
        client = engine.client()
        try:
            return bool(client.ping())
        finally:
            client.close()

    wait_for(up, "dockerd", timeout=90)
    return engine, proc


def remove_run_dir(run_dir: Path) -> None:
    """dockerd leaves its default netns mounted under the exec root: unmount, then remove."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    for line in mounts:
        point = line.split()[1] if len(line.split()) > 1 else ""
        if point.startswith(f"{run_dir}/"):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(run_dir, ignore_errors=True)


def clean_engine(client: Any) -> None:
    """Remove what an earlier, interrupted run left: our containers, services, swarm."""
    import docker.errors

    with contextlib.suppress(docker.errors.APIError):
        for service in client.services.list():
            service.remove()
    with contextlib.suppress(docker.errors.APIError):
        client.swarm.leave(force=True)
    for container in client.containers.list(all=True):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


@contextmanager
def running_docker_engine() -> Iterator[DockerEngine]:
    """dockerd on its own socket, cleaned of earlier runs' leftovers before and after."""
    # Unix socket paths are limited to 108 bytes: keep the run dir short.
    run_dir = Path(f"/tmp/rgd-{os.getpid()}")
    engine, proc = start_dockerd(run_dir)
    client = engine.client()
    clean_engine(client)
    try:
        yield engine
    finally:
        clean_engine(client)
        client.close()
        stop_process(engine.process or proc)
        remove_run_dir(run_dir)


# ---------------------------------------------------------------- registry


@dataclass
class Registry:
    address: str  # host:port, as used in image names
    username: str | None = None
    password: str | None = None


def start_registry(root: Path, port: int, htpasswd: Path | None,
                   data_dir: Path | None = None) -> subprocess.Popen[bytes]:
    """docker-registry on loopback; config and log in `root`, blobs in `data_dir`
    (default `root/data`; a test of a full disk puts only the blobs on it, so the
    log that must say so can still be written)."""
    root.mkdir(parents=True, exist_ok=True)
    auth = (f"auth:\n  htpasswd:\n    realm: rasa-gitops-test\n    path: {htpasswd}\n"
            if htpasswd else "")
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {data_dir or root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"{auth}"
    )
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError((root / "registry.log").read_text()[-2000:])
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_for(up, "docker-registry", timeout=30)
    return proc


def htpasswd_for(path: Path, user: str) -> str:
    """An htpasswd file at `path` for `user` (bcrypt, as distribution requires), with a
    new random password, which is returned."""
    import bcrypt

    password = "s3cret-" + os.urandom(6).hex()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{user}:{hashed}\n")
    return password


@contextmanager
def running_auth_registry(root: Path) -> Iterator[Registry]:
    """A registry with htpasswd auth, kept in `root`."""
    htpasswd = root / "htpasswd"
    password = htpasswd_for(htpasswd, "deployer")
    port = free_port()
    proc = start_registry(root / "store", port, htpasswd)
    try:
        yield Registry(f"127.0.0.1:{port}", "deployer", password)
    finally:
        stop_process(proc)


# ---------------------------------------------------------------- sshd


@dataclass
class SshServer:
    host: str
    port: int
    user: str
    key_file: Path  # the client's private key
    known_hosts: Path  # names this server's host key
    host_key_line: str
    # The listening sshd; a test that stops and starts it (tests/support/docker_faults.py)
    # swaps it here.
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)


@contextmanager
def running_sshd(root: Path) -> Iterator[SshServer]:
    """OpenSSH on a loopback port, its keys and config in `root`."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key")],
                   check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(root / "client_key")], check=True)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    os.chmod(root / "authorized_keys", 0o600)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "AllowTcpForwarding yes\nAllowStreamLocalForwarding yes\nLogLevel ERROR\n"
        "Subsystem sftp internal-sftp\n"  # rasa_http copies models to a remote Rasa by SFTP
    )
    log = (root / "sshd.log").open("wb")
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError((root / "sshd.log").read_text()[-2000:])
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(4).startswith(b"SSH-")

    wait_for(up, "sshd", timeout=30)
    kind, key = (root / "host_key.pub").read_text().split()[:2]
    line = f"[127.0.0.1]:{port} {kind} {key}"
    (root / "known_hosts").write_text(line + "\n")
    server = SshServer("127.0.0.1", port, "root", root / "client_key", root / "known_hosts",
                       line, proc)
    try:
        yield server
    finally:
        stop_process(server.process or proc)


# ---------------------------------------------------------------- redis


@dataclass
class RedisServer:
    host: str
    port: int

    def command(self, *words: str) -> str:
        """One command over RESP (no client library needed): a status line
        (`+PONG`) or a bulk reply's text (`INFO`)."""
        payload = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
        with socket.create_connection((self.host, self.port), timeout=5) as sock:
            sock.sendall(payload.encode())
            with sock.makefile("rb") as reply:
                head = reply.readline().decode(errors="replace").rstrip("\r\n")
                if head.startswith("$") and head != "$-1":
                    return reply.read(int(head[1:])).decode(errors="replace")
                return head


@contextmanager
def running_redis(root: Path) -> Iterator[RedisServer]:
    """Debian's redis-server on a loopback port, nothing persisted, its log in `root`."""
    port = free_port()
    log = (root / "redis.log").open("wb")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(root)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = RedisServer("127.0.0.1", port)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError((root / "redis.log").read_text()[-2000:])
        return server.command("PING") == "+PONG"

    try:
        wait_for(up, "redis-server", timeout=30)
        yield server
    finally:
        stop_process(proc)
