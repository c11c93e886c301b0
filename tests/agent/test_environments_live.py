"""Two environments on one host, end to end: staging and production as places
of their own (separate ports, their own real `rasa run` and `rasa run actions`),
the real `agent` CLI, a real bare repo, the example bot with the light config.

- A push is promoted to staging and waits for production (`manual`).
- `agent promote N --env production` puts it live there.
- Each environment's Rasa server answers with its own release.
- A release whose staging smoke test fails never reaches production.
- `agent rollback --env production` finishes while a newer release trains for
  staging.

Target cost: about 3 minutes (four trainings, one of them made to last 12 s).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from agent.journal import FAILED, PROMOTED
from agent.targets.local_process import free_port
from tests.support.agent_config import agent_config
from tests.support.bots import deploy_repo, push_all, set_hours
from tests.support.deploy_host import Host
from tests.support.procs import kill_processes_of
from tests.support.rasa_memo import memo_rasa
from tests.support.slow_training import make_training_slow, training

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(900)]


def _hours(url: str, sender: str) -> list[str]:
    answer = requests.post(f"{url}/webhooks/rest/webhook",
                           json={"sender": sender, "message": "when are you open"}, timeout=300)
    answer.raise_for_status()
    return [m["text"] for m in answer.json() if "text" in m]


def test_a_release_moves_from_staging_to_production_and_each_serves_its_own(
        tmp_path: Path, rasa_bin: Path) -> None:
    bare, src = deploy_repo(tmp_path)
    ports = {name: (free_port(), free_port()) for name in ("staging", "production")}
    backends = {name: [free_port(), free_port()] for name in ports}  # not port+1/+2: free
    urls = {name: f"http://127.0.0.1:{rasa}" for name, (rasa, _) in ports.items()}
    config = agent_config(
        tmp_path / "agent.yml", repo=bare, work_dir="work", rasa_command=memo_rasa(rasa_bin),
        pipeline={"test_stories": "tests/none_*.yml"},
        smoke={"conversations": [[{"say": "when are you open", "expect": "Open from"}]]},
        environments={name: {"promote": "auto" if name == "staging" else "manual",
                             "action_server": {"port": ports[name][1],
                                               "backend_ports": backends[name]},
                             "model": {"url": urls[name]}} for name in ports})
    host = Host(tmp_path, bare, src, config, urls["staging"], ports["staging"][1], rasa_bin)
    try:
        set_hours(src, "Open from 1 am, release 1.")
        push_all(src, "release 1")
        once = host.agent("once")
        assert once.returncode == 0, once.stdout[-3000:] + once.stderr[-3000:]
        journal = host.journal()
        (first,) = journal.releases()
        assert first.status == PROMOTED
        assert journal.production_release("staging").id == first.id  # type: ignore[union-attr]
        assert journal.production_release("production") is None
        assert _hours(urls["staging"], "s1") == ["Open from 1 am, release 1."]
        status = host.agent("status")
        assert (f"waiting: release {first.id} (verified in staging): production is promoted "
                "manually") in status.stdout, status.stdout

        promoted = host.agent("promote", str(first.id), "--env", "production")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert _hours(urls["production"], "p1") == ["Open from 1 am, release 1."]

        # Release 2 reaches staging only; each environment answers with its own.
        set_hours(src, "Open from 2 am, release 2.")
        push_all(src, "release 2")
        assert host.agent("once").returncode == 0
        assert _hours(urls["staging"], "s2") == ["Open from 2 am, release 2."]
        assert _hours(urls["production"], "p2") == ["Open from 1 am, release 1."]

        # Release 3 fails its smoke test in staging: rolled back there, never in production.
        set_hours(src, "Closed for good, release 3.")
        push_all(src, "release 3")
        assert host.agent("once").returncode == 1  # a failed release: cron and CI see it
        journal = host.journal()
        third, second = journal.releases()[:2]
        assert third.status == FAILED and "smoke" in third.reason, third.reason
        assert _hours(urls["staging"], "s3") == ["Open from 2 am, release 2."]
        assert _hours(urls["production"], "p3") == ["Open from 1 am, release 1."]
        refused = host.agent("promote", str(third.id), "--env", "production")
        assert refused.returncode != 0
        assert f"release {third.id} has not passed staging" in refused.stderr, refused.stderr
        assert _hours(urls["production"], "p4") == ["Open from 1 am, release 1."]

        # Production gets release 2 too. Then, while release 4 trains for staging,
        # `agent rollback --env production` takes production back to release 1
        # without waiting for that training.
        assert host.agent("promote", str(second.id), "--env", "production").returncode == 0
        assert _hours(urls["production"], "p5") == ["Open from 2 am, release 2."]
        set_hours(src, "Open from 4 am, release 4.")
        gate = src.parent / "training-gate"
        make_training_slow(src, 60, gate)  # outlasts the rollback (a few seconds)
        slow = push_all(src, "release 4 trains slowly")
        once = subprocess.Popen([sys.executable, "-m", "agent.cli", "-c", str(config), "once"],
                                env=host.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            fourth = training(host.journal, slow)
            rolled = host.agent("rollback", "--env", "production", "--reason", "incident")
            assert rolled.returncode == 0, rolled.stdout + rolled.stderr
            journal = host.journal()
            try:
                assert journal.production_release("production").id == first.id  # type: ignore[union-attr]
                steps = {step.name: step.status for step in journal.steps(fourth.id)}
                assert steps["train"] == "running", steps  # the rollback did not wait for it
            finally:
                journal.close()
            assert _hours(urls["production"], "p6") == ["Open from 1 am, release 1."]
        finally:
            gate.touch()  # the training may end now
            out, err = once.communicate(timeout=600)
        # Release 4's model needs its bot's own component (slow_training.py), which
        # staging's Rasa server, running outside the bot's folder since release 1,
        # can't import: the load fails and staging keeps what it served.
        assert once.returncode == 1, out[-3000:] + err[-3000:]
        journal = host.journal()
        try:
            failed = journal.release(fourth.id)
            assert failed.status == FAILED and failed.reason.startswith("activate_model"), \
                failed.reason
            assert journal.production_release("staging").id == second.id  # type: ignore[union-attr]
        finally:
            journal.close()
        assert _hours(urls["staging"], "s7") == ["Open from 2 am, release 2."]
        assert _hours(urls["production"], "p7") == ["Open from 1 am, release 1."]
    finally:
        host.agent("stop")
        left = kill_processes_of(tmp_path / "work")
    assert left == [], left
