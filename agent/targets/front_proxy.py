"""HAProxy as the front proxy on the stable port, switched and drained live.

Why HAProxy and not a Python proxy: it carries every HTTP path, websocket
upgrades (socket.io) and kept-alive connections, its runtime API switches and
drains without a reload, and Debian packages it. This module only writes its
config and talks to its admin socket.

Layout: one frontend on the stable port; one backend per slot (`blue`,
`green`), each with one server `rasa`. Which backend takes requests is one
entry of a map file (`live -> blue|green`) that the frontend reads for every
request, so `set map` moves every NEW request at once, also those on kept-alive
client connections, and no request can go to both slots in between. The old
slot's server is then put in `drain` and, once its in-flight requests (scur)
are 0, in `maint`.

HAProxy runs in its own session, so it keeps serving while the agent restarts;
the config and the map file are rewritten at every switch, so a restarted
HAProxy routes to the live slot. The truth about what serves is HAProxy's
runtime state, read over its admin socket (mode 0600, in `state_dir`).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agent.owned import marker_env
from agent.targets.base import DEAD, DeployError, Health, LogSink
from agent.targets.probe import probe
from hooks.core.process import alive, stop

SLOTS = ("blue", "green")
SERVER = "rasa"  # the one server of each slot's backend
SOCKET_TIMEOUT = 5.0
# Requests a slot's server gets at once; more wait in HAProxy's queue. Rasa
# answers one conversation's messages one by one anyway (its lock store).
SERVER_MAXCONN = 64
START_TIMEOUT = 10.0
MAX_SOCKET_PATH = 97  # HAProxy 2.6 refuses a longer `stats socket` path ("max 97")
REFUSALS = ("unknown", "no such", "require", "invalid", "not found", "permission denied")


@dataclass(frozen=True)
class Upstream:
    slot: str
    host: str
    port: int


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


def _write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


class FrontProxy:
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
    def map_file(self) -> Path:
        return self.state_dir / "route.map"

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

    # ------------------------------------------------------------ config

    def _render(self, live: Upstream | None, other: Upstream | None) -> str:
        """The whole config; `live` is ready, `other` (if known) stays in maint."""
        servers = []
        for slot in SLOTS:
            known = live if live and live.slot == slot else (
                other if other and other.slot == slot else None)
            # A slot never started points at a closed port, in maint: HAProxy
            # needs an address to start with; `set server ... addr` changes it.
            addr = f"{known.host}:{known.port}" if known else "127.0.0.1:1"
            state = "" if live and live.slot == slot else " disabled"
            # maxconn: past it, requests wait in HAProxy's queue (timeout queue)
            # instead of overfilling Rasa's accept backlog, where a connect
            # times out and the client gets a 503.
            servers.append(f"backend {slot}\n    server {SERVER} {addr} maxconn {SERVER_MAXCONN}"
                           f"{state}\n")
        return (
            "# Written by the rasa-gitops agent at every switch; edits are lost.\n"
            "global\n"
            f'    stats socket "{self.socket_path}" mode 600 level admin\n'
            "    stats timeout 30s\n"
            # One thread is plenty for a bot's traffic and keeps the switch a
            # single step; noreuseport makes a taken port fail instead of sharing it.
            "    nbthread 1\n"
            "    noreuseport\n"
            "    maxconn 4096\n"
            "defaults\n"
            "    mode http\n"
            "    option http-keep-alive\n"
            "    timeout connect 5s\n"
            # Rasa may take a while for a reply (custom actions, a cold model).
            "    timeout client 15m\n"
            "    timeout server 15m\n"
            "    timeout http-request 60s\n"
            "    timeout http-keep-alive 60s\n"
            # A request queued behind a busy server (maxconn) waits this long.
            "    timeout queue 120s\n"
            # socket.io websockets live long after their upgrade.
            "    timeout tunnel 24h\n"
            "    timeout client-fin 30s\n"
            "    retries 3\n"
            f"frontend stable\n"
            f"    bind {self.listen_host}:{self.listen_port}\n"
            f'    use_backend %[str(live),map("{self.map_file}",blue)]\n'
            "    default_backend blue\n"
            + "".join(servers)
        )

    def _write_files(self, live: Upstream | None, other: Upstream | None) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.map_file, f"live {live.slot if live else SLOTS[0]}\n")
        _write_atomically(self.config_file, self._render(live, other))

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

    # ----------------------------------------------------------- process

    def _pid(self) -> int | None:
        try:
            text = self.pid_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

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
        if not self.config_file.is_file() or not self.map_file.is_file():
            self._write_files(None, None)
        else:  # the live slot as last switched; the stable port as configured now
            lines = self.config_file.read_text(encoding="utf-8").splitlines()
            bind = f"    bind {self.listen_host}:{self.listen_port}"
            _write_atomically(self.config_file, "".join(
                (bind if line.startswith("    bind ") else line) + "\n" for line in lines))
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
        _write_atomically(self.pid_file, f"{proc.pid}\n")
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

    def _servers(self) -> dict[str, tuple[Upstream, str]]:
        """Each slot's server address and admin state, from `show servers state`."""
        found: dict[str, tuple[Upstream, str]] = {}
        for slot in SLOTS:
            lines = self._command(f"show servers state {slot}").splitlines()
            header = next((line[2:].split() for line in lines if line.startswith("# be_id")), [])
            for line in lines:
                if not line or line.startswith("#") or line[0].isalpha():
                    continue
                row = dict(zip(header, line.split(), strict=False))
                if row.get("srv_name") != SERVER:
                    continue
                # srv_admin_state bit 0x01/0x02/0x20 = maint (forced, inherited, resolution),
                # 0x08 = drain forced.
                admin = int(row.get("srv_admin_state", "0"))
                state = "maint" if admin & 0x23 else ("drain" if admin & 0x08 else "ready")
                found[slot] = (Upstream(slot, row["srv_addr"], int(row["srv_port"])), state)
        return found

    def _routed_slot(self) -> str:
        answer = self._command(f"show map {self.map_file}")
        for line in answer.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "live" and parts[2] in SLOTS:
                return parts[2]
        return SLOTS[0]  # the frontend's default

    def live(self) -> Upstream | None:
        if not self.running():
            return None
        slot = self._routed_slot()
        server = self._servers().get(slot)
        if server is None or server[1] == "maint":
            return None
        return server[0]

    def sessions(self, slot: str) -> int:
        """Requests a slot's server still owes an answer: in flight (scur) plus
        queued for it (qcur), from `show stat`."""
        lines = self._command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",") if lines else []
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == slot and row.get("svname") == SERVER:
                return int(row.get("scur") or 0) + int(row.get("qcur") or 0)
        return 0

    def switch(self, to: Upstream, log: LogSink) -> Upstream | None:
        if to.slot not in SLOTS:
            raise DeployError(f"front proxy: unknown slot {to.slot!r}")
        self.ensure_running(log)
        old = self.live()
        self._command(f"set server {to.slot}/{SERVER} addr {to.host} port {to.port}")
        self._command(f"set server {to.slot}/{SERVER} state ready")
        # The one step that moves traffic: every request from now on, also on
        # kept-alive connections, is routed by this entry.
        self._command(f"set map {self.map_file} live {to.slot}")
        if old is not None and old.slot != to.slot:
            self._command(f"set server {old.slot}/{SERVER} state drain")
        self._write_files(to, old if old is not None and old.slot != to.slot else None)
        log(f"front proxy: new requests go to {to.slot} ({to.host}:{to.port})"
            + (f"; {old.slot} ({old.host}:{old.port}) drains" if old and old != to else ""))
        return old if old is not None and old.slot != to.slot else None

    def drain(self, old: Upstream, timeout: float, log: LogSink) -> None:
        deadline = time.monotonic() + timeout
        busy = self.sessions(old.slot)
        while busy and time.monotonic() < deadline:
            time.sleep(0.05)
            busy = self.sessions(old.slot)
        self._command(f"set server {old.slot}/{SERVER} state maint")
        if busy:
            # What still runs after the timeout (a websocket, a stuck request) is
            # cut, so the old server can stop; socket.io clients reconnect.
            self._command(f"shutdown sessions server {old.slot}/{SERVER}")
            log(f"front proxy: {busy} request(s) on {old.slot} still ran after "
                f"{timeout:.0f} s; cut them")
        else:
            log(f"front proxy: {old.slot} drained")
