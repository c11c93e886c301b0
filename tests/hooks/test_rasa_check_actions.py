"""rasa-check-actions: needed custom actions are implemented, implemented ones are listed.

The static reader runs in-process (it never imports the bot's code); the
--import mode and the pre-commit runs use real subprocesses, real git and the
real rasa-sdk of the test venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hooks.actions.code import read_statically
from hooks.rasa_check_actions import main
from tests.support.git import git
from tests.support.hook_main import call_main
from tests.support.precommit import use_hook
from tests.support.seeds import append, line_of, replace

ACTIONS_PY = "actions/actions.py"
HOURS_MISSING = "[missing-action] custom action 'action_tell_opening_hours'"


def _run_hook(bot: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    return call_main(main, bot, args, capsys)


def test_static_reader_finds_the_example_action_with_its_line(coffeebot: Path) -> None:
    code = read_statically([coffeebot / ACTIONS_PY])
    assert [(a.name, a.path.name, a.line) for a in code.actions] == [
        ("action_tell_opening_hours", "actions.py", 9)
    ]
    assert code.issues == []


def test_example_bot_passes(coffeebot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = _run_hook(coffeebot, capsys=capsys)
    assert code == 0, output
    assert "0 error(s)" in output


def test_missing_and_orphaned_actions_are_reported_with_path_and_line(
    coffeebot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Renaming the implementation orphans it and leaves the domain's action missing.
    replace(coffeebot / ACTIONS_PY, '"action_tell_opening_hours"', '"action_tell_hours"')
    listed = line_of(coffeebot / "domain.yml", "  - action_tell_opening_hours")
    code, output = _run_hook(coffeebot, ACTIONS_PY, "domain.yml", capsys=capsys)
    assert code == 1, output
    assert f"domain.yml:{listed}: {HOURS_MISSING}" in output
    assert "actions/actions.py:9: [orphaned-action] action 'action_tell_hours'" in output
    assert "Traceback" not in output


def test_story_actions_form_validation_and_custom_slot_mappings_are_needed(
    coffeebot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace(coffeebot / "domain.yml", "  - action_tell_opening_hours\n",
            "  - action_tell_opening_hours\n  - validate_order_form\n")
    append(coffeebot / "domain.yml", "forms:\n  order_form:\n    required_slots:\n      - size\n")
    replace(coffeebot / "domain.yml", "    mappings:\n      - type: from_entity\n",
            "    mappings:\n      - type: custom\n        action: action_guess_size\n"
            "      - type: from_entity\n")
    append(coffeebot / "data/rules.yml",
           "  - rule: remember\n    steps:\n      - intent: thank\n"
           "      - action: action_remember_thanks\n")
    validator = line_of(coffeebot / "domain.yml", "  - validate_order_form")
    mapping = line_of(coffeebot / "domain.yml", "      - type: custom")
    code, output = _run_hook(coffeebot, capsys=capsys)
    assert code == 1, output
    assert f"domain.yml:{validator}: [missing-action] custom action 'validate_order_form'" \
           in output
    assert f"domain.yml:{mapping}: [missing-action] custom action 'action_guess_size' " \
           "(the custom mapping of slot 'size')" in output
    rule_step = line_of(coffeebot / "data/rules.yml", "      - action: action_remember_thanks")
    assert f"data/rules.yml:{rule_step}: [missing-action] custom action 'action_remember_thanks' " \
           "(run by rule 'remember')" in output

    # Implementing them (a FormValidationAction among them) clears every finding.
    append(coffeebot / ACTIONS_PY, '''

class ValidateOrderForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_order_form"


GUESS = "action_guess_size"


class GuessSize(Action):
    def name(self) -> Text:
        return GUESS


class RememberThanks(Action):
    def name(self) -> Text:
        """The name the rule uses."""
        return "action_remember_thanks"
''')
    replace(coffeebot / ACTIONS_PY, "from rasa_sdk import Action, Tracker",
            "from rasa_sdk import Action, Tracker\nfrom rasa_sdk.forms import FormValidationAction")
    replace(coffeebot / "domain.yml", "  - validate_order_form\n",
            "  - validate_order_form\n  - action_guess_size\n  - action_remember_thanks\n")
    code, output = _run_hook(coffeebot, capsys=capsys)
    assert code == 0, output


def test_unreadable_names_and_syntax_errors_are_located(
    coffeebot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    append(coffeebot / ACTIONS_PY, '''

class Dynamic(Action):
    def name(self) -> Text:
        return f"action_{'dyn'}"
''')
    (coffeebot / "actions" / "broken.py").write_text("def oops(:\n", encoding="utf-8")
    code, output = _run_hook(coffeebot, capsys=capsys)
    assert code == 1, output
    assert "actions/actions.py:23: [action-code] cannot read the action name of class " \
           "Dynamic" in output
    assert "--import" in output
    assert "actions/broken.py:1: [action-code] syntax error" in output


def test_import_mode_lists_the_real_actions_in_a_subprocess(
    coffeebot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace(coffeebot / ACTIONS_PY, '"action_tell_opening_hours"', '"action_tell_hours"')
    before = set(sys.modules)
    listed = line_of(coffeebot / "domain.yml", "  - action_tell_opening_hours")
    code, output = _run_hook(coffeebot, "--import", capsys=capsys)
    assert code == 1, output
    assert f"domain.yml:{listed}: {HOURS_MISSING}" in output
    assert "actions/actions.py:9: [orphaned-action] action 'action_tell_hours'" in output
    # The bot's code ran in another interpreter, never in the hook's.
    assert not {m for m in set(sys.modules) - before if m.startswith("actions")}


def test_import_mode_catches_an_import_error(
    coffeebot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace(coffeebot / ACTIONS_PY, "from rasa_sdk import Action, Tracker",
            "from rasa_sdk import Action, Tracker\nimport requests_that_do_not_exist")
    static_code, static_output = _run_hook(coffeebot, capsys=capsys)
    assert static_code == 0, static_output  # reading cannot see a missing dependency
    code, output = _run_hook(coffeebot, "--import", capsys=capsys)
    assert code == 1, output
    assert "actions/actions.py:6: [action-code] the action server cannot load this code: " \
           "ModuleNotFoundError: No module named 'requests_that_do_not_exist'" in output
    assert "Traceback" not in output


def test_no_project_and_unknown_checks_give_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = _run_hook(tmp_path, capsys=capsys)
    assert code == 1
    assert "no Rasa project here" in output and "Traceback" not in output
    code, output = _run_hook(tmp_path, "--warn", "nonsense", capsys=capsys)
    assert code == 1
    assert "unknown check(s): nonsense" in output


def test_orphans_can_be_made_warn_only(coffeebot: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    append(coffeebot / ACTIONS_PY, '''

class Spare(Action):
    def name(self) -> Text:
        return "action_spare"
''')
    code, output = _run_hook(coffeebot, "--warn", "orphaned-action", capsys=capsys)
    assert code == 0, output
    assert "[orphaned-action, warn-only] action 'action_spare'" in output


def _pre_commit(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    return subprocess.run(["pre-commit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.timeout(1800)  # builds the hook's pre-commit env (pip) on first use
def test_removing_an_action_implementation_fails_the_commit(
    hook_repo: Path, coffeebot_repo: Path, pre_commit_home: Path
) -> None:
    """The real manifest entry, installed as a git hook from a repo, as users do."""
    use_hook(coffeebot_repo, hook_repo, "rasa-check-actions")
    installed = _pre_commit(["install"], coffeebot_repo, pre_commit_home)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    source = (coffeebot_repo / ACTIONS_PY).read_text(encoding="utf-8")
    (coffeebot_repo / ACTIONS_PY).write_text(
        source[: source.index("class ActionTellOpeningHours")], encoding="utf-8"
    )
    git(coffeebot_repo, "add", ACTIONS_PY)
    env = {**os.environ, "PRE_COMMIT_HOME": str(pre_commit_home)}
    blocked = subprocess.run(["git", "commit", "-m", "drop the opening hours action"],
                             cwd=coffeebot_repo, env=env, capture_output=True, text=True,
                             timeout=900)
    output = blocked.stdout + blocked.stderr
    assert blocked.returncode != 0, output
    assert "rasa custom actions implemented" in output
    listed = line_of(coffeebot_repo / "domain.yml", "  - action_tell_opening_hours")
    assert f"domain.yml:{listed}: {HOURS_MISSING}" in output
    assert "Traceback" not in output

    # try-repo, the other way users run a hook, agrees on the same staged change.
    tried = _pre_commit(["try-repo", str(hook_repo), "rasa-check-actions", "--files",
                         ACTIONS_PY], coffeebot_repo, pre_commit_home)
    assert tried.returncode == 1, tried.stdout + tried.stderr
    assert "[missing-action]" in tried.stdout


def test_an_overridden_default_action_without_code_fails(
    coffeebot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Listed under `actions:`, a default action is the bot's own: Rasa 3.6 calls
    # the action server for it at the start of every conversation.
    replace(coffeebot / "domain.yml", "  - action_tell_opening_hours\n",
            "  - action_tell_opening_hours\n  - action_session_start\n")
    listed = line_of(coffeebot / "domain.yml", "  - action_session_start")
    code, output = _run_hook(coffeebot, "domain.yml", capsys=capsys)
    assert code == 1, output
    assert (f"domain.yml:{listed}: [missing-action] custom action 'action_session_start'"
            in output)
