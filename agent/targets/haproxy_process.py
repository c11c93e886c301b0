"""HAProxy as a process the agent runs: its files, start, stop and admin socket.

The front proxy of the blue/green servers (agent/targets/front_proxy.py) and
the one in front of a Swarm fleet of Rasa replicas
(agent/targets/fleet_proxy.py) are both this, with their own config.
HAProxy runs in its own session, so it keeps serving while the agent restarts.
Its admin socket (mode 0600, in `state_dir`) is the runtime API.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from agent.owned import marker_env
from agent.targets.base import DEAD, DeployError, Health, LogSink
from agent.targets.pidfile import read_pid, write_atomically
from agent.targets.probe import probe
from hooks.core.process import alive, stop

__all__ = ["HaproxyProcess", "free_port", "port_taken", "write_atomically"]

SOCKET_TIMEOUT = 5.0
START_TIMEOUT = 10.0
MAX_SOCKET_PATH = 97  # HAProxy 2.6 refuses a longer `stats socket` path ("max 97")
REFUSALS = ("unknown", "no such", "require", "invalid", "not found", "permission denied")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for a slot's server)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens on host:port (a bind test, as HAProxy will)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class HaproxyProcess:
    """One HAProxy the agent starts and stops; a subclass writes its config."""

    def __init__(self, *, listen_host: str, listen_port: int, state_dir: Path,
                 haproxy: str = "haproxy") -> None:
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.state_dir = state_dir
        self.haproxy = haproxy

    # ------------------------------------------------------------- paths

    @property
    def config_file(self) -> Path:
        return self.state_dir / "haproxy.cfg"

    @property
    def socket_path(self) -> Path:
        # A deep work_dir would make the socket path too long for HAProxy: then
        # the socket lives in a short folder of its own, named by a hash of the
        # state folder so every agent process finds the same one.
        inside = self.state_dir / "admin.sock"
        if len(str(inside).encode()) <= MAX_SOCKET_PATH:
            return inside
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"rasa-gitops-{digest}" / "admin.sock"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "haproxy.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "haproxy.log"

    def _check_paths(self) -> None:
        text = str(self.socket_path)
        if any(c.isspace() or c in '"\\' for c in text):
            raise DeployError(f"{self.state_dir}: the front proxy's state folder may not "
                              "contain spaces or quotes (HAProxy's runtime API can't name it)")
        if len(text.encode()) > MAX_SOCKET_PATH:
            raise DeployError(f"{self.socket_path}: a unix socket path may have at most "
                              f"{MAX_SOCKET_PATH} bytes; use a shorter work_dir or TMPDIR")
        # Only root (the agent's user) may reach the admin socket's folder.
        self.socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _write_config(self) -> None:
        """Write `config_file` (and what it names) for the next start."""
        raise NotImplementedError

    # ----------------------------------------------------------- process

    def _pid(self) -> int | None:
        recorded = read_pid(self.pid_file)
        return recorded[0] if recorded else None

    def running(self) -> bool:
        pid = self._pid()
        if not pid or not alive(pid):
            return False
        try:
            self._command("show info")
        except DeployError:
            return False
        return True

    def ensure_running(self, log: LogSink) -> bool:
        if self.running():
            return False
        self._check_paths()
        pid = self._pid()
        if pid and alive(pid):  # alive but deaf: a hung HAProxy of ours
            stop(pid, timeout=5)
        if port_taken(self.listen_host, self.listen_port):
            raise DeployError(
                f"port {self.listen_port} on {self.listen_host} is already in use by another "
                "program; the front proxy needs it. Free it or set model.url to another port.")
        self._write_config()
        self._validate()
        self.socket_path.unlink(missing_ok=True)
        log(f"starting the front proxy (HAProxy) on {self.listen_host}:{self.listen_port}")
        with open(self.log_file, "ab") as out:
            try:
                # Its own session: it outlives the agent, and a Ctrl-C on the
                # agent's terminal doesn't reach it. No secrets in its env.
                proc = subprocess.Popen(
                    [self.haproxy, "-db", "-f", str(self.config_file)], cwd=self.state_dir,
                    env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                         **marker_env(self.state_dir)},
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True)
            except OSError as exc:
                raise DeployError(f"cannot run {self.haproxy}: {exc.strerror}; install "
                                  "HAProxy (Debian: apt-get install haproxy)") from None
        write_atomically(self.pid_file, f"{proc.pid}\n", mode=0o644)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.running():
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc.pid, timeout=2)
                self.pid_file.unlink(missing_ok=True)
                if port_taken(self.listen_host, self.listen_port):
                    raise DeployError(f"port {self.listen_port} on {self.listen_host} is "
                                      "already in use; the front proxy could not bind it")
                raise DeployError(f"the front proxy (HAProxy) did not start:\n{self._tail()}")
            time.sleep(0.05)
        return True

    def _validate(self) -> None:
        try:
            checked = subprocess.run(
                [self.haproxy, "-c", "-f", str(self.config_file)],
                capture_output=True, text=True, timeout=30,
                env={"PATH": os.environ.get("PATH", "")})
        except FileNotFoundError:
            raise DeployError(f"command not found: {self.haproxy}; install HAProxy "
                              "(Debian: apt-get install haproxy)") from None
        if checked.returncode != 0:
            raise DeployError(f"{self.config_file}: HAProxy refuses the config:\n"
                              f"{(checked.stdout + checked.stderr).strip()[-1500:]}")

    def _tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def health(self) -> Health:
        """HAProxy's process and its stable port (agent/supervise.py)."""
        pid = self._pid()
        if pid is None:
            return Health("front proxy", DEAD, "not running (no pid file)")
        return probe("front proxy", self.listen_host, self.listen_port,
                     process_alive=alive(pid), path=None)

    def stop(self, log: LogSink) -> None:
        pid = self._pid()
        if pid:
            stop(pid, timeout=10)
            log("stopped the front proxy")
        self.pid_file.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)

    # ------------------------------------------------------- runtime API

    def _command(self, command: str) -> str:
        """One command over the admin socket; its answer (errors raise)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(SOCKET_TIMEOUT)
                sock.connect(str(self.socket_path))
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise DeployError(f"the front proxy's admin socket {self.socket_path} does not "
                              f"answer ({type(exc).__name__})") from None
        answer = b"".join(chunks).decode(errors="replace")
        # `set` commands answer nothing or one line; `show` output is data.
        lowered = "" if command.startswith("show ") else answer.lower()
        if answer.startswith("Unknown ") or any(word in lowered for word in REFUSALS):
            raise DeployError(f"front proxy refused `{command}`: {answer.strip()[:300]}")
        return answer

    def stat_rows(self) -> list[dict[str, str]]:
        """`show stat` as one mapping per proxy and server (pxname, svname, status, ...)."""
        lines = self._command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",") if lines else []
        return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
