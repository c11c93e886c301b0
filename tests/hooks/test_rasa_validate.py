"""rasa-validate, called in-process on real files (fast), one behaviour a test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hooks.project.model import memoization_max_history
from hooks.rasa_validate import main
from tests.support.bots import copy_bot
from tests.support.paths import COFFEEBOT
from tests.support.seeds import SEEDS, Seed, append, replace

FINDING = re.compile(r"^(?P<path>[^:\s]+):(?P<line>\d+): \[(?P<check>[\w-]+)(?:, warn-only)?\] ")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def findings(output: str) -> list[tuple[str, int, str]]:
    return [
        (m["path"], int(m["line"]), m["check"])
        for m in map(FINDING.match, output.splitlines()) if m
    ]


def test_example_bot_passes(coffeebot: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys)
    assert code == 0, output
    assert "no problems" in output


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s.check)
def test_each_seeded_defect_fails_and_names_its_file(
    seed: Seed, coffeebot: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed.apply(coffeebot)
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "--all")
    assert code == 1, output
    hits = [(path, line) for path, line, check in findings(output) if check == seed.check]
    assert hits, f"{seed.check} not reported:\n{output}"
    assert any(path == seed.file and line > 0 for path, line in hits), output


def test_yaml_syntax_error_is_path_line_not_traceback(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    append(coffeebot / "data/nlu.yml", "  - intent: greet\n    examples: [unclosed\n")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "data/nlu.yml")
    assert code == 1
    assert re.search(r"data/nlu\.yml:\d+: YAML syntax error", output), output
    assert "Traceback" not in output


def test_duplicate_key_is_reported_with_both_lines(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    append(coffeebot / "domain.yml", "\nintents:\n  - extra\n")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "domain.yml")
    assert code == 1
    assert re.search(r"domain\.yml:\d+: duplicate key 'intents' \(first on line 3\)", output)


def test_non_utf8_file_names_file_and_line(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    nlu = coffeebot / "data/nlu.yml"
    nlu.write_bytes(nlu.read_bytes() + b"      - caf\xe9 au lait\n")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "data/nlu.yml")
    assert code == 1
    assert re.search(r"data/nlu\.yml:\d+: not valid UTF-8 \(byte 0xe9\)", output), output


@pytest.mark.parametrize(
    ("remove", "expected"),
    [("config.yml", "config file not found"), ("domain.yml", "domain not found")],
)
def test_missing_config_or_domain_is_one_clear_line(
    remove: str, expected: str, coffeebot: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    (coffeebot / remove).unlink()
    code, output = run(capsys, "--project", str(coffeebot))
    assert code == 1
    assert expected in output and len(output.strip().splitlines()) == 1, output


def test_unreadable_file_is_a_clear_error(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A dangling symlink is unreadable even for root.
    (coffeebot / "data/extra.yml").symlink_to(coffeebot / "nowhere.yml")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "--all")
    assert code == 1
    assert "data/extra.yml: cannot read file" in output, output


def test_no_project_root_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = run(capsys)
    assert code == 1
    assert "no Rasa project here" in output and "--project" in output


def test_yaml_bomb_is_refused(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{','.join(['*a' + str(i - 1)] * 9)}]" for i in range(1, 30)]
    (coffeebot / "data/bomb.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "data/bomb.yml")
    assert code == 1
    assert "alias bomb" in output


def test_commit_without_rasa_files_costs_nothing(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (coffeebot / "notes.yml").write_text("a: 1\n", encoding="utf-8")
    replace(coffeebot / "domain.yml", "  - thank\n", "  - thank\n  - lonely\n")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "notes.yml")
    assert (code, output) == (0, "")


def test_scoping_reports_only_findings_that_involve_changed_files(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An old defect in the stories, and a fresh one in the NLU data.
    append(coffeebot / "data/stories.yml",
           "  - story: old\n    steps:\n      - intent: thank\n      - action: action_old\n")
    append(coffeebot / "data/nlu.yml",
           "  - intent: orphan\n    examples: |\n      - orphaned text\n")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "data/nlu.yml")
    checks = {check for _, _, check in findings(output)}
    assert code == 1 and "intent-not-in-domain" in checks
    assert "action-not-in-domain" not in checks
    code, output = run(capsys, "data/nlu.yml", "--all")
    assert "action-not-in-domain" in {check for _, _, check in findings(output)}


def test_domain_change_reports_the_untouched_story_it_breaks(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    replace(coffeebot / "domain.yml", "  utter_goodbye:\n", "  utter_farewell:\n")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "domain.yml")
    assert code == 1
    assert ("data/rules.yml", 6, "utterance-not-in-domain") in findings(output), output


def test_warn_only_and_skip(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    replace(coffeebot / "domain.yml", "responses:\n",
            "responses:\n  utter_unused:\n    - text: nobody says this\n")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "domain.yml", "--warn", "utterance-unused")
    assert code == 0 and "[utterance-unused, warn-only]" in output
    code, output = run(capsys, "domain.yml", "--skip", "utterance-unused,intent-unused")
    assert code == 0 and "utterance-unused" not in output
    code, output = run(capsys, "--skip", "no-such-check")
    assert code == 1 and "unknown check(s): no-such-check" in output


def test_monorepo_bot_in_a_subfolder_is_found_from_the_changed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = copy_bot(COFFEEBOT, tmp_path / "bots" / "coffee")
    append(bot / "data/nlu.yml", "  - intent: orphan\n    examples: |\n      - orphaned\n")
    monkeypatch.chdir(tmp_path)
    code, output = run(capsys, "bots/coffee/data/nlu.yml")
    assert code == 1
    assert ("bots/coffee/data/nlu.yml", 45, "intent-not-in-domain") in findings(output), output


def test_domain_folder_and_custom_data_path(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (coffeebot / "domain").mkdir()
    (coffeebot / "domain.yml").rename(coffeebot / "domain" / "main.yml")
    (coffeebot / "data").rename(coffeebot / "training")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "--data", "training", "--all")
    assert code == 0, output
    replace(coffeebot / "training/rules.yml", "utter_goodbye", "utter_farewell")
    code, output = run(capsys, "--data", "training", "training/rules.yml")
    assert code == 1
    assert ("training/rules.yml", 6, "utterance-not-in-domain") in findings(output), output


def test_max_history_comes_from_memoization_policy_else_5() -> None:
    assert memoization_max_history({"policies": [{"name": "MemoizationPolicy",
                                                  "max_history": 3}]}) == 3
    assert memoization_max_history({"policies": [{"name": "AugmentedMemoizationPolicy",
                                                  "max_history": 7}]}) == 7
    assert memoization_max_history({"policies": [{"name": "TEDPolicy"}]}) is None


def test_max_history_decides_which_conflicts_exist(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two stories that differ only four turns back: a conflict with a short
    # memory, none with a long one.
    append(coffeebot / "data/stories.yml", """
  - story: thanks after hours
    steps:
      - intent: ask_opening_hours
      - action: action_tell_opening_hours
      - intent: thank
      - action: utter_you_are_welcome
      - intent: thank
      - action: utter_you_are_welcome
      - intent: goodbye
      - action: utter_goodbye
  - story: thanks after coffee
    steps:
      - intent: order_coffee
      - action: utter_confirm_order
      - intent: thank
      - action: utter_you_are_welcome
      - intent: thank
      - action: utter_you_are_welcome
      - intent: goodbye
      - action: utter_greet
""")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "data/stories.yml", "--max-history", "2")
    assert code == 1 and "story-structure" in {c for _, _, c in findings(output)}, output
    code, output = run(capsys, "data/stories.yml", "--max-history", "8")
    assert code == 0 and "story-structure" not in {c for _, _, c in findings(output)}, output
    # config.yml sets max_history 3, which still sees only the thanks.
    code, output = run(capsys, "data/stories.yml")
    assert code == 1 and "story-structure" in {c for _, _, c in findings(output)}, output


def test_list_checks_names_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run(capsys, "--list-checks")
    assert code == 0
    for seed in SEEDS:
        assert seed.check in output


def test_a_commit_that_deletes_the_domain_fails(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (coffeebot / "domain.yml").unlink()
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "domain.yml")
    assert code == 1 and "domain.yml: domain not found" in output, output


def test_an_unrelated_config_yml_elsewhere_is_not_a_rasa_project(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy = coffeebot / "deploy"
    deploy.mkdir()
    (deploy / "config.yml").write_text("replicas: 2\n", encoding="utf-8")
    (deploy / "app.yml").write_text("image: x\n", encoding="utf-8")
    monkeypatch.chdir(coffeebot)
    # The nearest full project above deploy/ is the bot itself, which is fine.
    code, output = run(capsys, "deploy/app.yml")
    assert (code, output) == (0, "")


# ----------------------------------------------------------------- without Rasa

CONFLICT = ("  - story: rude greeting\n    steps:\n"
            "      - intent: greet\n      - action: utter_goodbye\n")


def _hide_rasa(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a pre-commit env without additional_dependencies: `import rasa` fails."""
    import sys

    for name in [m for m in sys.modules if m == "rasa" or m.startswith("rasa.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rasa", None)


def test_without_rasa_a_story_commit_fails_and_says_how_to_add_rasa(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide_rasa(monkeypatch)
    append(coffeebot / "data/stories.yml", CONFLICT)
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "data/stories.yml")
    assert code == 1, output
    assert "no problems" not in output
    checks = {c for _, _, c in findings(output)} | set(re.findall(r"\[([\w-]+)\] ", output))
    assert {"story-structure", "schema"} <= checks, output
    assert "[story-structure] not checked: this check needs Rasa" in output
    assert 'additional_dependencies: ["rasa==3.6.21"]' in output
    assert ".pre-commit-config.yaml" in output and "--skip story-structure" in output


def test_without_rasa_a_domain_commit_fails_too(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide_rasa(monkeypatch)
    append(coffeebot / "domain.yml", "\n# a comment: the domain changed, nothing else\n")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "domain.yml")
    assert code == 1 and "no problems" not in output, output
    assert "[story-structure] not checked" in output and "[schema] not checked" in output


def test_without_rasa_skip_is_the_explicit_opt_out(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide_rasa(monkeypatch)
    append(coffeebot / "data/stories.yml", CONFLICT)
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "--skip", "schema,story-structure", "data/stories.yml")
    assert code == 0, output
    assert "not checked" not in output


def test_without_rasa_an_nlu_only_commit_is_still_checked_fully(
    coffeebot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide_rasa(monkeypatch)
    replace(coffeebot / "data/nlu.yml", "    examples: |\n",
            "    examples: |\n      - a brand new example\n")
    monkeypatch.chdir(coffeebot)
    code, output = run(capsys, "data/nlu.yml")
    assert code == 0, output
    assert "no problems" in output and "not checked" not in output
