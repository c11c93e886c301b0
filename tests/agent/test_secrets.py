"""Fast tests of agent/secrets.py: a Secret never prints, the Redactor blanks values."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.secrets import Redactor, Secret, SecretUnavailable, is_secret_name, read_secret
from tests.support.agent_config import agent_config


def test_secret_prints_its_origin_never_its_value() -> None:
    secret = Secret("hunter2-token", "$RASA_TOKEN")
    assert secret.reveal() == "hunter2-token"
    for shown in (str(secret), repr(secret), f"{secret}", str([secret]), str({"t": secret})):
        assert "hunter2" not in shown
        assert "$RASA_TOKEN" in shown


def test_redactor_blanks_every_secret_longest_first() -> None:
    redact = Redactor(["abcd1234", "abcd1234-extended"])
    assert redact("x abcd1234-extended y abcd1234 z") == "x *** y *** z"


def test_redactor_ignores_short_and_empty_values_and_learns_new_ones() -> None:
    redact = Redactor(["", "abc"])
    assert redact("abc is a word") == "abc is a word"
    redact.add("tok-12345")
    redact.add("tok-12345")  # twice is once
    redact.add("xy")
    assert redact("Bearer tok-12345; xy") == "Bearer ***; xy"


def test_read_secret_from_env_or_file_and_why_it_cannot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("H3_TEST_TOKEN", " from-env \n")
    from_env = read_secret("env", "H3_TEST_TOKEN", tmp_path)
    assert from_env.reveal() == "from-env" and from_env.origin == "$H3_TEST_TOKEN"
    (tmp_path / "token").write_text("from-file\n", encoding="utf-8")
    from_file = read_secret("file", "token", tmp_path)  # relative to the config's folder
    assert from_file.reveal() == "from-file" and from_file.origin == str(tmp_path / "token")
    monkeypatch.delenv("H3_TEST_TOKEN")
    with pytest.raises(SecretUnavailable, match="H3_TEST_TOKEN is not set"):
        read_secret("env", "H3_TEST_TOKEN", tmp_path)
    with pytest.raises(SecretUnavailable, match=r"cannot read .*missing"):
        read_secret("file", "missing", tmp_path)
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(SecretUnavailable, match="empty is empty"):
        read_secret("file", "empty", tmp_path)


def test_secret_names() -> None:
    assert is_secret_name("auth_token") and is_secret_name("registry_password")
    assert not is_secret_name("url") and not is_secret_name("ssh_user")


def test_a_secret_too_short_to_redact_is_refused_when_the_config_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short for the redactor: refused
    path = agent_config(tmp_path / "agent.yml", repo=tmp_path / "bot.git",
                        model={"auth_token_env": "SHORT_TOKEN"})
    with pytest.raises(ConfigError, match=r"model\.auth_token_env: \$SHORT_TOKEN holds fewer "
                                          "than 4 characters; use a real secret"):
        load_config(path)
