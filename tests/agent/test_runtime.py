"""The composition root: `Agent.open` builds every part once, redaction first."""

from __future__ import annotations

from pathlib import Path

from agent.config import load_config
from agent.progress import Progress
from agent.runtime import Agent


def test_open_redacts_the_token_the_model_target_made(tmp_path: Path) -> None:
    config = tmp_path / "agent.yml"
    config.write_text(f"repo: {tmp_path / 'bot.git'}\nwork_dir: {tmp_path / 'work'}\n",
                      encoding="utf-8")
    agent = Agent.open(load_config(config), Progress(quiet=True))
    try:
        # The managed (blue/green, the default) Rasa servers get a token the
        # agent makes (no config holds it).
        token = (tmp_path / "work" / "rasa-blue-green" / "auth-token").read_text(encoding="utf-8")
        assert agent.targets.model.secrets() == [token.strip()]
        assert agent.progress.redact(f"rasa run --auth-token {token.strip()}") == \
            "rasa run --auth-token ***"
        assert agent.targets.action_server.secrets() == []
        assert agent.environment.name == "production"
    finally:
        agent.close()
