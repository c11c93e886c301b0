"""The README's one demo command, run as a user runs it.

`bash examples/demo.sh` makes a deploy host (bare repo + agent), pushes
examples/coffeebot with its real DIET/TED config, waits for the release to be
promoted, and chats with the live bot. Everything is real: git, the agent
daemon, `rasa train`, `rasa test`, the action server and the Rasa server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.targets.local_process import free_port, port_open
from tests.support.ci import need
from tests.support.paths import REPO_ROOT

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(1800)]


def test_the_demo_pushes_the_example_bot_and_talks_to_it(tmp_path: Path) -> None:
    venv = Path(sys.executable).parent.parent
    need(venv.name == "rasa310" and (venv / "bin" / "rasa").is_file(),
         "the demo runs in the cached rasa310 venv that .ci/test builds")
    env = {
        **os.environ,
        "RASA_GITOPS_CACHE": str(venv.parent),
        "RASA_GITOPS_DEMO": str(tmp_path / "demo"),
        "DEMO_RASA_PORT": str(free_port()),
        "DEMO_ACTION_PORT": str(free_port()),
    }
    env.pop("DEMO_KEEP", None)
    done = subprocess.run(["bash", str(REPO_ROOT / "examples" / "demo.sh")], env=env,
                          capture_output=True, text=True, timeout=1700)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "bot: Hi! Coffee, or opening hours?" in output
    assert "bot: We are open 7am to 7pm, every day." in output  # the custom action
    assert "promoted" in output
    # Nothing is left running: the agent's pid file is gone and the ports are free.
    assert not (tmp_path / "demo" / "work" / "agent.pid").exists(), output[-2000:]
    for port in (env["DEMO_RASA_PORT"], env["DEMO_ACTION_PORT"]):
        assert not port_open("127.0.0.1", int(port)), f"port {port} is still served"
