"""The README's one demo command, run as a user runs it.

`bash examples/demo.sh` makes a deploy host (bare repo + agent, two
environments), pushes examples/coffeebot, waits for the release to be live in
staging, promotes it to production (`agent promote N --env production`), and
chats with the live bot. Then it pushes a second commit (a changed greeting)
and chats with production every 100 ms while the agent puts it in staging and
the demo promotes it to production blue/green behind HAProxy, printing the
replies, failures and the longest reply time. Everything
is real: git, the agent daemon, `rasa train`, `rasa test`, the action server,
the Rasa servers and HAProxy.

One difference from a user's run: the bot is a copy of coffeebot with the light
config (`DEMO_BOT`), so the demo's two releases train, test and load in seconds
instead of minutes (the DIET/TED run took about 480 s). What this test proves is
that the demo works end to end; chat latency during a DIET/TED switch is
asserted by tests/agent/targets/test_serving_stall.py, and the README's figure
comes from a run with the real config.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.targets.local_process import free_port, port_open
from tests.support.bots import light_coffeebot
from tests.support.ci import need
from tests.support.paths import REPO_ROOT
from tests.support.serving import rasa_servers_of

GREETING = "Hi! Coffee, or opening hours?"  # examples/coffeebot/domain.yml
# The summary line of the demo's chat during the second promotion.
CHAT_SUMMARY = re.compile(r"(\d+) replies \((\d+) old, (\d+) new, (\d+) other\), "
                          r"(\d+) failures, longest reply (\d+) ms")

# Light (tests/support/ci_split.py): it runs beside another xdist worker. The
# reply times it prints are not asserted; what is asserted (no failed reply,
# both releases seen) must hold on a busy machine too.
pytestmark = [pytest.mark.rasa, pytest.mark.light, pytest.mark.timeout(1800)]


def test_the_demo_pushes_the_example_bot_and_talks_to_it(tmp_path: Path) -> None:
    venv = Path(sys.executable).parent.parent
    need(venv.name == "rasa310" and (venv / "bin" / "rasa").is_file(),
         "the demo runs in the cached rasa310 venv that .ci/test builds")
    need(shutil.which("haproxy") is not None or Path("/usr/sbin/haproxy").is_file(),
         "HAProxy is not installed (apt-get install haproxy)")
    env = {
        **os.environ,
        "RASA_GITOPS_CACHE": str(venv.parent),
        "RASA_GITOPS_DEMO": str(tmp_path / "demo"),
        "DEMO_RASA_PORT": str(free_port()),
        "DEMO_ACTION_PORT": str(free_port()),
        "DEMO_STAGING_RASA_PORT": str(free_port()),
        "DEMO_STAGING_ACTION_PORT": str(free_port()),
        "DEMO_BOT": str(light_coffeebot(tmp_path / "bot")),
    }
    env.pop("DEMO_KEEP", None)
    done = subprocess.run(["bash", str(REPO_ROOT / "examples" / "demo.sh")], env=env,
                          capture_output=True, text=True, timeout=1700)
    output = done.stdout + done.stderr
    print(output)  # shown by pytest -s, and with a failure
    assert done.returncode == 0, output[-5000:]
    assert f"bot: {GREETING}" in output
    assert "bot: We are open 7am to 7pm, every day." in output  # the custom action
    assert "promoted" in output
    # Release 1 went to staging, waited for production (manual), then was promoted.
    assert "release 1 is live in staging and waits for production" in output, output[-5000:]
    assert "waiting: release 1 (verified in staging)" in output, output[-5000:]
    # Release 2 in staging only, for a moment: each environment answered with its own.
    assert f"  staging: {GREETING} (release 2)\n  production: {GREETING}\n" in output, \
        output[-5000:]
    # The second push was promoted while the chat went on: it saw both
    # greetings, no message failed, and it printed the longest reply time.
    assert f"bot, before the switch: {GREETING}\n" in output, output[-5000:]
    assert f"bot, after the switch:  {GREETING} (release 2)\n" in output, output[-5000:]
    summary = CHAT_SUMMARY.search(output)
    assert summary is not None, output[-5000:]
    replies, old, new, other, failures, longest = map(int, summary.groups())
    assert failures == 0, output[-5000:]
    assert old > 0 and new > 0 and other == 0, summary.group(0)
    assert replies == old + new, summary.group(0)
    assert longest > 0, summary.group(0)
    # Nothing is left running: the agent's pid file is gone and the ports are free.
    assert not (tmp_path / "demo" / "work" / "agent.pid").exists(), output[-2000:]
    for name in ("DEMO_RASA_PORT", "DEMO_ACTION_PORT", "DEMO_STAGING_RASA_PORT",
                 "DEMO_STAGING_ACTION_PORT"):
        port = int(env[name])
        assert not port_open("127.0.0.1", port), f"port {port} ({name}) is still served"
    production = tmp_path / "demo" / "work" / "environments" / "production"
    assert rasa_servers_of(production / "rasa-blue-green") == []
