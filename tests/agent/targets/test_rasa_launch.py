"""`rasa run` gets its auth token on standard input, never on a command line:
checked on real processes (the token is read back from what they saw, and
looked for in every /proc/<pid>/cmdline and environ)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import requests

from agent.targets.rasa_launch import (
    ENV_FILE_VARIABLE,
    TOKEN_FILE_VARIABLE,
    container_entrypoint,
    launch,
)
from hooks.core.process import spawn, stop
from tests.support.fake_rasa_server import fake_model, fake_rasa_server
from tests.support.procs import processes_showing
from tests.support.services import free_port

ECHO = "import sys, json; print(json.dumps(sys.argv))\n"


def _run(argv: list[str], stdin: str, cwd: Path) -> list[str]:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(cwd)}, timeout=60, check=True)
    return list(json.loads(done.stdout))


def test_a_script_and_a_module_both_see_the_token_as_their_last_argument(
        tmp_path: Path) -> None:
    script = tmp_path / "rasa"
    script.write_text(f"#!{sys.executable}\n{ECHO}", encoding="utf-8")
    script.chmod(0o755)
    (tmp_path / "argv_echo.py").write_text(ECHO, encoding="utf-8")
    warnings: list[str] = []
    token = "-starts-with-a-dash-" + secrets.token_urlsafe(8)

    as_script = launch([str(script)], ["run", "--port", "1"], token, warnings.append)
    assert token not in " ".join(as_script.argv)
    assert _run(as_script.argv, as_script.stdin, tmp_path) == [
        str(script), "run", "--port", "1", f"--auth-token={token}"]

    as_module = launch([sys.executable, "-m", "argv_echo"], ["run"], token, warnings.append)
    assert token not in " ".join(as_module.argv)
    assert _run(as_module.argv, as_module.stdin, tmp_path)[1:] == [
        "run", f"--auth-token={token}"]
    assert warnings == []


def test_a_container_reads_its_token_and_the_bots_values_from_files(tmp_path: Path) -> None:
    """The Swarm fleet's tasks (container_entrypoint): the token and the bot's
    ${VAR} values come from secret files, and neither path stays in Rasa's
    environment."""
    token_file, env_file = tmp_path / "token", tmp_path / "env"
    token_file.write_text("file-token\n", encoding="utf-8")
    env_file.write_text(json.dumps({"BOT_DB_PASSWORD": "s3cret"}), encoding="utf-8")
    (tmp_path / "env_echo.py").write_text(
        "import json, os, sys\nprint(json.dumps([sys.argv[1:], os.environ.get("
        "'BOT_DB_PASSWORD'), sorted(k for k in os.environ if k.startswith('RASA_GITOPS'))]))\n",
        encoding="utf-8")
    _python, *launcher, _rasa = container_entrypoint()
    argv = [sys.executable, *launcher, "env_echo", "run"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          check=True, env={"PYTHONPATH": str(tmp_path),
                                           TOKEN_FILE_VARIABLE: str(token_file),
                                           ENV_FILE_VARIABLE: str(env_file)})
    assert json.loads(done.stdout) == [["run", "--auth-token=file-token"], "s3cret", []]


def test_a_command_that_is_not_python_gets_the_token_on_its_command_line_with_a_warning(
        tmp_path: Path) -> None:
    wrapper = tmp_path / "rasa"
    wrapper.write_text("#!/bin/sh\nexec true\n", encoding="utf-8")
    wrapper.chmod(0o755)
    warnings: list[str] = []
    token = secrets.token_urlsafe(8)
    start = launch([str(wrapper)], ["run"], token, warnings.append)
    assert start.argv == [str(wrapper), "run", f"--auth-token={token}"] and start.stdin == ""
    assert len(warnings) == 1 and "visible to local users" in warnings[0]
    assert token not in warnings[0]


def test_a_spawned_server_answers_with_the_token_it_never_showed(tmp_path: Path) -> None:
    rasa = fake_rasa_server(tmp_path / "bin")
    model = fake_model(tmp_path / "model.tar.gz", "model-1")
    token = secrets.token_urlsafe(16)
    port = free_port()
    start = launch([str(rasa)], ["run", "--enable-api", "--port", str(port), "--interface",
                                 "127.0.0.1", "--model", str(model)], token, print)
    pid = spawn(start.argv, cwd=tmp_path, log_file=tmp_path / "rasa.log",
                stdin_text=start.stdin)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/status",
                                      params={"token": token}, timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, (tmp_path / "rasa.log").read_text()
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["model_id"] == "model-1"
        assert processes_showing(token) == []
    finally:
        stop(pid)
