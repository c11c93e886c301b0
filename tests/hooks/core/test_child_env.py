"""What a command started for a commit's code sees of our environment: only the
basics, never a secret the agent holds (checked on real child processes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hooks.core.child_env import commit_environment
from hooks.core.process import run, spawn

SECRET = "RGT_CHILD_ENV_SECRET"


def _env_of(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.fixture(autouse=True)
def _agent_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET, "s3cr3t-value")


def test_outside_a_commit_block_a_command_gets_our_environment() -> None:
    assert _env_of(run(["env"]).output)[SECRET] == "s3cr3t-value"


def test_inside_it_a_command_gets_only_the_basics_and_what_it_is_given() -> None:
    with commit_environment({"BOT_API_URL": "http://bot"}):
        seen = _env_of(run(["env"], env={"RASA_CACHE_DIRECTORY": "/c"}).output)
        bare = _env_of(run(["env"], env={"ONLY": "1"}, inherit_env=False).output)
    assert SECRET not in seen and seen["PATH"] == os.environ["PATH"]
    assert seen["BOT_API_URL"] == "http://bot" and seen["RASA_CACHE_DIRECTORY"] == "/c"
    assert seen["RASA_TELEMETRY_ENABLED"] == "false"
    assert "PATH" not in bare and bare["ONLY"] == "1"
    # The block ends: our environment again.
    assert SECRET in _env_of(run(["env"]).output)


def test_a_server_spawned_inside_it_gets_only_the_basics(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    with commit_environment():
        spawn(["sh", "-c", f"env > {out}.tmp && mv {out}.tmp {out}"], cwd=tmp_path,
              log_file=tmp_path / "log")
    deadline = time.monotonic() + 10
    while not out.is_file():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    seen = _env_of(out.read_text())
    assert SECRET not in seen and "PATH" in seen
