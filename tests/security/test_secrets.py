"""Secrets never leak, and what the agent talks to refuses strangers.

One release is run with every secret the agent takes from its environment
(the Rasa server's auth token, a registry password, an SSH key passphrase),
with action-code tests that print their whole environment, and one more
release with a wrong token that fails on a 401. Then every output a user can
see or a file the agent wrote is searched for the secret values: the stdout and
stderr of `agent once`, `agent status` (and --json), `agent history --json`,
`agent logs` of both releases, every file under the work dir (the SQLite
journal and its WAL included, bytes as they are on disk), and a `.dump` of the
journal. Only the 0600 token file the agent keeps for its managed server may
hold the token.

A second release, of a spy bot (tests/support/env_dump_bot.py) on a host of
its own, has the commit's custom NLU component and action code report their
environment and command line from every process they run in, while `ps` is
sampled during the release.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from agent.journal import FAILED, PROMOTED, Journal
from agent.targets.local_process import free_port
from tests.support.agent_config import agent_config
from tests.support.deploy_host import Host
from tests.support.env_dump_bot import DUMP_VARIABLE, env_dump_repo
from tests.support.git import git
from tests.support.paths import REPO_ROOT
from tests.support.procs import processes_showing, processes_showing_any

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(1800)]

PRINT_ENV = ("import os; print('ENV', sorted(os.environ)); "
             "print('VALUES', [v for k, v in sorted(os.environ.items()) if k.startswith('RGT')])")


def _secret_config(host: Host, name: str) -> Path:
    return agent_config(
        host.root / f"agent-{name}.yml", like=host.config,
        pipeline={"action_tests": f"{sys.executable} -c \"{PRINT_ENV}\""},
        model={"auth_token_env": "RGT_RASA_TOKEN"},
        action_server={"ssh_key_passphrase_env": "RGT_SSH_PASSPHRASE"},
        image={"registry_user": "deployer", "registry_password_env": "RGT_REGISTRY_PASSWORD"},
        smoke={"conversations": [[{"say": "hello"}]]},
    )


def _run(host: Host, config: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(config), *args],
                          capture_output=True, text=True, env={**host.env(), **env},
                          timeout=900)
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout + done.stderr


def test_no_secret_appears_in_any_output_log_or_journal(host: Host) -> None:
    if host.journal().production_release("production") is None:  # run alone: a first release
        host.push_change("first release", retrain=True)
        assert host.agent("once").returncode == 0
    token = host.token()  # the token the running Rasa server was started with
    values = {
        "RGT_RASA_TOKEN": token,
        "RGT_REGISTRY_PASSWORD": "reg-" + secrets.token_urlsafe(16),
        "RGT_SSH_PASSPHRASE": "ssh-" + secrets.token_urlsafe(16),
    }
    config = _secret_config(host, "secrets")
    outputs: list[str] = []

    host.push_change("released with every secret", retrain=False)
    outputs.append(_run(host, config, values, "once"))
    # The servers that release left running (Rasa, the action server, the
    # forwarder) run the commit's code: no command line or environment on
    # this host holds a secret (hooks/core/child_env.py, rasa_launch.py).
    for value in values.values():
        assert processes_showing(value) == []
    journal = host.journal()
    good = journal.last_release()
    assert good is not None and good.status == PROMOTED, good and good.reason
    steps = {s.name: s for s in journal.steps(good.id)}
    # Promoted: every /status call of the release carried the token from the env.
    assert steps["smoke"].status == "passed"
    # Action-code tests run in a clean environment: not one secret variable.
    assert "ENV [" in steps["action_tests"].log_excerpt
    assert "RGT_" not in steps["action_tests"].log_excerpt
    assert "VALUES []" in steps["action_tests"].log_excerpt

    wrong = {**values, "RGT_RASA_TOKEN": "wrong-" + secrets.token_urlsafe(16)}
    host.push_change("released with a wrong token", retrain=False)
    outputs.append(_run(host, config, wrong, "once"))
    bad = host.journal().last_release()
    assert bad is not None and bad.status == FAILED
    assert "refused the auth token (401)" in bad.reason, bad.reason

    for args in (("status",), ("status", "--json"), ("history", "--json"),
                 ("logs", str(good.id), "--lines", "500"),
                 ("logs", str(bad.id), "--lines", "500")):
        outputs.append(_run(host, config, values, *args))

    leaks = [*values.values(), wrong["RGT_RASA_TOKEN"]]
    work = host.root / "work"
    token_file = work / "rasa-server" / "auth-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    _assert_nowhere(leaks, outputs, work, except_file=token_file)


def _assert_nowhere(leaks: list[str], outputs: list[str], work: Path,
                    except_file: Path | None = None) -> None:
    """None of `leaks` in `outputs`, in any file under `work` (the SQLite journal
    and its WAL as bytes on disk, every log) but `except_file`, or in a `.dump`
    of the journal."""
    for text in outputs:
        for value in leaks:
            assert value not in text
    files = 0
    for path in work.rglob("*"):
        if not path.is_file() or path == except_file or "train-cache" in path.parts:
            continue
        files += 1
        data = path.read_bytes()
        for value in leaks:
            assert value.encode() not in data, f"{value[:4]}... found in {path}"
    assert files > 0
    db = sqlite3.connect(work / "journal.sqlite")
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    assert all(value not in dump for value in leaks)


def test_the_rasa_server_the_agent_starts_refuses_requests_without_the_token(
    host: Host,
) -> None:
    if not (host.root / "work" / "rasa-server" / "auth-token").is_file():
        pytest.skip("needs the managed Rasa server of the release above")
    for method, path in (("GET", "/status"), ("PUT", "/model"), ("GET", "/domain")):
        for params in ({}, {"token": "not-" + secrets.token_urlsafe(8)}):
            answer = requests.request(method, f"{host.rasa_url}{path}", params=params,
                                      json={"model_file": "/etc/passwd"}, timeout=30)
            assert answer.status_code == 401, (method, path, answer.status_code)
    ok = requests.get(f"{host.rasa_url}/status", params={"token": host.token()}, timeout=30)
    assert ok.status_code == 200
    # It took the token on its standard input: no command line or environment
    # on this host shows it (agent/targets/rasa_launch.py).
    assert processes_showing(host.token()) == []


def test_an_inline_secret_in_the_config_is_refused_without_echoing_it(tmp_path: Path) -> None:
    value = "inline-" + secrets.token_urlsafe(12)
    config = agent_config(tmp_path / "agent.yml", repo=f"{tmp_path}/bot.git", work_dir="work",
                          model={"auth_token": value})
    done = subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(config), "status"],
                          capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert done.returncode == 1
    assert "secrets are never written inline" in done.stderr
    assert value not in done.stdout + done.stderr


def _sample_processes(agent: subprocess.Popen[str], values: list[str],
                      ) -> list[tuple[int, str, str]]:
    """`ps` during the release, every 0.1 s until the agent exits: each process
    whose command line, or environment (but the agent's own), shows a value."""
    seen: list[tuple[int, str, str]] = []
    while agent.poll() is None:
        seen += processes_showing_any(values, environ_ok={agent.pid})
        time.sleep(0.1)
    return seen


def test_the_commits_own_code_sees_no_secret_of_a_release_that_used_them_all(
        tmp_path: Path, rasa_bin: Path) -> None:
    """A custom NLU component and the action code report their environment and
    command line from every process they run in (validate, train, test, the Rasa
    server, the action server, the action-code tests): the release is given every
    secret the config names, and none reaches them, `ps`, a log, the journal or
    the CLI. The dump folder reaches them only through `pipeline.env` and
    `action_server.env`. Target cost: 90 s (light config, one release)."""
    bare, src = env_dump_repo(tmp_path)
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "a bot that reports what it sees")
    git(src, "push", "-q", "deploy", "main")
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    rasa_port = free_port()
    values = {
        "RGT_RASA_TOKEN": "tok-" + secrets.token_urlsafe(16),
        "RGT_REGISTRY_PASSWORD": "reg-" + secrets.token_urlsafe(16),
        "RGT_SSH_PASSPHRASE": "ssh-" + secrets.token_urlsafe(16),
    }
    config = agent_config(
        tmp_path / "agent.yml", repo=bare, work_dir="work", rasa_command=rasa_bin,
        pipeline={"env": [DUMP_VARIABLE], "action_tests": f"{sys.executable} action_test.py"},
        action_server={"port": free_port(), "env": [DUMP_VARIABLE],
                       "ssh_key_passphrase_env": "RGT_SSH_PASSPHRASE"},
        # blue_green (the default a team gets): its Rasa servers find the bot's
        # own custom component in the release's tree, with no PYTHONPATH of ours.
        model={"url": f"http://127.0.0.1:{rasa_port}", "auth_token_env": "RGT_RASA_TOKEN",
               "serving": "blue_green"},
        image={"registry_user": "deployer", "registry_password_env": "RGT_REGISTRY_PASSWORD"},
        smoke={"conversations": [[{"say": "hello"}]]},
    )
    env = {**os.environ, **values, DUMP_VARIABLE: str(dumps),
           "PATH": f"{rasa_bin.parent}{os.pathsep}{os.environ['PATH']}",
           "RASA_TELEMETRY_ENABLED": "false",
           # The forwarder runs `-m agent...` from this checkout.
           "PYTHONPATH": str(REPO_ROOT)}
    leaks = list(values.values())

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(config), *args],
                              capture_output=True, text=True, env=env, timeout=900)
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout + done.stderr

    started = time.monotonic()
    agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "-c", str(config), "once"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env, start_new_session=True)
    try:
        seen = _sample_processes(agent, leaks)
        output = agent.communicate(timeout=60)[0]
        seen += processes_showing_any(leaks)  # the servers it left running
        release = Journal(tmp_path / "work" / "journal.sqlite").last_release()
        assert release is not None and release.status == PROMOTED, (release, output[-3000:])
        outputs = [output, *(cli(*args) for args in (
            ("status",), ("status", "--json"), ("history", "--json"),
            ("logs", str(release.id), "--lines", "2000")))]
    finally:
        cli("stop")
    print(f"release with the spy bot: {time.monotonic() - started:.0f} s")
    assert seen == [], seen

    records = [json.loads(path.read_text(encoding="utf-8")) for path in dumps.iterdir()]
    where = {(r["role"], " ".join(r["cmdline"])) for r in records}
    # Each place the commit's code runs reported (and so got pipeline.env /
    # action_server.env): training, the Rasa server, the action server, its tests.
    assert any(role == "component-create" and " train " in cmd for role, cmd in where), where
    assert any(role == "component-create" and "--enable-api" in cmd for role, cmd in where), where
    assert any(role == "action-server" and "actions" in cmd for role, cmd in where), where
    assert any(role == "action-test" for role, _ in where), where
    for record in records:
        text = json.dumps(record)
        for name, value in values.items():
            assert value not in text, f"{name}'s value reached {record['role']}"
            assert name not in record["environ"], f"{name} reached {record['role']}"
    _assert_nowhere(leaks, outputs, tmp_path / "work")
