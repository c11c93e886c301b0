"""Which processes on this host are the agent's, and how `agent stop` ends them all.

A target's records (live.json, the slot records, pid files) name the servers
it knows about, but a crash between starting a server and recording it (or
between two records of a switch) leaves one no record names. So every server
the agent starts also carries a mark in its environment: `MARKER` = the state
folder of the target that started it, inside the work dir. It is not a secret
(a path), and children inherit it. `agent stop` then finds them in /proc: a
process whose environment carries a mark inside this work dir, or a session
leader running a server program (rasa, haproxy, python) with an argument
inside the work dir (every server runs in a session of its own; a server
started before marks existed is found that way). A user's shell, `tar` or
`tail -f` of a log, and another agent's work dir that shares a prefix, are
left alone.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from hooks.core.pid_identity import started_at, stat_fields
from hooks.core.process import alive

MARKER = "RASA_GITOPS_WORK_DIR"
GRACE = 10.0  # seconds between SIGTERM and SIGKILL


def marker_env(state_dir: Path) -> dict[str, str]:
    """The variable every server a target starts gets (see the module doc)."""
    return {MARKER: str(state_dir.resolve())}


@dataclass(frozen=True)
class Owned:
    pid: int
    started: int  # /proc start time: a pid reused meanwhile is not signalled
    leader: bool  # leads its own session (killed with its process group)
    command: str


def _read(pid: str, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""  # gone, or not ours to read


def _stat_number(pid: int, index: int) -> int:
    """Field `index` of `stat_fields` (1: the parent, 3: the session); -1 for a
    process gone or not ours to read."""
    fields = stat_fields(pid) or []
    return int(fields[index]) if len(fields) > index and fields[index].isdigit() else -1


def inside(value: bytes, roots: Collection[bytes]) -> bool:
    """Whether the path `value` is one of `roots` or below one, path by path."""
    return any(value == root or value.startswith(root + b"/") for root in roots)


def marks_in(environ: bytes) -> list[bytes]:
    """The `MARKER` values in a process's environment (/proc/<pid>/environ)."""
    return [var.split(b"=", 1)[1] for var in environ.split(b"\0")
            if var.startswith(MARKER.encode() + b"=")]


def _ancestors(pid: int) -> set[int]:
    """`pid` and every parent up to init: never signalled (the caller, its shell)."""
    found = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        pid = _stat_number(pid, 1)
    return found


SERVER_PROGRAMS = (b"rasa", b"haproxy", b"python")  # what the agent starts as servers


def _names_a_server_in(cmdline: bytes, roots: Collection[bytes]) -> bool:
    """Whether an unmarked session leader is one of our servers: a server
    program (not a shell, `tar` or `tail`; not the agent's own CLI) with an
    argument inside the work dir, path by path (`/srv/agent` is not inside
    `/srv/agent-staging`)."""
    args = cmdline.rstrip(b"\0").split(b"\0")
    program = os.path.basename(args[0])
    if not program.startswith(SERVER_PROGRAMS) or b"agent.cli" in args:
        return False
    return any(inside(arg.rpartition(b"=")[2], roots) for arg in args[1:])


def marked(mark: Path) -> list[Owned]:
    """The processes carrying exactly `mark` (one slot's server, say)."""
    return owned_processes(mark, exact=True)


def owned_processes(work_dir: Path, exclude: Collection[int] = (), *,
                    exact: bool = False) -> list[Owned]:
    """Every process of this work dir's agent (see the module doc), but this
    process, its ancestors and `exclude`; `exact`: only a mark equal to `work_dir`."""
    roots = {str(work_dir).encode(), str(work_dir.resolve()).encode()}
    skip = _ancestors(os.getpid()) | set(exclude)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        cmdline = _read(entry.name, "cmdline")
        if not cmdline:
            continue  # a kernel thread or a zombie: nothing to stop
        leader = _stat_number(int(entry.name), 3) == int(entry.name)
        marks = marks_in(_read(entry.name, "environ"))
        if exact:
            mine = any(mark in roots for mark in marks)
        else:
            mine = any(inside(mark, roots) for mark in marks) or (
                leader and _names_a_server_in(cmdline, roots))
        if mine:
            pid = int(entry.name)
            found.append(Owned(pid, started_at(pid) or 0, leader,
                               cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]))
    return found


def _signal(process: Owned, sig: signal.Signals) -> None:
    if not alive(process.pid, process.started or None):
        return
    try:
        if process.leader:
            os.killpg(process.pid, sig)
        else:
            os.kill(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_owned(work_dir: Path, log: Callable[[str], None], *, exclude: Collection[int] = (),
               grace: float = GRACE) -> list[Owned]:
    """SIGTERM every owned process (its group when it leads one), SIGKILL what is
    left after `grace` s; again for whatever started meanwhile. What was stopped."""
    stopped: list[Owned] = []
    for _round in range(3):
        found = owned_processes(work_dir, exclude)
        if not found:
            break
        stop_processes(found, log, grace)
        stopped += found
    return stopped


def stop_processes(found: list[Owned], log: Callable[[str], None], grace: float = GRACE
                   ) -> None:
    for process in found:
        log(f"stopping pid {process.pid}: {process.command}")
        _signal(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p.pid, p.started or None) for p in found):
        time.sleep(0.1)
    for process in found:
        _signal(process, signal.SIGKILL)


def stop_process(pid: int, log: Callable[[str], None], *, what: str, grace: float) -> None:
    """SIGTERM one process (the daemon: it finishes a switch in progress), SIGKILL
    it if it still runs after `grace` s."""
    started = started_at(pid)
    log(f"stopping {what} (pid {pid})")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not alive(pid, started):
                return
            time.sleep(0.1)
