"""`agent run` on a test deploy host, as a context: up when the block starts, stopped after."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.deploy_host import Host


@contextmanager
def running_daemon(host: Host) -> Iterator[subprocess.Popen[str]]:
    """`agent run` on the host, up (pid file written) when the block starts."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "-c", str(host.config), "run"],
        env=host.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        pid_file = host.root / "work" / "agent.pid"
        deadline = time.monotonic() + 120
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # its first (idle) tick
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def stop_daemon(proc: subprocess.Popen[str], timeout: float = 300) -> str:
    """SIGTERM, as systemd stops it; its output, once it exited cleanly."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out
