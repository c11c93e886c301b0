"""What every process on this host shows about itself, for the secret checks."""

from __future__ import annotations

from pathlib import Path


def processes_showing(value: str) -> list[int]:
    """Pids whose command line or environment (/proc/<pid>/cmdline, environ) holds `value`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        for part in ("cmdline", "environ"):
            try:
                if value.encode() in (proc / part).read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue  # gone, or not ours to read
    return found
