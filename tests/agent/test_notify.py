"""Notifications and commit statuses (agent/notify.py), fast and in-process.

The chat webhook, GitHub and GitLab here are FAKES (tests/support/fake_forge.py):
none of them can be installed on this machine, so the fake follows only their
documented request shapes (paths, methods, headers, JSON fields and states,
status codes such as 201) and refuses anything else; every test asserts it
refused nothing. The journal is a real one in tmp_path.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_config
from agent.journal import FAILED, PROMOTED, STAGED, SUPERSEDED, Journal, Release
from agent.notify import Notifier, deliver_briefly, notifying, open_notifier
from agent.notify_sinks import GitHubSink, load_sinks
from agent.retry import Backoff
from agent.secrets import Secret
from hooks.core.errors import FatalError
from tests.support.agent_config import STAGING_PLACE, agent_config
from tests.support.fake_forge import Forge, fake_forge

HOOK_KEY = "T0001/B0002/hookSecret42"
GH_TOKEN = "ghp_fakeGithubToken123"
GL_TOKEN = "glpat-fakeGitlabToken456"


@pytest.fixture
def forge() -> Iterator[Forge]:
    with fake_forge(webhook_key=HOOK_KEY, github_repo="acme/bot", github_token=GH_TOKEN,
                    gitlab_project="team%2Fbot", gitlab_token=GL_TOKEN) as fake:
        yield fake


def notify_items(forge: Forge) -> list[dict[str, object]]:
    return [
        {"type": "webhook", "url_env": "HOOK_URL"},
        {"type": "github", "repository": "acme/bot", "token_env": "GH_TOKEN",
         "api_url": forge.url, "target_url": "https://ci.example.com/r/{release}"},
        {"type": "gitlab", "project": "team/bot", "token_file": "gitlab-token",
         "api_url": f"{forge.url}/api/v4"},
    ]


@pytest.fixture
def config(tmp_path: Path, forge: Forge, monkeypatch: pytest.MonkeyPatch) -> AgentConfig:
    monkeypatch.setenv("HOOK_URL", f"{forge.url}/hooks/{HOOK_KEY}")
    monkeypatch.setenv("GH_TOKEN", GH_TOKEN)
    (tmp_path / "gitlab-token").write_text(GL_TOKEN + "\n", encoding="utf-8")
    return load_config(agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git",
                                    notify=notify_items(forge)))


def _journal(config: AgentConfig) -> Journal:
    config.work_dir.mkdir(parents=True, exist_ok=True)
    return Journal(config.work_dir / "journal.sqlite")


def _release(journal: Journal, letter: str, status: object = None, reason: str = "",
             env: str = "production") -> Release:
    release = journal.new_release(environment=env, commit=letter * 40, branch="main",
                                  author="Ann", message=f"commit {letter}")
    journal.start_release(release.id)
    if status is PROMOTED:
        journal.finish_release(release.id, PROMOTED, reason, promote_environment=env)
    elif status is not None:
        journal.finish_release(release.id, status, reason)  # type: ignore[arg-type]
    return release


def test_each_event_people_care_about_is_one_message_and_a_status_per_environment(
    config: AgentConfig, forge: Forge,
) -> None:
    journal = _journal(config)
    logs: list[str] = []
    notifier = open_notifier(config, journal, logs.append)
    assert notifier is not None
    one = _release(journal, "a", PROMOTED)
    two = _release(journal, "b", FAILED, "test: 1 story failed")
    three = _release(journal, "c", STAGED, "manual promotion: `agent promote 3`")
    four = _release(journal, "d", SUPERSEDED, "newer 0123abcd (before train)")
    five = _release(journal, "e")  # smoke test failed after the switch: undone
    journal.event("release.rolled_back", five.id, "production", detail="smoke: no reply")
    journal.finish_release(five.id, FAILED, "smoke: no reply")
    journal.set_production("production", three.id, kind="production.promoted", actor="alice",
                           reason="agent promote")
    journal.set_production("production", one.id, kind="production.rolled_back", actor="bob",
                           reason="rollback from release 3: bad answers", pause=True)
    journal.set_paused("production", False, "", "bob")  # not news: no message

    assert notifier.deliver(journal)
    assert forge.rejected == []
    chat = [r.body for r in forge.of("webhook")]
    assert [(m["event"], m["release"]) for m in chat] == [
        ("promoted", one.id), ("failed", two.id), ("staged", three.id),
        ("superseded", four.id), ("rolled_back", five.id), ("failed", five.id),
        ("promoted", three.id), ("rolled_back", one.id)]
    for message in chat:
        assert message["environment"] == "production"
        assert isinstance(message["text"], str) and f"release {message['release']}" in \
            message["text"]
        assert set(message) >= {"commit", "reason", "actor", "url", "at"}
    assert chat[1]["reason"] == "test: 1 story failed" and "1 story failed" in chat[1]["text"]
    assert chat[6]["actor"] == "alice" and chat[7]["actor"] == "bob"
    assert "bad answers" in chat[7]["text"] and "by bob" in chat[7]["text"]

    github = [(r.path.rsplit("/", 1)[1][:1], r.body["state"]) for r in forge.of("github")]
    assert github == [
        ("a", "pending"), ("a", "success"), ("b", "pending"), ("b", "failure"),
        ("c", "pending"), ("c", "pending"), ("d", "pending"), ("d", "error"),
        ("e", "pending"), ("e", "failure"), ("e", "failure"), ("c", "success"),
        ("a", "success"), ("c", "failure")]  # the rollback: a live again, c rolled back
    for request in forge.of("github"):
        assert request.path.startswith("/repos/acme/bot/statuses/")
        assert request.body["context"] == "rasa-gitops/production"
        assert len(request.body["description"]) <= 140
        assert request.body["target_url"].startswith("https://ci.example.com/r/")
    gitlab = [(r.path.rsplit("/", 1)[1][:1], r.body["state"]) for r in forge.of("gitlab")]
    assert [state for _, state in gitlab] == [
        "running", "success", "running", "failed", "running", "pending", "running",
        "canceled", "running", "failed", "failed", "success", "success", "failed"]
    assert all(r.path.startswith("/api/v4/projects/team%2Fbot/statuses/")
               and r.body["name"] == "rasa-gitops/production" for r in forge.of("gitlab"))


def test_a_failing_sink_is_retried_with_backoff_and_a_4xx_is_dropped_not_retried(
    config: AgentConfig, forge: Forge,
) -> None:
    journal = _journal(config)
    now = [100.0]
    logs: list[str] = []
    webhook, github, _ = load_sinks(config)
    assert isinstance(github, GitHubSink)
    notifier = Notifier(config.work_dir / "journal.sqlite", [webhook], logs.append,
                        backoff=Backoff(first=1.0, cap=8.0), clock=lambda: now[0])
    notifier.prime(journal)
    _release(journal, "a", FAILED, "validate: bad domain")
    forge.fail_next = [503, 500]
    assert not notifier.deliver(journal)
    assert forge.fail_next == [500] and not forge.of("webhook")
    assert not notifier.deliver(journal)  # not due yet: nothing is sent
    assert forge.fail_next == [500]
    now[0] += 1.0
    assert not notifier.deliver(journal)
    now[0] += 1.0
    assert not notifier.deliver(journal) and forge.fail_next == []  # waits 2 s now
    now[0] += 1.0
    assert notifier.deliver(journal)
    assert [m.body["event"] for m in forge.of("webhook")] == ["failed"]
    assert "attempt 1): HTTP 503" in logs[0] and "retrying in 1 s" in logs[0]
    assert "attempt 2): HTTP 500" in logs[1] and "retrying in 2 s" in logs[1]

    # A refused request (here: a wrong token, 401) never succeeds by waiting:
    # logged and skipped, so one bad event never holds up the ones after it.
    wrong_token = GitHubSink(github.item, Secret("ghp_wrongToken999", "$GH_TOKEN"))
    wrong = Notifier(config.work_dir / "journal.sqlite", [wrong_token], logs.append)
    wrong.prime(journal)
    _release(journal, "b", PROMOTED)
    assert wrong.deliver(journal)
    assert "HTTP 401" in logs[-1] and "dropped" in logs[-1]
    assert "ghp_wrongToken999" not in "\n".join(logs)


def test_the_daemon_thread_delivers_and_retries_while_nothing_waits_for_it(
    config: AgentConfig, forge: Forge,
) -> None:
    journal = _journal(config)
    logs: list[str] = []
    notifier = Notifier(config.work_dir / "journal.sqlite", load_sinks(config)[:1],
                        logs.append, backoff=Backoff(first=0.1, cap=0.2))
    notifier.prime(journal)
    forge.fail_next = [502]
    notifier.start()
    try:
        started = time.monotonic()
        _release(journal, "a", PROMOTED)  # returns at once: nothing waits for delivery
        assert time.monotonic() - started < 0.5
        deadline = time.monotonic() + 10
        while not forge.of("webhook") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        notifier.stop()
    assert [m.body["event"] for m in forge.of("webhook")] == ["promoted"]
    assert any("HTTP 502" in line for line in logs)


def test_after_a_restart_nothing_is_sent_twice_and_nothing_is_lost(
    config: AgentConfig, forge: Forge,
) -> None:
    journal = _journal(config)
    _release(journal, "z", PROMOTED)  # before notify existed: never announced
    sinks = load_sinks(config)[:1]
    first = Notifier(config.work_dir / "journal.sqlite", sinks, lambda _: None)
    first.prime(journal)
    _release(journal, "a", PROMOTED)
    assert first.deliver(journal)
    _release(journal, "b", FAILED, "train: out of memory")
    forge.fail_next = [503]
    assert not first.deliver(journal)  # the agent "crashes" here
    journal.close()

    again = Journal(config.work_dir / "journal.sqlite")
    second = Notifier(config.work_dir / "journal.sqlite", load_sinks(config)[:1],
                      lambda _: None)
    second.prime(again)
    assert second.deliver(again)
    assert [(m.body["event"], m.body["commit"][:1]) for m in forge.of("webhook")] == [
        ("promoted", "a"), ("failed", "b")]
    assert second.deliver(again) and len(forge.of("webhook")) == 2


def test_secrets_never_reach_logs_the_journal_or_errors(
    config: AgentConfig, forge: Forge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    journal = _journal(config)
    logs: list[str] = []
    notifier = open_notifier(config, journal, logs.append)
    assert notifier is not None
    _release(journal, "a", FAILED, "test: failed")
    forge.fail_next = [500, 500, 500]
    notifier.deliver(journal)
    # A chat whose host is gone: the URL (with its key) must not be in the error.
    monkeypatch.setenv("HOOK_URL", f"http://127.0.0.1:9/hooks/{HOOK_KEY}")
    gone = open_notifier(load_config(config.path), journal, logs.append)
    assert gone is not None
    deliver_briefly(journal, gone, seconds=1.0)
    assert logs and any("cannot connect" in line for line in logs)
    journal.close()
    stored = b"".join(p.read_bytes() for p in config.work_dir.glob("journal.sqlite*"))
    for secret in (HOOK_KEY, GH_TOKEN, GL_TOKEN, "hookSecret42"):
        assert secret not in "\n".join(logs)
        assert secret.encode() not in stored


def test_delivery_at_the_end_of_a_command_is_bounded_and_never_fails_it(
    config: AgentConfig, forge: Forge, monkeypatch: pytest.MonkeyPatch,
) -> None:
    hung = socket.socket()  # accepts connections (the kernel's backlog), never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    monkeypatch.setenv("HOOK_URL", f"http://127.0.0.1:{hung.getsockname()[1]}/hooks/x")
    config = load_config(config.path)
    journal = _journal(config)
    logs: list[str] = []
    started = time.monotonic()
    try:
        with (pytest.raises(FatalError, match="promote failed"),
              notifying(config, journal, logs.append, daemon_pid=None)):
            _release(journal, "a", FAILED, "switch: boom")
            raise FatalError("promote failed")  # the command's own error comes through
        took = time.monotonic() - started
    finally:
        hung.close()
    assert took < 3.0  # the 2 s bound, not a 10 s timeout per request
    assert forge.of("github") and forge.of("gitlab")  # the hung chat had only its share
    assert any("not delivered" in line for line in logs)
    # With a daemon running, its thread delivers: the command sends nothing.
    sent: list[str] = []
    with notifying(config, journal, sent.append, daemon_pid=12345):
        _release(journal, "b", FAILED, "switch: boom")
    assert sent == []


def test_a_journal_from_before_notifications_gains_the_cursor_table_on_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    with sqlite3.connect(path) as old:  # what an agent before notifications left
        old.execute("DROP TABLE notify_cursor")
    journal = Journal(path)
    _release(journal, "a", PROMOTED)
    newest = journal.events(limit=1)[0].id
    assert journal.notify_cursor("webhook:$X") == newest  # a new sink starts at the newest
    journal.set_notify_cursor("webhook:$X", newest - 1)
    assert journal.notify_cursor("webhook:$X") == newest - 1
    assert [e.id for e in journal.events_after(newest - 1)] == [newest]


def test_a_long_backlog_of_other_events_is_passed_in_one_delivery(
    config: AgentConfig, forge: Forge,
) -> None:
    journal = _journal(config)
    notifier = Notifier(config.work_dir / "journal.sqlite", load_sinks(config)[:1],
                        lambda _: None)
    notifier.prime(journal)
    for _ in range(250):  # what the supervisor journals while a chat is down, say
        journal.event("server.slow", None, "production", detail="5 s to answer")
    _release(journal, "a", PROMOTED)
    assert notifier.deliver(journal)
    assert [m.body["event"] for m in forge.of("webhook")] == ["promoted"]
    newest = journal.events(limit=1)[0].id
    assert journal.notify_cursor("webhook:$HOOK_URL") == newest


def test_statuses_are_per_environment_and_a_sink_may_hear_only_some_environments(
    tmp_path: Path, forge: Forge, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_URL", f"{forge.url}/hooks/{HOOK_KEY}")
    monkeypatch.setenv("GH_TOKEN", GH_TOKEN)
    items = notify_items(forge)[:2]
    items[0]["environments"] = ["production"]
    config = load_config(agent_config(
        tmp_path / "agent.yml", repo=tmp_path / "bot.git", notify=items,
        environments={"staging": STAGING_PLACE, "production": {"promote": "manual"}}))
    journal = _journal(config)
    notifier = open_notifier(config, journal, lambda _: None)
    assert notifier is not None
    staging = _release(journal, "a", PROMOTED, env="staging")
    journal.set_production("production", staging.id, kind="production.promoted",
                           actor="alice", reason="verified on staging")
    assert notifier.deliver(journal)
    assert forge.rejected == []
    assert [(m.body["event"], m.body["environment"]) for m in forge.of("webhook")] == [
        ("promoted", "production")]  # the chat hears production only
    assert [(r.body["context"], r.body["state"]) for r in forge.of("github")] == [
        ("rasa-gitops/staging", "pending"), ("rasa-gitops/staging", "success"),
        ("rasa-gitops/production", "success")]


def test_two_processes_never_deliver_at_once_nor_send_an_event_twice(
    config: AgentConfig, forge: Forge,
) -> None:
    """`agent once` from cron and a person's `agent rollback`, no daemon: each has
    its notifier, primed before the event; the event goes out once."""
    journal = _journal(config)
    cron, person = (open_notifier(config, journal, print) for _ in range(2))
    assert cron is not None and person is not None
    _release(journal, "a", PROMOTED)
    hold = ("import sys, time; from pathlib import Path; from agent.journal import Journal; "
            "Journal(Path(sys.argv[1])).acquire_lock('notify', 'delivering'); "
            "print('held', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", hold, str(journal.path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        assert not cron.deliver(journal)  # another process delivers now: left to it
        assert forge.of("webhook") == []
    finally:
        other.kill()
        other.wait()
    assert cron.deliver(journal)  # its lock died with it: taken over
    assert person.deliver(journal)
    assert [m.body["release"] for m in forge.of("webhook")] == [1]
    assert journal.lock_holder("notify") is None and forge.rejected == []


def test_a_secret_quoted_in_a_journal_detail_never_leaves_the_host(
    tmp_path: Path, forge: Forge, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rasa_token = "rasa-token-0123456789"
    monkeypatch.setenv("HOOK_URL", f"{forge.url}/hooks/{HOOK_KEY}")
    monkeypatch.setenv("GH_TOKEN", GH_TOKEN)
    monkeypatch.setenv("RASA_TOKEN_N", rasa_token)
    (tmp_path / "gitlab-token").write_text(GL_TOKEN + "\n", encoding="utf-8")
    config = load_config(agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git",
                                      model={"auth_token_env": "RASA_TOKEN_N"},
                                      notify=notify_items(forge)))
    journal = _journal(config)
    notifier = open_notifier(config, journal, print)
    assert notifier is not None
    _release(journal, "a", FAILED, f"activate_model: server said 'bad token {rasa_token}'")
    assert notifier.deliver(journal) and forge.rejected == []
    sent = [json.dumps(r.body) for api in ("webhook", "github", "gitlab") for r in forge.of(api)]
    assert sent and all(rasa_token not in body for body in sent)
    assert any("bad token ***" in body for body in sent)
