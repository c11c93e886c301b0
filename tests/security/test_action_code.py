"""A commit's action code runs only in its action server or its test step,
never inside the agent's own process.

The commit's actions.py writes a marker file when it is imported, naming the
process (pid and command line). A real release by `agent once` (whose pid the
test knows) imports it in the action-code test step and in `rasa run actions`;
no marker may come from the agent itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent.journal import PROMOTED
from tests.support.agent_config import agent_config
from tests.support.deploy_host import Host

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(1800)]

MARKER_CODE = """
import json as _json, os as _os, sys as _sys
_os.makedirs({folder!r}, exist_ok=True)
with open(_os.path.join({folder!r}, str(_os.getpid())), "w") as _out:
    _json.dump({{"pid": _os.getpid(), "argv": _sys.argv}}, _out)
"""


def test_action_code_never_runs_in_the_agent_process(host: Host) -> None:
    markers = host.root / "markers"
    actions = host.src / "actions" / "actions.py"
    clean = actions.read_text(encoding="utf-8")
    actions.write_text(clean + MARKER_CODE.format(folder=str(markers)), encoding="utf-8")
    try:
        host.push_change("action code with a side effect at import", retrain=False)
        config = agent_config(host.root / "agent-action-tests.yml", like=host.config,
                              pipeline={"action_tests": f"{sys.executable} -c "
                                        "\"import actions.actions\""})
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "-c", str(config), "once", "-q"],
            env=host.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        out, _ = agent.communicate(timeout=900)
        journal = host.journal()
        release = journal.last_release()
        journal.close()
        assert release is not None and release.status == PROMOTED, out
        found = [json.loads(p.read_text(encoding="utf-8")) for p in markers.iterdir()]
        assert found, "the action code never ran"
        assert all(m["pid"] != agent.pid for m in found)
        # Where it did run: the action-code test step and the action server.
        kinds = {"test" if m["argv"] == ["-c"] else "server" for m in found}
        assert kinds == {"test", "server"}, found
        assert all(m["argv"] == ["-c"] or "actions" in " ".join(m["argv"]) for m in found)
    finally:
        actions.write_text(clean, encoding="utf-8")
        host.push_change("action code without the side effect", retrain=False)
        assert host.agent("once").returncode == 0

