"""Faults of the Docker parts, made on the real processes: dockerd stopped and started
again, sshd and every session it serves cut, a registry stopped exactly mid-push.

- `stop_dockerd` / `start_dockerd_again`: the session's dockerd (tests/conftest.py
  `docker_engine`) on the same socket and data root, so the containers with a
  restart policy come back and later tests find the engine as it was.
- `cut_sshd` / `start_sshd_again`: SIGKILL of the listening sshd and of every
  process under it (the per-connection sshd, the `docker system dial-stdio` it
  runs), so an SSH connection in use breaks as a network cut would; then sshd on
  the same port and host key.
- `RegistryGate`: a loopback TCP forwarder in front of a docker-registry that
  holds the first request matching a pattern (the manifest PUT, the last request
  of a push) and tells the test, which stops the registry right then; `cut()`
  drops every connection and the listener, so dockerd sees the push break and
  the next connections refused. A push of a small image takes milliseconds: a
  watcher that waits for a log line would arrive after it ended.
- `wait_for_step`: a watcher's trigger, a step row of a new release in the journal.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from pathlib import Path

from tests.support.services import DockerEngine, SshServer, start_dockerd, stop_process, wait_for

# ---------------------------------------------------------------- dockerd


def stop_dockerd(engine: DockerEngine) -> None:
    """SIGTERM, as `systemctl restart docker` does: dockerd stops its containers and exits."""
    assert engine.process is not None
    stop_process(engine.process, timeout=60)


def start_dockerd_again(engine: DockerEngine) -> None:
    """dockerd on the same socket, data root and exec root; healthy when this returns.
    Nothing when it still runs (a test that failed before stopping it): a second
    one would fail on the data root, and the first would outlive the session."""
    if engine.process is not None and engine.process.poll() is None:
        return
    again, process = start_dockerd(engine.socket.parent)
    assert again.base_url == engine.base_url
    engine.process = process


# ---------------------------------------------------------------- sshd


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (children first found, then theirs), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            # The command name may hold spaces and parentheses: the fields follow the last ')'.
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def cut_sshd(server: SshServer) -> int:
    """SIGKILL sshd and all its sessions; how many session processes were cut."""
    assert server.process is not None
    sessions = descendants(server.process.pid)
    rehashing = any(b"pyenv-rehash" in _cmdline(pid) for pid in sessions)
    for pid in [server.process.pid, *sessions]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.process.wait()
    if rehashing:
        # A session's shell (root's .bashrc runs `pyenv init`) killed inside `pyenv
        # rehash` leaves its lock file behind, and every later session's shell then
        # waits 60 s for it: each Docker request over SSH took a minute.
        shims = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "shims"
        (shims / ".pyenv-shim").unlink(missing_ok=True)
    return len(sessions)


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""  # gone already


def start_sshd_again(server: SshServer) -> None:
    """sshd on the same port and host key; nothing when it still runs (see above)."""
    if server.process is not None and server.process.poll() is None:
        return
    root = server.key_file.parent
    log = (root / "sshd.log").open("ab")
    process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(root / "sshd_config")],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    server.process = process

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError((root / "sshd.log").read_text()[-2000:])
        with socket.create_connection((server.host, server.port), timeout=1) as sock:
            return sock.recv(4).startswith(b"SSH-")

    wait_for(up, "sshd", timeout=30)


# ---------------------------------------------------------------- registry


MANIFEST_PUT = re.compile(rb"PUT /v2/\S+/manifests/")


class RegistryGate:
    """127.0.0.1:`port` forwarded to 127.0.0.1:`upstream`; see the module's docstring."""

    def __init__(self, upstream: int, port: int = 0, hold: re.Pattern[bytes] | None = None
                 ) -> None:
        self.upstream = upstream
        self.hold = hold
        self.held = threading.Event()  # set when a matching request is held
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(32)
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)  # an idle keep-alive connection is not a dead one
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False),
                             daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, outbound: bool) -> None:
        tail = b""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if outbound and self.hold is not None and not self.held.is_set():
                    if self.hold.search(tail + data):
                        self.held.set()
                        return  # never forwarded: the registry "stops" before it reads it
                    tail = data[-256:]  # a request line split over two reads
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """Every connection reset, the port closed: as a stopped registry looks."""
        with self._lock:
            self._closed = True
            for sock in [self._listener, *self._sockets]:
                with contextlib.suppress(OSError):  # close with RST, not FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with contextlib.suppress(OSError):
                    sock.close()


# ---------------------------------------------------------------- watcher


def wait_for_step(journal: Path, after: int, step: str, timeout: float = 300) -> int:
    """The id of the first release newer than `after` whose `step` has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error):
            db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
            try:
                row = db.execute("SELECT release_id FROM steps WHERE release_id > ? AND name = ?"
                                 " ORDER BY release_id LIMIT 1", (after, step)).fetchone()
            finally:
                db.close()
            if row:
                return int(row[0])
        time.sleep(0.05)
    raise AssertionError(f"no release after {after} reached its {step} step in {timeout:.0f} s")
