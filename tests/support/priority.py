"""How a test reads the CPU and IO priority a real process runs at.

Niceness is field 19 of /proc/<pid>/stat; the IO class is what util-linux's
`ionice -p` says (the kernel keeps it nowhere in /proc). `priority_recorder`
writes a command that records its own priority and fails, standing in for
`rasa` or a bot's test command, so a test sees what the agent started it at.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.support.ci import need


def niceness(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    # Fields after the `(comm)` start at field 3; nice is field 19.
    return int(stat[stat.rfind(")") + 2:].split()[19 - 3])


def io_class(pid: int) -> str:
    """`idle`, `best-effort`, `realtime` or `none` (the default: follows the CPU nice)."""
    need(shutil.which("ionice") is not None, "ionice (util-linux) is not installed")
    said = subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True,
                          check=True).stdout
    return said.split(":", 1)[0].strip()


def priority_recorder(path: Path, record: Path, exit_code: int = 3) -> Path:
    """An executable at `path` that writes `<nice> <io class>` to `record`, then
    exits with `exit_code` (so a step that ran it fails fast, before any work)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f"echo \"$(nice) $(ionice | cut -d: -f1)\" > '{record}'\n"
        "echo 'recorded my priority'\n"
        f"exit {exit_code}\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def recorded(record: Path) -> tuple[int, str]:
    nice, io = record.read_text(encoding="utf-8").split()
    return int(nice), io


def wait_until_it_runs(pid: int, program: str, timeout: float = 30.0) -> None:
    """Wait until `pid` execs `program`: `nice` sets the CPU priority, then execs
    `ionice`, which sets the IO class, then execs the program; reading the
    priority earlier (a busy machine makes that likely) sees a half-set one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if Path(argv[0].decode()).name == program:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not exec {program} within {timeout:.0f} s")


def autogroup_enabled() -> bool:
    """Whether the kernel shares CPU between sessions first (autogroup)."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def group_niceness(pid: int) -> int:
    """The niceness of `pid`'s session (autogroup): `/autogroup-42 nice 19`."""
    return int(Path(f"/proc/{pid}/autogroup").read_text(encoding="ascii").split()[-1])
