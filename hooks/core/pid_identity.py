"""A recorded pid, told apart from a later process that got the same pid.

The agent's servers outlive it, so their pids are written down (pid files,
slot records) and read back by a later agent: after a reboot, or enough
forks, the same pid may belong to another program, which a bare pid check
would call ours and `hooks.core.process.stop` would signal. A pid with its
start time names one process for good.
"""

from __future__ import annotations

from pathlib import Path


def started_at(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (/proc/<pid>/stat field 22);
    None without /proc (not Linux) or when no such process runs.

    Kept next to a recorded pid: after a reboot (or enough forks) the same pid
    may belong to another program, which `alive` would call ours and `stop`
    would signal. A pid and its start time name one process for good."""
    fields = stat_fields(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (ValueError, IndexError):
        return None


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat from field 3 (the state) on: 0 the state,
    1 the parent, 3 the session, 19 the start time. None without /proc (not
    Linux), or when no such process runs or it is not ours to read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # After the `(comm)` field, which may hold spaces and parentheses.
    return stat[stat.rfind(")") + 2:].split()


def ours(pid: int, started: int | None) -> bool:
    """Whether `pid` is still the process recorded with start time `started`.
    An unknown start time (None or 0: a record older than this check) trusts
    the pid, as before."""
    if not started:
        return True
    now = started_at(pid)
    if now is None:  # gone, unless there is no /proc to ask (the pid is all we know)
        return not Path("/proc/self/stat").exists()
    return now == started
