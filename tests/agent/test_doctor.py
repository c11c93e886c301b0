"""`agent doctor` against the real parts: a local repo, the htpasswd registry, OpenSSH.

Every check is listed whatever the others found; OK, WARN, FAIL or SKIP; exit
1 only on a FAIL; and no secret (registry password, key passphrase, a token in
the `repo:` URL) in what it prints. Target cost: under 15 s (no Rasa: a fake
`rasa --version`; each doctor run is in-process).
"""

from __future__ import annotations

import secrets
import socket
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from agent.doctor import run_doctor
from agent.targets.local_process import free_port
from tests.support.agent_config import agent_config
from tests.support.git import git, init_repo
from tests.support.services import Registry, SshServer

ALL_ROWS = {"config", "work dir", "git", "rasa", "rasa server", "haproxy", "action port",
            "registry", "ssh key", "ssh host key", "ssh", "model host", "notify", "docker"}


def _doctor(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str], str]:
    code = run_doctor(config)
    out = capsys.readouterr().out
    rows = {line[6:].split("  ")[0].strip(): line[:4].strip()
            for line in out.splitlines() if line[:4].strip() in ("OK", "WARN", "FAIL", "SKIP")}
    return code, rows, out


@pytest.fixture()
def base(tmp_path: Path) -> dict[str, object]:
    """Config keys of a healthy local set-up: a bare repo with `main`, a fake
    `rasa --version`, a free action port, put_model serving."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "domain.yml").write_text("version: '3.1'\n", encoding="utf-8")
    init_repo(src)
    bare = tmp_path / "bot.git"
    git(tmp_path, "clone", "-q", "--bare", str(src), str(bare))
    rasa = tmp_path / "rasa"
    rasa.write_text("#!/bin/sh\necho 'Rasa Version      :         3.6.21'\n", encoding="utf-8")
    rasa.chmod(rasa.stat().st_mode | stat.S_IXUSR)
    return {"repo": bare, "rasa_command": rasa, "work_dir": tmp_path / "work",
            "action_server": {"port": free_port()},
            "model": {"url": f"http://127.0.0.1:{free_port()}", "serving": "put_model"}}


def test_a_healthy_local_set_up_is_all_ok_and_exits_0(
        tmp_path: Path, base: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, out = _doctor(agent_config(tmp_path / "agent.yml", **base), capsys)
    assert code == 0, out
    assert set(rows) == ALL_ROWS, out
    assert {rows[n] for n in ("config", "work dir", "git", "rasa", "rasa server",
                              "action port")} == {"OK"}, out
    assert {rows[n] for n in ("haproxy", "registry", "ssh key", "ssh host key", "ssh",
                              "model host", "docker")} == {"SKIP"}, out
    assert "0 failed" in out


def test_a_config_that_does_not_load_still_lists_every_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "agent.yml"
    bad.write_text("repo: [not, a, string]\nwork_dir: work\n", encoding="utf-8")
    code, rows, out = _doctor(bad, capsys)
    assert code == 1
    assert rows["config"] == "FAIL" and set(rows) == ALL_ROWS, out
    assert {state for name, state in rows.items() if name != "config"} == {"SKIP"}


def test_a_failure_and_a_warning_do_not_stop_the_other_checks_and_hide_url_tokens(
        tmp_path: Path, base: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    token = "tok3n" + secrets.token_hex(8)
    config = agent_config(tmp_path / "agent.yml", **{
        **base, "repo": f"https://user:{token}@127.0.0.1:9/bot.git", "unknown_key": 1})
    code, rows, out = _doctor(config, capsys)
    assert code == 1
    assert set(rows) == ALL_ROWS, out
    assert rows["config"] == "WARN" and "unknown_key" in out  # a warning is not a failure
    assert rows["git"] == "FAIL" and "https://127.0.0.1:9/bot.git is not reachable" in out
    assert rows["rasa"] == rows["rasa server"] == "OK", out  # checked after the failure
    assert token not in out


def _registry_config(tmp_path: Path, base: dict[str, object], registry: Registry,
                     **image: object) -> Path:
    return agent_config(tmp_path / "agent.yml", **{
        **base, "action_server": {"target": "docker", "port": free_port(),
                                  "docker_host": f"unix://{tmp_path}/no-docker.sock"},
        "image": {"repository": f"{registry.address}/bot-actions", **image}})


def test_the_registry_check_tells_accepted_refused_and_missing_credentials(
        tmp_path: Path, base: dict[str, object], auth_registry: Registry,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert auth_registry.password
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # no `docker login`
    wrong = "wrong-" + secrets.token_hex(8)
    with_password = {"registry_user": "deployer", "registry_password_env": "RGT_REG_PASSWORD"}

    monkeypatch.setenv("RGT_REG_PASSWORD", auth_registry.password)
    code, rows, out = _doctor(_registry_config(tmp_path, base, auth_registry, **with_password),
                              capsys)
    assert rows["registry"] == "OK" and "accepts the credentials of user deployer" in out, out
    # The engine isn't there: its row fails, after and beside the registry's.
    assert rows["docker"] == "FAIL" and code == 1 and set(rows) == ALL_ROWS, out
    assert auth_registry.password not in out

    monkeypatch.setenv("RGT_REG_PASSWORD", wrong)
    code, rows, out = _doctor(_registry_config(tmp_path, base, auth_registry, **with_password),
                              capsys)
    assert rows["registry"] == "FAIL" and "refused the credentials of user deployer" in out
    assert "HTTP 401" in out and wrong not in out and set(rows) == ALL_ROWS

    code, rows, out = _doctor(_registry_config(tmp_path, base, auth_registry), capsys)
    assert rows["registry"] == "FAIL" and "needs credentials" in out, out

    dead = Registry(f"127.0.0.1:{free_port()}")
    code, rows, out = _doctor(_registry_config(tmp_path, base, dead, **with_password), capsys)
    assert rows["registry"] == "FAIL" and "does not answer" in out, out


def _encrypted_copy(key: Path, dest: Path, passphrase: str) -> Path:
    """`key` with a passphrase, written in-process (no passphrase on a command line)."""
    private = serialization.load_ssh_private_key(key.read_bytes(), None)
    dest.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(passphrase.encode())))
    dest.chmod(0o600)
    return dest


def _ssh_config(tmp_path: Path, base: dict[str, object], sshd: SshServer, key: Path,
                known_hosts: Path, **extra: object) -> Path:
    return agent_config(tmp_path / "agent.yml", **{
        **base, "action_server": {
            "target": "docker_ssh", "port": free_port(), "ssh_host": sshd.host,
            "ssh_port": sshd.port, "ssh_user": sshd.user, "ssh_key_file": key,
            "ssh_known_hosts": known_hosts, **extra},
        "image": {"repository": f"127.0.0.1:{free_port()}/bot-actions"}})


def test_the_ssh_checks_tell_host_key_and_passphrase_problems_apart(
        tmp_path: Path, base: dict[str, object], sshd: SshServer,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    passphrase = "pass-" + secrets.token_hex(8)
    wrong = "wrong-" + secrets.token_hex(8)
    key = _encrypted_copy(sshd.key_file, tmp_path / "id_enc", passphrase)
    with_passphrase = {"ssh_key_passphrase_env": "RGT_SSH_PASSPHRASE"}

    monkeypatch.setenv("RGT_SSH_PASSPHRASE", passphrase)
    code, rows, out = _doctor(_ssh_config(tmp_path, base, sshd, key, sshd.known_hosts,
                                          **with_passphrase), capsys)
    assert rows["ssh key"] == rows["ssh host key"] == rows["ssh"] == "OK", out
    assert "opens with the passphrase from $RGT_SSH_PASSPHRASE" in out
    assert "host key verified" in out
    # Nothing listens on the registry's port: a failure beside the SSH rows.
    assert rows["registry"] == "FAIL" and code == 1 and set(rows) == ALL_ROWS, out

    monkeypatch.setenv("RGT_SSH_PASSPHRASE", wrong)
    code, rows, out = _doctor(_ssh_config(tmp_path, base, sshd, key, sshd.known_hosts,
                                          **with_passphrase), capsys)
    assert rows["ssh key"] == "FAIL" and "does not open" in out, out
    assert rows["ssh host key"] == "OK" and rows["ssh"] == "FAIL", out
    assert rows["docker"] == "SKIP" and set(rows) == ALL_ROWS
    assert wrong not in out and passphrase not in out

    code, rows, out = _doctor(_ssh_config(tmp_path, base, sshd, key, sshd.known_hosts),
                              capsys)
    assert rows["ssh key"] == "FAIL" and "is encrypted and no passphrase" in out, out

    empty = tmp_path / "known_hosts"
    empty.write_text("", encoding="utf-8")
    monkeypatch.setenv("RGT_SSH_PASSPHRASE", passphrase)
    code, rows, out = _doctor(_ssh_config(tmp_path, base, sshd, key, empty, **with_passphrase),
                              capsys)
    assert rows["ssh key"] == "OK" and rows["ssh host key"] == "FAIL", out
    assert f"[{sshd.host}]:{sshd.port} is not in {empty}" in out
    assert rows["ssh"] == "FAIL" and "unknown host key" in out and code == 1
    assert passphrase not in out

    allowed = _ssh_config(tmp_path, base, sshd, key, empty, ssh_allow_unknown_hosts=True,
                          **with_passphrase)
    code, rows, out = _doctor(allowed, capsys)
    assert rows["ssh host key"] == "WARN" and rows["ssh"] == "OK", out


def test_the_model_host_check_logs_in_over_sftp_and_refuses_an_unknown_host_key(
        tmp_path: Path, base: dict[str, object], sshd: SshServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "remote-models"
    folder.mkdir()
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")

    def config(known_hosts: Path, remote_dir: Path) -> Path:
        return agent_config(tmp_path / "agent.yml", **{**base, "model": {
            **base["model"], "manage_server": False, "ssh_host": sshd.host,  # type: ignore[dict-item]
            "ssh_port": sshd.port, "ssh_user": sshd.user, "ssh_key_file": sshd.key_file,
            "ssh_known_hosts": known_hosts, "remote_model_dir": remote_dir}})

    _, rows, out = _doctor(config(sshd.known_hosts, folder), capsys)
    assert rows["model host"] == "OK" and f"{folder} works" in out, out
    _, rows, out = _doctor(config(empty, folder), capsys)
    assert rows["model host"] == "FAIL" and "refusing an unknown host key" in out, out
    _, rows, out = _doctor(config(sshd.known_hosts, tmp_path / "missing"), capsys)
    assert rows["model host"] == "FAIL" and "create it" in out, out
    assert list(folder.iterdir()) == []  # the doctor only asks


def test_the_notify_check_connects_to_each_sink_and_never_prints_the_webhook_secret(
        tmp_path: Path, base: dict[str, object], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts; nothing is sent to it
    port = listener.getsockname()[1]
    hook = f"http://127.0.0.1:{port}/hooks/T0-{secrets.token_hex(8)}"
    monkeypatch.setenv("HOOK_URL", hook)
    monkeypatch.setenv("GH_TOKEN", "gh-" + secrets.token_hex(8))
    sinks = [{"type": "webhook", "url_env": "HOOK_URL"},
             {"type": "github", "repository": "acme/bot", "token_env": "GH_TOKEN",
              "api_url": f"http://127.0.0.1:{free_port()}"}]
    try:
        code, rows, out = _doctor(agent_config(tmp_path / "a.yml", **base, notify=sinks), capsys)
        assert code == 1 and rows["notify"] == "FAIL", out
        assert "cannot connect to github (127.0.0.1:" in out, out
        assert "webhook" not in out.split("notify", 1)[1].splitlines()[0], out  # it answered
        code, rows, out = _doctor(agent_config(tmp_path / "b.yml", **base, notify=sinks[:1]),
                                  capsys)
        assert rows["notify"] == "OK", out
        assert f"1 sink(s) reachable: 127.0.0.1:{port}" in out, out
    finally:
        listener.close()
    assert hook.rsplit("/", 1)[1] not in out and "/hooks/" not in out
    monkeypatch.delenv("HOOK_URL")
    code, rows, out = _doctor(agent_config(tmp_path / "c.yml", **base, notify=sinks[:1]), capsys)
    # Read with the config's other secrets: the config row says it, the rest can't run.
    assert rows["config"] == "FAIL" and rows["notify"] == "SKIP", out
    assert "notify[1].url_env: environment variable HOOK_URL is not set" in out, out
    code, rows, out = _doctor(agent_config(tmp_path / "d.yml", **base), capsys)
    assert rows["notify"] == "SKIP", out


def test_each_environments_servers_get_their_own_rows(
        tmp_path: Path, base: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        staging_port = taken.getsockname()[1]
        config = agent_config(tmp_path / "agent.yml", **{**base, "environments": {
            "staging": {"action_server": {"port": staging_port},
                        "model": {"url": f"http://127.0.0.1:{free_port()}"}},
            "production": {"promote": "manual"}}})
        code, rows, out = _doctor(config, capsys)
    finally:
        taken.close()
    assert code == 1, out
    assert rows["action port (staging)"] == "FAIL" and str(staging_port) in out, out
    assert rows["action port (production)"] == "OK", out
    assert rows["rasa server (staging)"] == rows["rasa server (production)"] == "OK", out
    assert "registry" in rows and "registry (staging)" not in rows  # the agent's own: once
