"""The agent's train step uses the hooks' training fingerprint and custom-action rule."""

from __future__ import annotations

from pathlib import Path

from agent.steps.train import required_actions, training_fingerprint
from hooks.project.fingerprint import rasa_identity, tree_fingerprint
from hooks.project.layout import layout_for
from tests.support.bots import copy_bot
from tests.support.paths import COFFEEBOT
from tests.support.seeds import replace


def _rasa_env(root: Path, version: str) -> list[str]:
    """A `rasa` in an environment that says which Rasa it holds, as a venv does."""
    rasa = root / "bin" / "rasa"
    rasa.parent.mkdir(parents=True)
    rasa.write_text("#!/bin/sh\n", encoding="utf-8")
    rasa.chmod(0o755)
    (root / "lib" / "python3.10" / "site-packages" / f"rasa-{version}.dist-info").mkdir(
        parents=True)
    return [str(rasa)]


def test_the_fingerprint_is_the_hooks_and_names_the_rasa_version(tmp_path: Path) -> None:
    bot = copy_bot(COFFEEBOT, tmp_path / "bot")
    old = _rasa_env(tmp_path / "old", "3.6.20")
    new = _rasa_env(tmp_path / "new", "3.6.21")
    assert training_fingerprint(bot, new) == tree_fingerprint(layout_for(bot), "rasa==3.6.21")
    assert rasa_identity(new) == "rasa==3.6.21"
    assert training_fingerprint(bot, old) != training_fingerprint(bot, new)
    # A rebuilt environment of the same Rasa (another path) keeps the fingerprint.
    again = _rasa_env(tmp_path / "rebuilt", "3.6.21")
    assert training_fingerprint(bot, again) == training_fingerprint(bot, new)


def test_required_actions_include_an_overridden_default_action(tmp_path: Path) -> None:
    bot = copy_bot(COFFEEBOT, tmp_path / "bot")
    assert required_actions(bot) == {"action_tell_opening_hours"}
    replace(bot / "domain.yml", "  - action_tell_opening_hours\n",
            "  - action_tell_opening_hours\n  - action_session_start\n")
    assert required_actions(bot) == {"action_tell_opening_hours", "action_session_start"}
