"""A bot's ${VAR} never hands the agent's own secrets to the served Rasa server.

The served server's environment gets every variable the bot's endpoints.yml and
credentials.yml name (rasa_config.ServerConfig.env_names). One the agent reads
its own secret from (model.auth_token_env, image.registry_password_env, ...)
would have given the bot's server, its channels and its logs that secret
(found in review). Fast: no server starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_config
from agent.targets.base import DeployError, ModelRef
from agent.targets.factory import agent_secret_env, build_targets
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from agent.targets.rasa_config import render_server_config
from tests.support.agent_config import agent_config

ACTION_URL = "http://127.0.0.1:5055/webhook"
AGENT_ENV = {"RASA_TOKEN": "model.auth_token_env"}


def bot(tmp_path: Path, endpoints: str = "", credentials: str = "") -> Path:
    folder = tmp_path / "bot"
    folder.mkdir(exist_ok=True)
    if endpoints:
        (folder / "endpoints.yml").write_text(endpoints, encoding="utf-8")
    if credentials:
        (folder / "credentials.yml").write_text(credentials, encoding="utf-8")
    return folder


def render(tmp_path: Path, folder: Path) -> None:
    render_server_config(folder, tmp_path / "out", action_url=ACTION_URL,
                         default_tracker_db=tmp_path / "tracker.db", agent_env=AGENT_ENV)


@pytest.mark.parametrize(("endpoints", "credentials", "where"), [
    ("", "rest:\nslack:\n  slack_token: ${RASA_TOKEN}\n", "credentials.yml:3"),
    ("tracker_store:\n  type: redis\n  url: localhost\n  password: ${RASA_TOKEN}\n", "",
     "endpoints.yml:4"),
    # Rasa expands a scalar holding ${...} whole (os.path.expandvars): $NAME too.
    ("nlg:\n  url: http://${NLG_HOST}:5056/$RASA_TOKEN/x\n", "", "endpoints.yml:2"),
])
def test_a_bot_variable_naming_an_agent_secret_is_refused_with_file_line_and_fix(
        tmp_path: Path, endpoints: str, credentials: str, where: str) -> None:
    with pytest.raises(DeployError) as refused:
        render(tmp_path, bot(tmp_path, endpoints, credentials))
    message = str(refused.value)
    assert message.startswith(f"{where}: ${{RASA_TOKEN}} is the environment variable the "
                              "agent reads its own secret from (model.auth_token_env)")
    assert "use a different variable for the bot" in message
    assert not (tmp_path / "out" / "endpoints.yml").exists()


def test_other_variables_still_pass(tmp_path: Path) -> None:
    folder = bot(tmp_path, credentials="slack:\n  slack_token: ${BOT_SLACK_TOKEN}\n")
    config = render_server_config(folder, tmp_path / "out", action_url=ACTION_URL,
                                  default_tracker_db=tmp_path / "tracker.db",
                                  agent_env=AGENT_ENV)
    assert config.env_names == frozenset({"BOT_SLACK_TOKEN"})


def test_the_factory_passes_the_agents_secret_variables_and_activate_refuses_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_RASA_TOKEN", "s3cret-value")
    monkeypatch.setenv("AGENT_REGISTRY_PASSWORD", "another-s3cret")
    (tmp_path / "token").write_text("from-a-file\n", encoding="utf-8")
    path = agent_config(
        tmp_path / "agent.yml", repo=tmp_path / "bot.git",
        model={"serving": "blue_green", "url": "http://127.0.0.1:1",
               "auth_token_env": "AGENT_RASA_TOKEN"},
        image={"registry_password_env": "AGENT_REGISTRY_PASSWORD"},
        action_server={"ssh_key_passphrase_file": str(tmp_path / "token")})
    config = load_config(path)
    assert agent_secret_env(config) == {
        "AGENT_RASA_TOKEN": "model.auth_token_env",
        "AGENT_REGISTRY_PASSWORD": "image.registry_password_env",
    }
    target = build_targets(config).model
    assert isinstance(target, BlueGreenRasaTarget)
    folder = bot(tmp_path, credentials="rest:\nsocketio:\n  x: ${AGENT_REGISTRY_PASSWORD}\n")
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"")
    with pytest.raises(DeployError, match=r"credentials.yml:3: \$\{AGENT_REGISTRY_PASSWORD\} "
                       r".*\(image.registry_password_env\)"):
        target.activate(ModelRef("2", "m2", str(model), str(folder)), print)
    # Refused before anything started: no proxy, no server, no record.
    assert not target.proxy.running()
    assert not any(target.state_dir.glob("*.json"))
