"""Fast tests of the agent's parts that need no Rasa: config, journal, order, watch."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import order
from agent.config import ConfigError, load_config
from agent.journal import FAILED, INTERRUPTED, PROMOTED, RUNNING, Journal, LockHeld
from agent.progress import Progress
from agent.repo import Mirror
from agent.secrets import Redactor
from agent.targets.factory import serving_mode
from agent.watch import Watcher, request_sync
from hooks.core.errors import FatalError
from tests.support.agent_config import agent_config
from tests.support.bots import copy_bot
from tests.support.git import git
from tests.support.paths import COFFEEBOT

# ------------------------------------------------------------------- config


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_config_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "agent.yml", "repo: bot.git\nwork_dir: work\n"))
    assert cfg.repo == str(tmp_path / "bot.git")
    assert cfg.work_dir == tmp_path / "work"
    assert cfg.branch == "main"
    assert cfg["poll_interval"] == 60
    assert cfg["pipeline.test_stories"] == "tests/test_*.yml"
    assert [e.name for e in cfg.environments] == ["production"]
    assert cfg.is_local_repo
    remote = load_config(write(tmp_path / "r.yml", "repo: git@example.com:a/b.git\n"
                               "work_dir: /tmp/x\n"))
    assert not remote.is_local_repo


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ("work_dir: w\n", "repo", "is required"),
        ("repo: r\nwork_dir: w\npoll_interval: -3\n", "poll_interval", "greater than 0"),
        ("repo: r\nwork_dir: w\npoll_interval: soon\n", "poll_interval", "must be a number"),
        ("repo: r\nwork_dir: w\nbranch: 'a..b'\n", "branch", "not a valid git branch"),
        ("repo: r\nwork_dir: w\npipeline:\n  fail_on_warnings: 3\n",
         "pipeline.fail_on_warnings", "must be true or false"),
        ("repo: r\nwork_dir: w\naction_server:\n  port: 70000\n", "action_server.port",
         "TCP port"),
        ("repo: r\nwork_dir: w\nmodel:\n  url: localhost:5005\n", "model.url", "http(s) URL"),
        ("repo: r\nwork_dir: w\nenvironments:\n  production:\n    promote: sometimes\n",
         "environments.production.promote", "not one of"),
        ("repo: r\nwork_dir: w\nmodel:\n  auth_token: hunter22\n", "model.auth_token",
         "never written inline"),
        ("repo: r\nwork_dir: w\nmodel:\n  auth_token_env: NO_SUCH_VARIABLE_X\n",
         "model.auth_token_env", "NO_SUCH_VARIABLE_X is not set"),
        ("repo: r\nwork_dir: w\npipeline: [1]\n", "pipeline", "must be a mapping"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path: Path, body: str, key: str,
                                         problem: str) -> None:
    path = write(tmp_path / "agent.yml", body)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message
    assert "hunter22" not in message


def test_config_unknown_keys_warn_and_secrets_come_from_env_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_TEST_TOKEN", "s3cret-from-env")
    (tmp_path / "token").write_text("s3cret-from-file\n")
    cfg = load_config(write(tmp_path / "a.yml", "repo: r\nwork_dir: w\ncolour: blue\n"
                            "model:\n  auth_token_env: AGENT_TEST_TOKEN\n  speed: 3\n"))
    assert any("colour: unknown key" in w for w in cfg.warnings)
    assert any("model.speed: unknown key" in w for w in cfg.warnings)
    secret = cfg.secret("model.auth_token")
    assert secret is not None and secret.reveal() == "s3cret-from-env"
    assert "s3cret" not in repr(secret) and "s3cret" not in str(cfg.secrets)
    from_file = load_config(write(tmp_path / "b.yml", "repo: r\nwork_dir: w\n"
                                  "model:\n  auth_token_file: token\n"))
    token = from_file.secret("model.auth_token")
    assert token is not None and token.reveal() == "s3cret-from-file"


def test_config_yaml_syntax_error_is_one_clean_line(tmp_path: Path) -> None:
    path = write(tmp_path / "agent.yml", "repo: [unclosed\nwork_dir: w\n")
    with pytest.raises(FatalError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_cli_bad_config_exits_1_with_file_key_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "agent.yml", "repo: r\nwork_dir: w\npoll_interval: 0\n")
    done = subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(path), "status"],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert f"{path}: poll_interval: must be greater than 0" in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------ journal


def test_journal_release_lifecycle_and_production_pointer(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    first = journal.new_release(environment="production", commit="a" * 40, branch="main",
                                author="A", message="one")
    journal.start_release(first.id)
    journal.start_step(first.id, "train")
    journal.finish_step(first.id, "train", "passed", "trained", "line\n" * 5)
    journal.update_release(first.id, model_path="/m.tar.gz", model_id="m1",
                           required_actions=["b", "a"], action_server={"url": "u"})
    journal.finish_release(first.id, PROMOTED, promote_environment="production")
    second = journal.new_release(environment="production", commit="b" * 40, branch="main",
                                 author="A", message="two")
    journal.start_release(second.id)
    journal.finish_release(second.id, FAILED, "test: story failed")
    assert journal.production_release("production").id == first.id  # type: ignore[union-attr]
    again = journal.release(first.id)
    assert again.required_actions == ("a", "b")
    assert again.action_server == {"url": "u"}
    assert [s.name for s in journal.steps(first.id)] == ["train"]
    assert journal.last_failure().id == second.id  # type: ignore[union-attr]
    kinds = [e.kind for e in journal.events()]
    assert "release.promoted" in kinds and "release.failed" in kinds
    with pytest.raises(FatalError, match="no release 99"):
        journal.release(99)


def test_journal_detects_release_orphaned_by_a_killed_process(tmp_path: Path) -> None:
    """A real process opens a release and is SIGKILLed mid-step."""
    path = tmp_path / "j.sqlite"
    script = (
        "import sys, time\n"
        "from agent.journal import Journal\n"
        "j = Journal(__import__('pathlib').Path(sys.argv[1]))\n"
        "r = j.new_release(environment='production', commit='c'*40, branch='main',"
        " author='A', message='m')\n"
        "j.acquire_lock('deploy', 'release pipeline')\n"
        "j.start_release(r.id); j.start_step(r.id, 'train')\n"
        "print('ready', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    journal = Journal(path)
    orphans = journal.orphaned_releases()
    assert [r.status for r in orphans] == [RUNNING]
    with pytest.raises(LockHeld, match="stale lock"):
        journal.acquire_lock("deploy", "next")
    journal.mark_interrupted(orphans[0].id, "crash")
    assert journal.release(orphans[0].id).status == INTERRUPTED
    assert journal.steps(orphans[0].id)[0].status == INTERRUPTED
    journal.acquire_lock("deploy", "next")  # the dead owner's lock went with it
    assert journal.orphaned_releases() == []


def test_journal_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    with pytest.raises(RuntimeError), journal.transaction() as tx:
        tx.execute("INSERT INTO releases (environment, commit_sha, branch, status, created_at)"
                   " VALUES ('p', 'x', 'main', 'queued', 0)")
        raise RuntimeError("boom")
    assert journal.releases() == []


# -------------------------------------------------------------------- order


def live(model: set[str], served: set[str]) -> order.LiveState:
    return order.LiveState(frozenset(model), frozenset(served))


def test_order_action_server_first_when_it_adds_actions() -> None:
    plan = order.plan(live({"a"}, {"a"}), frozenset({"a", "b"}), frozenset({"a", "b"}))
    assert plan.switches == (order.ACTION_SERVER, order.MODEL)


def test_order_model_first_when_the_new_server_drops_an_action() -> None:
    plan = order.plan(live({"a", "b"}, {"a", "b"}), frozenset({"a"}), frozenset({"a"}))
    assert plan.switches == (order.MODEL, order.ACTION_SERVER)
    assert "drops b" in plan.why


def test_order_refuses_when_no_order_is_safe() -> None:
    with pytest.raises(order.NoSafeOrder, match="no order is safe"):
        order.plan(live({"a"}, {"a"}), frozenset({"b"}), frozenset({"b"}))
    with pytest.raises(order.NoSafeOrder, match="would not serve: c"):
        order.plan(live(set(), set()), frozenset({"c"}), frozenset({"d"}))


def test_order_single_switch_and_first_release() -> None:
    assert order.plan(live({"a"}, {"a", "b"}), frozenset({"b"}), None).switches == (
        order.MODEL,)
    first = order.plan(live(set(), set()), frozenset({"a"}), frozenset({"a"}))
    assert first.switches == (order.ACTION_SERVER, order.MODEL)


# -------------------------------------------------------------------- watch


def test_watchdog_sees_a_push_to_the_bare_repo(tmp_path: Path) -> None:
    bare = tmp_path / "bot.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("1")
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "one")
    git(src, "push", "-q", str(bare), "main")
    watcher = Watcher(tmp_path / "work", local_repo=bare, branch="main", poll_interval=3600)
    watcher.start()
    try:
        (src / "a.txt").write_text("2")
        git(src, "commit", "-qam", "two")
        git(src, "push", "-q", str(bare), "main")
        # A generous bound only so a broken watcher fails instead of hanging;
        # the speed figure lives in bench/agent_latency.py.
        assert watcher.wait(timeout=30) == ["push"]
        time.sleep(0.5)
        watcher.wait(timeout=0.01)  # drain the rest of the push's file events
        # The agent's own fetch reads the ref; a read must not count as a push.
        Mirror(str(bare), "main", tmp_path / "mirror.git").fetch()
        assert watcher.wait(timeout=1.0) == ["poll"]
        request_sync(tmp_path / "work")
        assert watcher.wait(timeout=30) == ["sync"]
    finally:
        watcher.stop()
    idle = Watcher(tmp_path / "idle", local_repo=None, branch="main", poll_interval=60)
    assert idle.wait(timeout=0.01) == ["poll"]  # nothing happened: a poll timeout
    assert 54 <= idle.next_poll_in() <= 66  # 60 s with 10 % jitter


def test_mirror_lists_superseded_commits_and_reports_missing_branch(tmp_path: Path) -> None:
    bare = tmp_path / "bot.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q", "-b", "main")
    shas = []
    for n in range(4):
        (src / "f").write_text(str(n))
        git(src, "add", "-A")
        git(src, "commit", "-q", "-m", f"c{n}")
        shas.append(git(src, "rev-parse", "HEAD"))
    git(src, "push", "-q", str(bare), "main")
    mirror = Mirror(str(bare), "main", tmp_path / "work" / "repo.git")
    assert mirror.fetch() == shas[-1]
    assert mirror.superseded(shas[0], shas[3]) == shas[1:3]
    assert mirror.commit(shas[2]).message == "c2"
    with pytest.raises(FatalError, match="branch 'nope' does not exist"):
        Mirror(str(bare), "nope", tmp_path / "w2" / "repo.git").fetch()
    with pytest.raises(FatalError, match="cannot fetch"):
        Mirror(str(tmp_path / "missing.git"), "main", tmp_path / "w3" / "repo.git").fetch()


def test_progress_redacts_and_writes_plain_lines_off_a_terminal() -> None:
    import io

    out = io.StringIO()
    progress = Progress(out, tty=False, redact=Redactor(["tok-12345"]))
    progress.step_started(1, "train")
    progress.line("using tok-12345 now")
    progress.step_finished(1, "train", "passed", 1.0, "ok")
    text = out.getvalue()
    assert "tok-12345" not in text and "using *** now" in text
    assert "\r" not in text
    assert time.strftime("%H:") in text


# ---------------------------------------------------- tick: bad input, no Rasa


def _bare_bot_repo(tmp_path: Path) -> tuple[Path, Path]:
    bare = tmp_path / "bot.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    src = copy_bot(COFFEEBOT, tmp_path / "src")
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "bot")
    git(src, "push", "-q", str(bare), "main")
    return bare, src


def _agent(tmp_path: Path, **keys: object) -> object:
    from agent.config import load_config
    from agent.runtime import Agent

    cfg = agent_config(tmp_path / "agent.yml", work_dir="work",
                       model={"manage_server": False, "url": "http://127.0.0.1:9"}, **keys)
    return Agent.open(load_config(cfg), Progress(quiet=True))


def test_tick_on_a_missing_branch_or_repo_gives_an_error_and_a_journal_entry(
    tmp_path: Path,
) -> None:
    from agent.runtime import Agent
    from agent.tick import tick

    bare, _ = _bare_bot_repo(tmp_path)
    agent = _agent(tmp_path, repo=bare, branch="release")
    assert isinstance(agent, Agent)
    result = tick(agent)
    assert result.outcome == "error"
    assert "branch 'release' does not exist" in result.message
    assert [e.kind for e in agent.journal.events()] == ["fetch.failed"]
    assert agent.journal.releases() == []
    agent.close()
    (tmp_path / "x").mkdir()
    other = _agent(tmp_path / "x", repo=tmp_path / "gone.git")
    assert isinstance(other, Agent)
    assert "cannot fetch" in tick(other).message


def test_a_missing_rasa_command_fails_the_release_at_train(tmp_path: Path) -> None:
    from agent.runtime import Agent
    from agent.tick import tick

    bare, _ = _bare_bot_repo(tmp_path)
    agent = _agent(tmp_path, repo=bare, rasa_command="/nonexistent/rasa")
    assert isinstance(agent, Agent)
    result = tick(agent)
    assert result.status == FAILED
    release = agent.journal.release(result.release_id or 0)
    assert release.reason == "train: command not found: /nonexistent/rasa. Install it, or " \
        "point RASA_GITOPS_RASA (for rasa) at the right executable."
    steps = {s.name: s.status for s in agent.journal.steps(release.id)}
    assert steps == {"checkout": "passed", "validate": "passed", "train": "failed"}
    assert agent.journal.production("production") is None
    assert tick(agent).outcome == "idle"  # a failed commit is not retried by itself


def test_noise_filter_drops_python_warnings_but_keeps_rasa_output() -> None:
    from agent.runner import NoiseFilter

    noise = NoiseFilter()
    lines = [
        "/x/site-packages/rasa/core/tracker_store.py:1044: MovedIn20Warning: Deprecated API",
        "  Base: DeclarativeMeta = declarative_base()",
        "/x/pkg_resources/__init__.py:3117: DeprecationWarning: Deprecated call to `ns`.",
        "Implementing implicit namespace packages (as specified in PEP 420) is preferred",
        "  declare_namespace(pkg)",
        "Your Rasa model is trained and saved at 'models/release-1.tar.gz'.",
        "  - action: utter_goodbye  # predicted: utter_you_are_welcome",
    ]
    kept = [line for line in lines if not noise.drop(line)]
    assert kept == lines[5:]


def test_doctor_reports_each_check_and_fails_on_an_unreachable_repo(tmp_path: Path) -> None:
    cfg = agent_config(tmp_path / "agent.yml", repo=tmp_path / "gone.git", work_dir="work",
                       rasa_command="/bin/true",
                       model={"manage_server": False, "url": "http://127.0.0.1:9"})
    done = subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(cfg), "doctor"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    rows = {line[6:].split("  ")[0].strip(): line[:4].strip()
            for line in done.stdout.splitlines()}
    assert rows["config"] == rows["work dir"] == rows["rasa"] == "OK", done.stdout
    assert rows["git"] == rows["rasa server"] == "FAIL" and rows["docker"] == "SKIP"
    assert f"{tmp_path / 'gone.git'} is not reachable" in done.stdout
    assert "http://127.0.0.1:9 does not answer" in done.stdout


def test_doctor_checks_haproxy_only_for_blue_green_serving(tmp_path: Path) -> None:
    def doctor(**model: object) -> dict[str, str]:
        cfg = agent_config(tmp_path / "agent.yml", repo=tmp_path / "gone.git",
                           rasa_command="/bin/true",
                           model={"url": "http://127.0.0.1:9", **model})
        done = subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(cfg), "doctor"],
                              capture_output=True, text=True, timeout=300)
        return {line[6:].split("  ")[0].strip(): " ".join(line.split())
                for line in done.stdout.splitlines()}

    missing = doctor(serving="blue_green", haproxy=str(tmp_path / "no-haproxy"))["haproxy"]
    assert missing.startswith("FAIL") and "apt-get install haproxy" in missing
    if shutil.which("haproxy"):
        assert doctor(serving="blue_green")["haproxy"].startswith("OK haproxy HAProxy version")
    assert doctor(serving="put_model")["haproxy"].startswith("SKIP")
    # An unmanaged server is someone else's: only put_model can reach it.
    assert doctor(manage_server=False, serving=None)["haproxy"].startswith("SKIP")


def test_blue_green_is_the_default_for_a_managed_server_and_refused_for_another(
        tmp_path: Path) -> None:
    def mode(**model: object) -> str:
        cfg = agent_config(tmp_path / "agent.yml", repo=tmp_path / "repo.git", model=model)
        return serving_mode(load_config(cfg))

    assert mode(serving=None) == "blue_green"
    assert mode(serving=None, manage_server=False) == "put_model"
    assert mode(serving="put_model") == "put_model"
    with pytest.raises(ConfigError, match=r"with model\.manage_server: false use put_model"):
        mode(serving="blue_green", manage_server=False)


def test_the_warm_standby_is_on_for_rasa_processes_off_and_refused_for_containers(
        tmp_path: Path) -> None:
    from agent.targets.factory import standby

    def keeps(**model: object) -> bool:
        cfg = agent_config(tmp_path / "agent.yml", repo=tmp_path / "repo.git",
                           model={"serving": "blue_green", **model})
        return standby(load_config(cfg))

    assert keeps() is True
    assert keeps(standby=False) is False
    assert keeps(runtime="docker") is False
    assert keeps(runtime="docker", standby=False) is False
    with pytest.raises(ConfigError, match=r"model\.standby.*runtime docker has no warm standby"):
        keeps(runtime="docker", standby=True)
