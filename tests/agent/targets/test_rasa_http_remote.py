"""rasa_http with a Rasa server on "another host": models travel over SFTP, JWT auth.

Real: `rasa run --enable-api --jwt-secret S --jwt-method HS256` 3.6 (the test
venv's), started by this test and owned by it; OpenSSH's sshd on a loopback port
(the `sshd` fixture) stands for the other host, its host key named in a
known_hosts file; two light models of the example bot that greet differently
(tests/support/light_models.py, trained once per test run). A folder under
tmp_path stands for that host's disk: the bytes reach it through paramiko's SFTP
over the real sshd, and the agent's local copy is deleted before Rasa loads it,
so only the remote path can work.

The JWT secret is the test's own: on this test-owned Rasa's command line (Rasa 3.6
reads it nowhere else), and the agent gets it as a `Secret`, as the config's
model.jwt_secret_env/_file would give it. The agent's own log lines never hold it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from agent.secrets import Secret
from agent.targets.base import DeployError
from agent.targets.docker.ssh import SshSettings
from agent.targets.rasa_api import JwtAuth, RasaApi
from agent.targets.rasa_http import RasaHttpModelTarget
from agent.targets.remote_models import RemoteModels
from tests.support.light_models import GREETINGS, light_coffeebots
from tests.support.rasa_run import start_rasa_run, stop_rasa_run
from tests.support.services import SshServer, free_port

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(600)]

JWT_SECRET = "remote-jwt-secret-5b2f9c1e0d7a4e3b8c6f2a1d9e0b7c4f"  # HS256 wants 32+ bytes
WRONG_SECRET = "wrong-jwt-secret-00112233445566778899aabbccddeeff"


def start_rasa(rasa_bin: Path, folder: Path, bot: Path, port: int) -> subprocess.Popen[bytes]:
    empty = folder / "no-model"
    empty.mkdir()
    return start_rasa_run(rasa_bin, folder, port, [
        "--interface", "127.0.0.1", "--model", str(empty), "--credentials",
        str(bot / "credentials.yml"), "--jwt-secret", JWT_SECRET, "--jwt-method", "HS256"])


def settings(sshd: SshServer, known_hosts: Path) -> SshSettings:
    return SshSettings(host=sshd.host, port=sshd.port, user=sshd.user, key_file=sshd.key_file,
                       known_hosts=known_hosts, timeout=10)


def target(url: str, remote: RemoteModels, secret: str, state: Path) -> RasaHttpModelTarget:
    return RasaHttpModelTarget(url=url, token=None, state_dir=state, rasa_argv=["rasa"],
                               manage_server=False, action_endpoint="http://127.0.0.1:9/webhook",
                               load_timeout=120, remote=remote,
                               jwt_auth=JwtAuth(Secret(secret, "test"), "HS256"))


def test_models_travel_over_sftp_and_load_with_a_jwt(
        tmp_path: Path, rasa_bin: Path, sshd: SshServer) -> None:
    models = light_coffeebots(str(rasa_bin))
    (bot, trained1), (_bot2, trained2) = models["one"], models["two"]
    # The agent's own copies: deleted once uploaded, so Rasa can load only the remote ones.
    local = tmp_path / "agent-models"
    local.mkdir()
    model1, model2 = (Path(shutil.copy(m, local / m.name)) for m in (trained1, trained2))
    remote_dir = tmp_path / "remote-host" / "models"
    remote_dir.mkdir(parents=True)
    foreign = remote_dir / "someone-elses-model.tar.gz"  # never the agent's to delete
    foreign.write_bytes(b"not ours")
    old_ours = remote_dir / f"rasa-gitops-r0-{'0' * 16}.tar.gz"  # an earlier upload of ours
    old_ours.write_bytes(b"old")
    os.utime(old_ours, (time.time() - 86400, time.time() - 86400))

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    remote = RemoteModels(settings(sshd, sshd.known_hosts), str(remote_dir), keep=2)
    rasa_http = target(url, remote, JWT_SECRET, tmp_path / "state")
    lines: list[str] = []
    rasa = start_rasa(rasa_bin, tmp_path, bot, port)
    try:
        first = rasa_http.upload("1", model1, lines.append)
        remote1 = Path(first.location)
        assert remote1.parent == remote_dir and remote1.name.startswith("rasa-gitops-r1-")
        assert first.location != str(model1.resolve())  # PUT /model gets the remote path
        assert remote1.read_bytes() == model1.read_bytes()
        assert not [p for p in remote_dir.iterdir() if p.name.endswith(".part")]
        model1.unlink()
        rasa_http.activate(first, lines.append)  # returns once GET /status confirms it
        status = RasaApi(url, None, JwtAuth(Secret(JWT_SECRET, "test"))).request(
            "GET", "/status", 10).json()
        assert status["model_id"] == first.model_id
        assert status["model_file"] == remote1.name  # Rasa loaded the copy over SFTP
        assert rasa_http.talk("someone", "hello") == [GREETINGS["one"]]

        again = rasa_http.upload("1", trained1, lines.append)  # same bytes: not sent again
        assert again.location == first.location
        assert any("already on" in line for line in lines)

        second = rasa_http.upload("2", model2, lines.append)
        model2.unlink()
        rasa_http.activate(second, lines.append)
        assert rasa_http.live_model_id() == second.model_id
        assert rasa_http.talk("someone else", "hello") == [GREETINGS["two"]]
        # keep=2: the live model and the one before; the older one of ours went,
        # someone else's file stayed.
        assert sorted(p.name for p in remote_dir.iterdir()) == sorted(
            [foreign.name, remote1.name, Path(second.location).name])

        # A JWT signed with the wrong secret: a clear 401, production untouched.
        wrong = target(url, remote, WRONG_SECRET, tmp_path / "state-wrong")
        with pytest.raises(DeployError) as refused:
            wrong.activate(first, lines.append)
        message = str(refused.value)
        assert "refused the agent's JWT (401)" in message and "model.jwt_secret" in message
        assert WRONG_SECRET not in message and JWT_SECRET not in message
        assert rasa_http.live_model_id() == second.model_id
    finally:
        stop_rasa_run(rasa)
    assert lines and not [line for line in lines if JWT_SECRET in line or WRONG_SECRET in line]
    assert any("over SFTP" in line for line in lines)


def test_a_wrong_or_unknown_host_key_is_refused_before_any_byte_goes(
        tmp_path: Path, rasa_bin: Path, sshd: SshServer) -> None:
    (_bot, model), _ = light_coffeebots(str(rasa_bin)).values()
    remote_dir = tmp_path / "models"
    remote_dir.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "impostor")], check=True)
    kind, key = (tmp_path / "impostor.pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"[{sshd.host}]:{sshd.port} {kind} {key}\n")
    unknown = tmp_path / "known_hosts_other_host"
    unknown.write_text(f"[{sshd.host}]:{sshd.port + 1} {kind} {key}\n")
    for known_hosts, problem in ((wrong, "does not match"),
                                 (unknown, "refusing an unknown host key")):
        remote = RemoteModels(settings(sshd, known_hosts), str(remote_dir))
        with pytest.raises(DeployError) as refused:
            target("http://127.0.0.1:9", remote, JWT_SECRET, tmp_path / "s").upload(
                "1", model, print)
        assert problem in str(refused.value) and str(sshd.port) in str(refused.value)
    assert list(remote_dir.iterdir()) == []
