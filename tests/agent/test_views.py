"""Fast tests of the read-only views (`agent status`, `history`, `logs`) and the
daemon's pid file, over a small real journal in tmp_path (no Rasa, no targets)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent import daemon, views
from agent.config import AgentConfig, load_config
from agent.journal import Journal, ReleaseStatus, StepStatus
from hooks.core.errors import FatalError
from tests.support.agent_config import agent_config


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    return load_config(agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git"))


def _fill(config: AgentConfig) -> Journal:
    """Release 1 promoted (two steps), 2 failed at test, 3 staged, 4 running."""
    journal = Journal(config.work_dir / "journal.sqlite")
    rows = [("a", "one", ReleaseStatus.PROMOTED), ("b", "two", ReleaseStatus.FAILED),
            ("c", "three", ReleaseStatus.STAGED), ("d", "four", None)]
    for letter, message, status in rows:
        release = journal.new_release(environment="production", commit=letter * 40,
                                      branch="main", author="Ann", message=message)
        journal.start_release(release.id)
        journal.start_step(release.id, "train")
        journal.finish_step(release.id, "train", StepStatus.PASSED, "trained",
                            "".join(f"train line {i}\n" for i in range(5)))
        if status is ReleaseStatus.FAILED:
            journal.start_step(release.id, "test")
            journal.finish_step(release.id, "test", StepStatus.FAILED, "1 story failed",
                                "story greet failed\n")
            journal.finish_release(release.id, status, "test: 1 story failed")
        elif status is ReleaseStatus.PROMOTED:
            journal.update_release(release.id, model_path="/m/one.tar.gz",
                                   model_id="0123456789abcdef")
            journal.finish_release(release.id, status, promote_environment="production")
        elif status is not None:
            journal.finish_release(release.id, status, "manual policy")
    return journal


def test_views_need_an_existing_journal(config: AgentConfig) -> None:
    with pytest.raises(FatalError, match=r"no journal yet at .*`agent once`"):
        views.show_status(config)
    assert not (config.work_dir / "journal.sqlite").exists()


def test_status_of_an_empty_journal(config: AgentConfig,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    Journal(config.work_dir / "journal.sqlite").close()
    assert views.show_status(config) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("agent: not running; ") and out[0].endswith("branch main")
    assert out[1:] == ["production: nothing promoted yet", "in flight: nothing"]


def test_status_shows_production_staged_in_flight_and_last_failure(
        config: AgentConfig, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(config).close()
    assert views.show_status(config) == 0
    out = capsys.readouterr().out
    assert "production: release 1 aaaaaaaa 'one' since " in out
    assert "; model 0123456789ab\n" in out
    assert "  staged (waiting for `agent promote`): 3\n" in out
    assert "in flight: release 4 dddddddd running at train\n" in out
    assert "last failure: release 2 bbbbbbbb failed at " in out
    assert out.rstrip().endswith(": test: 1 story failed")
    assert "ReleaseStatus" not in out


def test_status_json_holds_plain_strings(config: AgentConfig,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _fill(config).close()
    assert views.show_status(config, as_json=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["environments"]["production"]["release"] == 1
    assert data["environments"]["production"]["staged"] == [3]
    assert data["in_flight"] == [{"release": 4, "commit": "d" * 40, "status": "running",
                                  "step": "train", "owner_alive": True}]
    assert data["last_failure"]["status"] == "failed"
    assert data["daemon_pid"] is None and data["lock"] is None


def test_history_table_and_json(config: AgentConfig,
                                capsys: pytest.CaptureFixture[str]) -> None:
    _fill(config).close()
    assert views.show_history(config, limit=3) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "status", "commit", "took", "created", "message"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["4", "running", "dddddddd"], ["3", "staged", "cccccccc"], ["2", "failed", "bbbbbbbb"]]
    assert lines[3].endswith("two  (test: 1 story failed)")
    assert views.show_history(config, as_json=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["status"]) for r in data] == [
        (4, "running"), (3, "staged"), (2, "failed"), (1, "promoted")]
    assert data[2]["steps"] == [
        {"name": "train", "status": "passed", "duration": data[2]["steps"][0]["duration"],
         "summary": "trained"},
        {"name": "test", "status": "failed", "duration": data[2]["steps"][1]["duration"],
         "summary": "1 story failed"}]


def test_history_of_no_releases(config: AgentConfig,
                                capsys: pytest.CaptureFixture[str]) -> None:
    Journal(config.work_dir / "journal.sqlite").close()
    assert views.show_history(config) == 0
    assert capsys.readouterr().out == "no releases yet\n"


def test_logs_show_steps_and_the_tail_of_each_log(config: AgentConfig,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _fill(config).close()
    assert views.show_logs(config, "r1", lines=2) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"release 1: promoted {'a' * 40} by Ann\n  one\n")
    assert "  model: /m/one.tar.gz model_id 0123456789abcdef\n" in out
    assert "\n== train: passed in " in out
    assert "   train line 3\n   train line 4\n" in out and "train line 2" not in out
    assert out.rstrip().endswith(f"full logs: {config.work_dir / 'logs' / 'release-1'}")
    assert views.show_logs(config, "#2", summary_only=True) == 0
    out = capsys.readouterr().out
    assert "  reason: test: 1 story failed\n" in out
    assert "== test: failed in " in out and "story greet failed" not in out


@pytest.mark.parametrize("text", ["latest", "9999"])
def test_logs_of_an_unknown_release_name_history(config: AgentConfig, text: str) -> None:
    _fill(config).close()
    with pytest.raises(FatalError, match="`agent history` lists them"):
        views.show_logs(config, text)


def test_daemon_running_reads_the_pid_file(config: AgentConfig) -> None:
    config.work_dir.mkdir(parents=True, exist_ok=True)
    assert daemon.daemon_running(config) is None  # no pid file
    daemon.pid_file(config).write_text("not a pid\n")
    assert daemon.daemon_running(config) is None
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        daemon.pid_file(config).write_text(f"{sleeper.pid}\n")
        assert daemon.daemon_running(config) == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    assert daemon.daemon_running(config) is None  # its process is gone
