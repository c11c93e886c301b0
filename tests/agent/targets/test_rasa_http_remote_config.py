"""rasa_http with a Rasa server on another host (model.ssh_*) and JWT auth, in the
agent's config: what the factory builds and what it refuses. Fast: no server starts,
no SSH connection is made (the end-to-end test is test_rasa_http_remote.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from agent.config import ConfigError, load_config
from agent.secrets import Secret
from agent.targets.factory import build_targets
from agent.targets.rasa_api import JWT_LIFETIME, JwtAuth, RasaApi
from agent.targets.rasa_http import RasaHttpModelTarget
from tests.support.agent_config import agent_config

SECRET = "jwt-secret-7c1d0e55aa-0123456789abcdef0123456789abcdef"  # 48+ bytes: HS384
REMOTE = {"manage_server": False, "url": "http://rasa.example:5005",
          "ssh_host": "rasa.example", "ssh_port": 2222, "ssh_user": "deploy",
          "ssh_known_hosts": "/etc/rasa-gitops/known_hosts",
          "remote_model_dir": "/srv/rasa/models", "remote_keep": 4}


def build(tmp_path: Path, **model: Any) -> RasaHttpModelTarget:
    path = agent_config(tmp_path / "agent.yml", repo=str(tmp_path / "repo"),
                        work_dir=str(tmp_path / "w"), model=model)
    target = build_targets(load_config(path)).model
    assert isinstance(target, RasaHttpModelTarget)
    return target


def refusal(tmp_path: Path, **model: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, **model)
    return caught.value


def test_builds_the_remote_folder_and_the_ssh_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_PASSPHRASE", "key-passphrase-3e4f5a6b")
    target = build(tmp_path, **REMOTE, ssh_key_file="/etc/rasa-gitops/id_ed25519",
                   ssh_key_passphrase_env="KEY_PASSPHRASE")
    assert target.remote is not None and not target.manage_server
    settings = target.remote.settings
    assert (settings.host, settings.port, settings.user) == ("rasa.example", 2222, "deploy")
    assert settings.known_hosts == Path("/etc/rasa-gitops/known_hosts")
    assert not settings.allow_unknown_hosts  # an unknown host key is always refused
    assert settings.key_file == Path("/etc/rasa-gitops/id_ed25519")
    assert settings.key_passphrase == "key-passphrase-3e4f5a6b"
    assert "key-passphrase" not in repr(settings)
    assert target.remote.model_dir == "/srv/rasa/models" and target.remote.keep == 4
    assert build(tmp_path, manage_server=False).remote is None


def test_a_jwt_carries_the_admin_role_rasa_wants_and_expires_soon(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RASA_JWT", SECRET)
    target = build(tmp_path, manage_server=False, jwt_secret_env="RASA_JWT",
                   jwt_method="HS384")
    assert target.secrets() == []  # no token made: the server someone else runs has its own
    auth = JwtAuth(Secret(SECRET, "$RASA_JWT"), "HS384")
    header = RasaApi("http://x", None, auth).headers()["Authorization"]
    assert header.startswith("Bearer ")
    payload = jwt.decode(header.removeprefix("Bearer "), SECRET, algorithms=["HS384"])
    assert payload["user"]["role"] == "admin" and payload["user"]["username"]
    assert 0 < payload["exp"] - time.time() <= JWT_LIFETIME
    assert SECRET not in repr(auth) and SECRET not in header


@pytest.mark.parametrize(("model", "key", "problem"), [
    ({**REMOTE, "manage_server": True}, "model.manage_server", "must be false with model.ssh_host"),
    ({k: v for k, v in REMOTE.items() if k != "manage_server"}, "model.manage_server",
     "must be false"),
    ({**REMOTE, "remote_model_dir": None}, "model.remote_model_dir", "absolute folder"),
    ({**REMOTE, "remote_model_dir": "models"}, "model.remote_model_dir", "absolute folder"),
    ({**REMOTE, "target": "rasa_x", "rasa_x_url": "http://x", "rasa_x_api_token_env": "T"},
     "model.ssh_host", "rasa_http only"),
    ({"manage_server": False, "jwt_secret_env": "RASA_JWT", "auth_token_env": "RASA_TOKEN"},
     "model.jwt_secret_env", "not both"),
    ({"jwt_secret_env": "RASA_JWT"}, "model.manage_server", "must be false with model.jwt"),
    ({"manage_server": False, "jwt_secret_env": "RASA_JWT", "jwt_method": "RS256"},
     "model.jwt_method", "not one of"),
])
def test_refusals_name_the_file_and_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            model: dict[str, Any], key: str,
                                            problem: str) -> None:
    monkeypatch.setenv("RASA_JWT", SECRET)
    monkeypatch.setenv("RASA_TOKEN", "rasa-token-0a9b8c7d")
    monkeypatch.setenv("T", "rasa-x-token-11aa22")
    error = refusal(tmp_path, **model)
    assert error.key == key and problem in error.problem
    assert str(error).startswith(f"{tmp_path / 'agent.yml'}: {key}: ")
    assert SECRET not in str(error)
