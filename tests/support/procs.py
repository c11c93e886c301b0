"""What every process on this host shows about itself, for the secret checks."""

from __future__ import annotations

import os
import signal
from collections.abc import Collection
from pathlib import Path

from agent.owned import inside, marks_in


def processes_showing(value: str, parts: Collection[str] = ("cmdline", "environ"),
                       ) -> list[int]:
    """Pids whose command line or environment (/proc/<pid>/cmdline, environ) holds
    `value` (`parts`: which of the two to read)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        for part in parts:
            try:
                if value.encode() in (proc / part).read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue  # gone, or not ours to read
    return found


def processes_showing_any(values: Collection[str], environ_ok: Collection[int] = (),
                          ) -> list[tuple[int, str, str]]:
    """(pid, part, command) of every process whose command line holds one of
    `values`, or whose environment does (but for the pids `environ_ok`: the
    agent's own, whose environment is where its secrets come from)."""
    wanted = [value.encode() for value in values]
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        pid = int(proc.name)
        for part in ("cmdline", "environ"):
            if part == "environ" and pid in environ_ok:
                continue
            try:
                data = (proc / part).read_bytes()
                if any(value in data for value in wanted):
                    command = (proc / "cmdline").read_bytes()[:80].replace(b"\0", b" ")
                    found.append((pid, part, command.decode(errors="replace")))
            except OSError:
                continue  # gone, or not ours to read
    return found


def processes_of(work_dir: Path) -> list[int]:
    """Pids of every process of the agent of `work_dir`: its command line names
    the work dir, its environment carries the agent's mark (RASA_GITOPS_WORK_DIR)
    inside it, or it runs in it (an action server from a release worktree).

    Wider than the agent's own `owned_processes` on purpose: `agent stop`'s
    "leaves nothing" is checked with it, so it must not share that sweep's
    blind spots (an unmarked child that leads no session, say)."""
    roots = {os.fsencode(work_dir.resolve())}
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
            cwd = os.fsencode(os.readlink(proc / "cwd"))
        except OSError:
            continue  # gone, a kernel thread, or not ours to read
        if not cmdline:
            continue  # a zombie
        if (any(root in cmdline for root in roots) or inside(cwd, roots)
                or any(inside(mark, roots) for mark in marks_in(environ))):
            found.append(int(proc.name))
    return found


def kill_processes_of(work_dir: Path) -> list[str]:
    """SIGKILL what `processes_of(work_dir)` finds (nothing outlives a test);
    their command lines, for the failure message."""
    found = []
    for pid in processes_of(work_dir):
        try:
            command = (Path("/proc") / str(pid) / "cmdline").read_bytes()
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue  # gone meanwhile
        found.append(command.replace(b"\0", b" ").decode(errors="replace")[:200])
    return found
