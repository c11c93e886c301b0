"""A test's own `rasa run`: started in a folder with its log there, waited for
until it answers, and stopped with its whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import requests

START_TIMEOUT = 180.0  # a light model loads in seconds; Rasa's imports take the rest


def start_rasa_run(rasa_bin: Path, folder: Path, port: int, args: list[str]
                   ) -> subprocess.Popen[bytes]:
    """`rasa run --enable-api --port PORT *args` in `folder` (log: folder/rasa.log),
    once it answers `GET /`."""
    with open(folder / "rasa.log", "wb") as log:
        rasa = subprocess.Popen(
            [str(rasa_bin), "run", "--enable-api", "--port", str(port), *args],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "RASA_TELEMETRY_ENABLED": "false"})
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert rasa.poll() is None, (folder / "rasa.log").read_text()[-3000:]
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            return rasa
        except requests.RequestException:
            time.sleep(0.5)
    stop_rasa_run(rasa)
    raise AssertionError(f"rasa run did not answer within {START_TIMEOUT:.0f} s")


def stop_rasa_run(rasa: subprocess.Popen[bytes]) -> None:
    os.killpg(rasa.pid, signal.SIGTERM)
    try:
        rasa.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(rasa.pid, signal.SIGKILL)
        rasa.wait(10)
