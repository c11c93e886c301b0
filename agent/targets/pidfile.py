"""A server's pid file, and the atomic write every record in a state dir uses.

A pid file holds "PID STARTED": the pid and its start time (see
hooks.core.pid_identity), so that a later agent, after a reboot or enough
forks, never takes another program that got the same pid for its server. An
older file holds the pid alone: its start time reads as 0 (unknown), which
`alive` and `stop` take as "trust the pid", as before.

Records are written to a temporary file and renamed over the old one: a crash
mid-write leaves the old record or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path

from hooks.core.pid_identity import started_at
from hooks.core.process import stop


def write_atomically(path: Path, text: str, mode: int = 0o666) -> None:
    """`path` holds `text`, all at once; a new file gets `mode` (less the umask;
    0o666 is what `Path.write_text` gives)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


def write_pid(path: Path, pid: int) -> None:
    """Record `pid` with its start time."""
    write_atomically(path, f"{pid} {started_at(pid) or 0}\n")


def read_pid(path: Path) -> tuple[int, int] | None:
    """(pid, start time) from a pid file; start time 0 (unknown) for an older
    file; None for no file or one that holds no pid."""
    try:
        fields = path.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None
    if not fields or not all(field.isdigit() for field in fields[:2]):
        return None
    return int(fields[0]), int(fields[1]) if len(fields) > 1 else 0


def stop_recorded(path: Path, timeout: float) -> bool:
    """Stop the process `path` records (only if it is still that process, by its
    start time) and remove the file; False when nothing was recorded."""
    recorded = read_pid(path)
    if recorded is None:
        return False
    stop(recorded[0], timeout=timeout, started=recorded[1])
    path.unlink(missing_ok=True)
    return True
