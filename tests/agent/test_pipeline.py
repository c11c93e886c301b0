"""The deploy agent end to end: a real bare repo, real pushes, real Rasa 3.6.21.

One deploy host per module (a bare repo, the agent's work dir, and the Rasa
server, action forwarder and action servers the agent starts) is shared by the
tests, which run in file order like a day of pushes. The bot is trained once:
every later commit leaves the training data alone, so the agent reuses the model
(that is itself one of the behaviours under test). The costly parts are one
`rasa train`, one model load and two `rasa test` runs.

The bot is examples/coffeebot plus a one-test action-code test file, with its
test stories replaced by two its tiny model passes every time: its own "large
coffee" story fails now and then (the entity in the story puts the tracker in a
state no training story has, and the 10-epoch TEDPolicy is left to guess). The
pipeline under test is the agent's, not the bot's accuracy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from agent.config import load_config
from agent.journal import FAILED, INTERRUPTED, PROMOTED, SKIPPED, STAGED, Journal
from agent.progress import Progress
from agent.runtime import Agent
from agent.targets.local_process import free_port
from agent.tick import TickResult, tick
from tests.support.agent_config import agent_config
from tests.support.bots import deploy_repo
from tests.support.git import git
from tests.support.rasa_memo import memo_rasa

# The first release trains, tests and loads a model for real: on a busy
# 2-core machine that alone can take ten minutes.
pytestmark = [pytest.mark.rasa, pytest.mark.timeout(2400)]

TEST_STORIES = """\
version: "3.1"
stories:
  - story: a coffee order, end to end
    steps:
      - user: |
          hello
        intent: greet
      - action: utter_greet
      - user: |
          one coffee please
        intent: order_coffee
      - action: utter_confirm_order
      - user: |
          thanks
        intent: thank
      - action: utter_you_are_welcome
  - story: opening hours, end to end
    steps:
      - user: |
          hi
        intent: greet
      - action: utter_greet
      - user: |
          when are you open
        intent: ask_opening_hours
      - action: action_tell_opening_hours
      - user: |
          bye
        intent: goodbye
      - action: utter_goodbye
"""

ACTION_TEST = """\
from actions.actions import ActionTellOpeningHours


def test_action_name():
    assert ActionTellOpeningHours().name() == "action_tell_opening_hours"
"""

HOURS = "We are open 7am to 7pm, every day."


@dataclass
class Host:
    root: Path
    bare: Path
    src: Path
    config_path: Path
    rasa_url: str
    rasa_bin: Path

    def commit_and_push(self, message: str, files: dict[str, str] | None = None) -> str:
        for rel, text in (files or {}).items():
            path = self.src / rel
            assert path.is_file(), f"{rel} is not a file of the bot"
            path.write_text(text, encoding="utf-8")
        git(self.src, "add", "-A")
        git(self.src, "commit", "-q", "-m", message)
        git(self.src, "push", "-q", "deploy", "main")
        return git(self.src, "rev-parse", "HEAD")

    def set_hours(self, text: str, message: str) -> str:
        actions = self.src / "actions" / "actions.py"
        code = actions.read_text(encoding="utf-8")
        start = code.index('text="') + len('text="')
        end = code.index('"', start)
        actions.write_text(code[:start] + text + code[end:], encoding="utf-8")
        return self.commit_and_push(message)

    def tick(self, config: Path | None = None) -> TickResult:
        agent = Agent.open(load_config(config or self.config_path), Progress(quiet=True))
        try:
            return tick(agent)
        finally:
            agent.close()

    def journal(self) -> Journal:
        return Journal(self.root / "work" / "journal.sqlite")

    def token(self) -> str:
        return (self.root / "work" / "rasa-server" / "auth-token").read_text().strip()

    def live_model_id(self) -> str:
        answer = requests.get(f"{self.rasa_url}/status", params={"token": self.token()},
                              timeout=30)
        answer.raise_for_status()
        return str(answer.json()["model_id"])

    def say(self, text: str, sender: str = "tester") -> list[str]:
        answer = requests.post(f"{self.rasa_url}/webhooks/rest/webhook",
                               json={"sender": sender, "message": text}, timeout=300)
        answer.raise_for_status()
        return [m["text"] for m in answer.json() if "text" in m]

    def agent_cli(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent.cli", "-c", str(config or self.config_path), *args],
            capture_output=True, text=True, env=_env(self.rasa_bin), timeout=900,
        )


def _env(rasa_bin: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{rasa_bin.parent}{os.pathsep}{os.environ['PATH']}",
            "RASA_TELEMETRY_ENABLED": "false"}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, rasa_bin: Path) -> Iterator[Host]:
    root = tmp_path_factory.mktemp("deploy-host")
    bare, src = deploy_repo(root)
    (src / "tests" / "test_stories.yml").write_text(TEST_STORIES, encoding="utf-8")
    (src / "actions_test.py").write_text(ACTION_TEST, encoding="utf-8")
    rasa_port, action_port = free_port(), free_port()
    config = agent_config(
        root / "agent.yml", repo=bare, branch="main", work_dir="work",
        rasa_command=memo_rasa(rasa_bin),
        pipeline={
            "action_tests": f"{sys.executable} -m pytest -q -p no:cacheprovider actions_test.py"},
        action_server={"port": action_port},
        model={"url": f"http://127.0.0.1:{rasa_port}"},
    )
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    made = Host(root, bare, src, config, f"http://127.0.0.1:{rasa_port}", rasa_bin)
    try:
        yield made
    finally:
        done = made.agent_cli("stop")
        assert done.returncode == 0, done.stderr


def test_a_push_becomes_a_promoted_model_answering_on_the_rest_channel(host: Host) -> None:
    git(host.src, "add", "-A")
    git(host.src, "commit", "-q", "-m", "coffeebot, first release")
    git(host.src, "push", "-q", "deploy", "main")
    result = host.tick()
    journal = host.journal()
    assert result.status == PROMOTED, journal.release(result.release_id or 0).reason
    release = journal.release(result.release_id or 0)
    steps = {s.name: s.status for s in journal.steps(release.id)}
    assert steps == {"checkout": "passed", "validate": "passed", "train": "passed",
                     "test": "passed", "action_tests": "passed", "nlu_gate": "skipped",
                     "deploy_actions": "passed", "activate_model": "passed",
                     "smoke": "skipped"}
    assert journal.production_release("production").id == release.id  # type: ignore[union-attr]
    assert host.live_model_id() == release.model_id
    assert host.say("hello", "first") == ["Hi! Coffee, or opening hours?"]
    # The custom action runs on the action server the agent started.
    assert host.say("when are you open", "first") == [HOURS]
    events = [e.detail for e in journal.events() if e.kind == "release.order"]
    assert events and events[0].startswith("action_server then model")


def test_an_action_code_only_change_does_not_retrain(host: Host) -> None:
    before = host.journal().production_release("production")
    assert before is not None
    host.set_hours("Open 8am to 6pm, weekdays only.", "new opening hours")
    result = host.tick()
    journal = host.journal()
    release = journal.release(result.release_id or 0)
    assert result.status == PROMOTED, release.reason
    steps = {s.name: s for s in journal.steps(release.id)}
    assert steps["train"].status == "reused"
    assert release.model_reused and release.model_path == before.model_path
    assert release.model_id == before.model_id == host.live_model_id()
    assert steps["deploy_actions"].status == "passed"  # the new action code went live
    assert host.say("when are you open", "second") == ["Open 8am to 6pm, weekdays only."]


def test_a_validation_error_fails_the_release_and_production_is_untouched(host: Host) -> None:
    journal = host.journal()
    production = journal.production_release("production")
    assert production is not None
    live_before = host.live_model_id()
    stories = (host.src / "data" / "stories.yml").read_text(encoding="utf-8")
    broken = stories + "  - story: uses an unknown intent\n    steps:\n" \
                       "      - intent: order_tea\n      - action: utter_greet\n"
    host.commit_and_push("story with an intent the domain lacks",
                         files={"data/stories.yml": broken})
    result = host.tick()
    release = host.journal().release(result.release_id or 0)
    assert result.status == FAILED
    assert release.reason.startswith("validate:")
    assert "order_tea" in release.reason
    assert host.live_model_id() == live_before
    assert host.journal().production_release("production").id == production.id  # type: ignore[union-attr]
    assert host.say("when are you open", "third") == ["Open 8am to 6pm, weekdays only."]
    # Repair it for the next tests.
    host.commit_and_push("revert the broken story", files={"data/stories.yml": stories})


def test_a_failing_story_in_a_second_test_file_fails_the_release_named_and_untouched(
    host: Host,
) -> None:
    # Two files match `tests/test_*.yml`: Rasa reads test stories only from files
    # named test_*, so the agent must hand both over under such names (it once
    # copied them as 000_<name>: Rasa evaluated nothing and the release passed).
    live_before = host.live_model_id()
    production = host.journal().production_release("production")
    second = host.src / "tests" / "test_more_stories.yml"
    broken = TEST_STORIES.replace("a coffee order, end to end", "thanks, then goodbye?") \
        .replace("      - action: utter_you_are_welcome", "      - action: utter_goodbye")
    second.write_text(broken, encoding="utf-8")
    host.commit_and_push("a second test file whose story expects the wrong reply")
    result = host.tick()
    journal = host.journal()
    release = journal.release(result.release_id or 0)
    assert result.status == FAILED, release.reason
    assert release.reason.startswith("test: test stories failed: tests/test_more_stories.yml:"), \
        release.reason
    assert "story 'thanks, then goodbye?'" in release.reason
    steps = {s.name: s.status for s in journal.steps(release.id)}
    assert steps["train"] == "reused" and steps["test"] == "failed"
    assert "deploy_actions" not in steps and "activate_model" not in steps
    assert host.live_model_id() == live_before
    assert journal.production_release("production").id == production.id  # type: ignore[union-attr]
    second.unlink()
    host.commit_and_push("drop the second test file")


def test_three_quick_pushes_deploy_only_the_last(host: Host) -> None:
    first = host.set_hours("Hours v1.", "hours v1")
    second = host.set_hours("Hours v2.", "hours v2")
    third = host.set_hours("Hours v3.", "hours v3")
    result = host.tick()
    journal = host.journal()
    assert result.status == PROMOTED, journal.release(result.release_id or 0).reason
    assert journal.release(result.release_id or 0).commit == third
    for sha in (first, second):
        (only,) = journal.releases_of_commit(sha)
        assert only.status == SKIPPED
        assert only.reason == f"superseded by {third[:8]}"
    assert len(result.skipped) >= 2
    assert host.say("when are you open", "fourth") == ["Hours v3."]
    # Nothing new: the next tick does nothing.
    assert host.tick().outcome == "idle"


def _wait_for_step(host: Host, commit: str, step: str) -> int:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        journal = host.journal()
        for release in journal.releases_of_commit(commit):
            if any(s.name == step and s.status == "running" for s in journal.steps(release.id)):
                return release.id
        time.sleep(0.2)
    raise AssertionError(f"no release of {commit[:8]} reached {step}")


def _slow_config(host: Host) -> Path:
    """The same host, but with action tests that hang: a window to crash or stop in."""
    return agent_config(host.root / "agent-slow.yml", like=host.config_path, pipeline={
        "action_tests": f"{sys.executable} -c \"import time; time.sleep(600)\""})


def test_a_crash_mid_release_is_detected_and_the_release_retried(host: Host) -> None:
    production = host.journal().production_release("production")
    assert production is not None
    commit = host.set_hours("Hours after a crash.", "hours, deployed across a crash")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "-c", str(_slow_config(host)), "once"],
        env=_env(host.rasa_bin), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        crashed = _wait_for_step(host, commit, "action_tests")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the agent and its sleeping child
        proc.wait()
    journal = host.journal()
    assert journal.release(crashed).status == "running"  # what a crash leaves behind
    assert journal.production_release("production").id == production.id  # type: ignore[union-attr]
    status = host.agent_cli("status")
    assert "its agent is gone" in status.stdout
    result = host.tick()
    journal = host.journal()
    old = journal.release(crashed)
    assert old.status == INTERRUPTED
    assert {s.name: s.status for s in journal.steps(crashed)}["action_tests"] == INTERRUPTED
    retry = journal.release(result.release_id or 0)
    assert retry.retry_of == crashed and retry.commit == commit
    assert result.status == PROMOTED, retry.reason
    assert host.say("when are you open", "fifth") == ["Hours after a crash."]


def test_the_daemon_sees_a_push_and_sigterm_abandons_a_long_step(host: Host) -> None:
    daemon = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "-c", str(_slow_config(host)), "run"],
        env=_env(host.rasa_bin), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # The daemon is up once it has written its pid file.
        pid_file = host.root / "work" / "agent.pid"
        deadline = time.monotonic() + 120
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # let the first (idle) tick finish
        commit = host.set_hours("Hours from the daemon.", "pushed while the daemon watches")
        stopped = _wait_for_step(host, commit, "action_tests")
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=120)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, out
    assert "woken by push" in out
    journal = host.journal()
    release = journal.release(stopped)
    assert release.status == INTERRUPTED
    assert {s.name: s.status for s in journal.steps(stopped)}["action_tests"] == "abandoned"
    assert not (host.root / "work" / "agent.pid").exists()
    # The next start retries it with the normal config and promotes it.
    result = host.tick()
    assert result.status == PROMOTED
    assert journal.release(result.release_id or 0).retry_of == stopped


def test_status_history_and_logs_read_the_journal(host: Host) -> None:
    status = host.agent_cli("status")
    assert status.returncode == 0, status.stderr
    production = host.journal().production_release("production")
    assert production is not None
    assert f"production: release {production.id} {production.commit[:8]}" in status.stdout
    assert "last failure: release" in status.stdout
    history = host.agent_cli("history", "--json")
    import json

    releases = json.loads(history.stdout)
    statuses = {r["status"] for r in releases}
    assert {"promoted", "failed", "skipped", "interrupted"} <= statuses
    assert all("steps" in r for r in releases)
    failed = next(r for r in releases if r["reason"].startswith("test:"))
    logs = host.agent_cli("logs", str(failed["id"]))
    assert logs.returncode == 0
    assert "== test: failed" in logs.stdout
    token = host.token()
    for text in (status.stdout, history.stdout, logs.stdout):
        assert token not in text
    missing = host.agent_cli("logs", "9999")
    assert missing.returncode == 1 and "no release 9999" in missing.stderr


# ------------------------------------------- promotion policy, smoke, rollback


def _variant(host: Host, name: str, **keys: object) -> Path:
    return agent_config(host.root / f"agent-{name}.yml", like=host.config_path, **keys)


def _hours_of(host: Host, release_id: int) -> str:
    commit = host.journal().release(release_id).commit
    code = git(host.src, "show", f"{commit}:actions/actions.py")
    start = code.index('text="') + len('text="')
    return code[start:code.index('"', start)]


def test_manual_promotion_waits_as_staged_then_promotes(host: Host) -> None:
    manual = _variant(host, "manual", environments={"production": {"promote": "manual"}})
    before = host.journal().production_release("production")
    assert before is not None
    old_text = host.say("when are you open", "manual-1")
    host.set_hours("Hours, promoted by hand.", "a release that waits for a human")
    result = host.tick(manual)
    assert result.status == STAGED
    journal = host.journal()
    assert journal.production_release("production").id == before.id  # type: ignore[union-attr]
    assert host.say("when are you open", "manual-2") == old_text
    status = host.agent_cli("status", config=manual)
    assert f"staged (waiting for `agent promote`): {result.release_id}" in status.stdout
    done = host.agent_cli("promote", str(result.release_id), "--reason", "checked by hand",
                          config=manual)
    assert done.returncode == 0, done.stderr
    journal = host.journal()
    assert journal.production_release("production").id == result.release_id  # type: ignore[union-attr]
    assert journal.release(result.release_id or 0).status == PROMOTED
    assert host.say("when are you open", "manual-3") == ["Hours, promoted by hand."]
    promoted = [e for e in journal.events() if e.kind == "production.promoted"]
    assert promoted and promoted[0].detail == "checked by hand"


def test_a_failing_smoke_test_rolls_the_release_back(host: Host) -> None:
    smoke = _variant(host, "smoke", smoke={"conversations": [[
        {"say": "hello", "expect": "Hi!"},
        {"say": "when are you open", "expect": "Hours that never come"},
    ]]})
    before = host.journal().production_release("production")
    assert before is not None
    host.set_hours("Hours that fail the smoke test.", "a release the smoke test rejects")
    result = host.tick(smoke)
    journal = host.journal()
    release = journal.release(result.release_id or 0)
    assert result.status == FAILED
    assert release.reason.startswith("smoke: conversation 1: to 'when are you open' the bot "
                                     "said 'Hours that fail the smoke test.'"), release.reason
    kinds = [e.kind for e in journal.events(release_id=release.id)]
    assert "release.rolled_back" in kinds
    assert journal.production_release("production").id == before.id  # type: ignore[union-attr]
    # The live action server is production's again.
    assert host.say("when are you open", "smoke") == [_hours_of(host, before.id)]


def test_rollback_restores_the_previous_release_and_pauses_auto_promotion(host: Host) -> None:
    journal = host.journal()
    current = journal.production_release("production")
    assert current is not None
    previous = journal.previous_production("production", before=current.id)
    assert previous is not None
    done = host.agent_cli("rollback", "--reason", "customers complain")
    assert done.returncode == 0, done.stderr
    journal = host.journal()
    pointer = journal.production("production")
    assert pointer is not None and pointer.release_id == previous.id and pointer.paused
    assert host.live_model_id() == previous.model_id
    assert host.say("when are you open", "rollback") == [_hours_of(host, previous.id)]
    event = next(e for e in journal.events() if e.kind == "production.rolled_back")
    assert "customers complain" in event.detail and event.actor
    # Paused: the next push is staged, not deployed.
    host.set_hours("Hours while paused.", "pushed during the pause")
    result = host.tick()
    assert result.status == STAGED
    assert "paused" in host.journal().release(result.release_id or 0).reason
    resumed = host.agent_cli("resume")
    assert resumed.returncode == 0 and "resumed" in resumed.stdout
    assert not host.journal().production("production").paused  # type: ignore[union-attr]
    # A release that does not exist is a clean refusal.
    missing = host.agent_cli("rollback", "--to", "9999")
    assert missing.returncode == 1 and "no release 9999" in missing.stderr


def test_unlock_releases_only_a_stale_deploy_lock(host: Host) -> None:
    journal = host.journal()
    journal.acquire_lock("deploy", "a test holds it")  # owner: this live process
    refused = host.agent_cli("unlock")
    assert refused.returncode == 1 and "still running" in refused.stderr
    journal.release_lock("deploy")
    script = ("import sys; from pathlib import Path; from agent.journal import Journal; "
              "Journal(Path(sys.argv[1])).acquire_lock('deploy', 'a crashed promote')")
    subprocess.run([sys.executable, "-c", script, str(journal.path)], check=True)
    busy = host.tick()
    assert busy.outcome == "busy" and "stale lock" in busy.message
    done = host.agent_cli("unlock")
    assert done.returncode == 0 and "a crashed promote" in done.stdout
    assert host.journal().lock_holder("deploy") is None
