"""`agent events` (the audit trail) and one end-to-end notification through the
real `agent once`, both without Rasa: a commit whose checkout the agent refuses
(a symlink out of the repository) fails in well under a second.

The chat webhook and GitHub here are FAKES (tests/support/fake_forge.py): they
can't be installed on this machine, so the fake follows only their documented
API and refuses anything else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import ConfigError, load_config
from agent.journal import FAILED, PROMOTED, Journal
from agent.runtime import Agent
from agent.targets.factory import agent_secret_env
from hooks.core.child_env import child_env
from tests.support.agent_config import STAGING_PLACE, agent_config
from tests.support.bots import copy_bot
from tests.support.fake_forge import Forge, fake_forge
from tests.support.git import git
from tests.support.paths import COFFEEBOT

HOOK_KEY = "T0009/B0009/auditHookSecret"
GH_TOKEN = "ghp_auditFakeToken77"


@pytest.fixture
def forge() -> Iterator[Forge]:
    with fake_forge(webhook_key=HOOK_KEY, github_repo="acme/bot", github_token=GH_TOKEN,
                    gitlab_project="1", gitlab_token="unused-token") as fake:
        yield fake


def _two_environments(tmp_path: Path) -> Path:
    path = agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git",
                        environments={"staging": STAGING_PLACE,
                                      "production": {"promote": "manual"}})
    journal = Journal(load_config(path).work_dir / "journal.sqlite")
    staged = journal.new_release(environment="staging", commit="a" * 40, branch="main",
                                 author="Ann", message="one")
    journal.start_release(staged.id)
    journal.finish_release(staged.id, PROMOTED, promote_environment="staging")
    broken = journal.new_release(environment="production", commit="b" * 40, branch="main",
                                 author="Ann", message="two")
    journal.start_release(broken.id)
    journal.finish_release(broken.id, FAILED, "test: 1 story failed")
    journal.set_production("production", staged.id, kind="production.promoted",
                           actor="alice", reason="looked fine on staging")
    journal.set_paused("production", True, "rollback", "bob")
    journal.set_paused("production", False, "", "carol")
    journal.acquire_lock("deploy", "switch of release 9")
    journal.force_unlock("deploy", "dave")
    journal.close()
    return path


def test_events_lists_who_did_what_when_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = _two_environments(tmp_path)
    assert main(["-c", str(path), "events"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["when", "environment", "who", "what", "release", "why"]
    assert "lock.released" in lines[1] and "dave" in lines[1] and "deploy held by" in lines[1]
    assert "production.resumed" in lines[2] and "carol" in lines[2]
    assert "production.paused" in lines[3] and "bob" in lines[3] and "rollback" in lines[3]
    assert ("production.promoted" in lines[4] and "alice" in lines[4]
            and "looked fine on staging" in lines[4] and "r1" in lines[4])

    assert main(["-c", str(path), "events", "--env", "production", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {item["environment"] for item in data} == {"production"}
    # A release's own outcome is journaled without an environment: it shows its release's.
    failed = next(item for item in data if item["kind"] == "release.failed")
    assert failed["release"] == 2 and failed["why"] == "test: 1 story failed"
    assert [item["actor"] for item in data if item["kind"].startswith("production.")] == [
        "carol", "bob", "alice"]

    assert main(["-c", str(path), "events", "--env", "staging", "--json", "--limit", "2"]) == 0
    staging = json.loads(capsys.readouterr().out)
    assert [item["kind"] for item in staging] == ["release.promoted", "release.started"]
    assert main(["-c", str(path), "events", "--env", "qa"]) == 1
    assert "no environment 'qa'" in capsys.readouterr().err


def test_agent_once_announces_a_failed_release_and_sets_its_commit_status(
    tmp_path: Path, forge: Forge, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bare = tmp_path / "bot.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    src = copy_bot(COFFEEBOT, tmp_path / "src")
    (src / "data" / "leak.yml").symlink_to("/etc/hostname")  # refused at checkout
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "leaky")
    git(src, "push", "-q", str(bare), "main")
    head = git(src, "rev-parse", "HEAD").strip()
    monkeypatch.setenv("HOOK_URL", f"{forge.url}/hooks/{HOOK_KEY}")
    monkeypatch.setenv("GH_TOKEN", GH_TOKEN)
    path = agent_config(tmp_path / "agent.yml", repo=bare,
                        model={"manage_server": False, "url": "http://127.0.0.1:9"},
                        notify=[{"type": "webhook", "url_env": "HOOK_URL"},
                                {"type": "github", "repository": "acme/bot",
                                 "token_env": "GH_TOKEN", "api_url": forge.url}])

    assert main(["-c", str(path), "once", "--quiet"]) == 1
    out = capsys.readouterr()
    assert "release 1: failed" in out.out
    assert forge.rejected == []
    [message] = [r.body for r in forge.of("webhook")]
    assert message["event"] == "failed" and message["commit"] == head
    assert "symlink" in message["reason"] and message["environment"] == "production"
    assert [(r.path, r.body["state"]) for r in forge.of("github")] == [
        (f"/repos/acme/bot/statuses/{head}", "pending"),
        (f"/repos/acme/bot/statuses/{head}", "failure")]
    for secret in (HOOK_KEY, GH_TOKEN):
        assert secret not in out.out + out.err

    # The next `agent once` finds nothing new and sends nothing again.
    main(["-c", str(path), "once", "--quiet"])  # exits 1: its commit's release failed
    assert "nothing new" in capsys.readouterr().out
    assert len(forge.of("webhook")) == 1 and len(forge.of("github")) == 2


def test_a_notify_secret_that_cannot_be_read_stops_agent_once_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("UNSET_HOOK_URL", raising=False)
    path = agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git",
                        model={"manage_server": False, "url": "http://127.0.0.1:9"},
                        notify=[{"type": "webhook", "url_env": "UNSET_HOOK_URL"}])
    assert main(["-c", str(path), "once"]) != 0
    assert (f"{path}: notify[1].url_env: environment variable UNSET_HOOK_URL is not set"
            in capsys.readouterr().err)
    # Read with the rest of the config's secrets: refused before the journal exists.
    assert not (tmp_path / "work" / "journal.sqlite").exists()


def test_a_notify_secret_is_withheld_refused_for_the_bot_and_redacted_like_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook, token = "http://127.0.0.1:9/hooks/T0-notify-secret", "gh-notify-secret-token"
    monkeypatch.setenv("HOOK_URL", hook)
    monkeypatch.setenv("GH_TOKEN", token)
    sinks = [{"type": "webhook", "url_env": "HOOK_URL"},
             {"type": "github", "repository": "acme/bot", "token_env": "GH_TOKEN"}]
    keys = {"repo": tmp_path / "bot.git", "notify": sinks,
            "model": {"manage_server": False, "url": "http://127.0.0.1:9"}}
    refused = agent_config(tmp_path / "a.yml", **keys, pipeline={"env": ["GH_TOKEN"]})
    with pytest.raises(ConfigError, match=r"pipeline\.env: GH_TOKEN holds the agent's own "):
        load_config(refused)
    config = load_config(agent_config(tmp_path / "b.yml", **keys))
    assert agent_secret_env(config) == {"HOOK_URL": "notify[1].url_env",
                                        "GH_TOKEN": "notify[2].token_env"}
    agent = Agent.open(config)
    try:
        assert agent.progress.redact(f"posting to {hook} with {token}") == \
            "posting to *** with ***"
        # What the agent runs for itself (git, the forwarder) never gets them.
        env = child_env(None)
        assert "HOOK_URL" not in env and "GH_TOKEN" not in env
    finally:
        agent.close()
