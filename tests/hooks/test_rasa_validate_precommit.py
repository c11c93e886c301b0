"""rasa-validate through real pre-commit, the way a bot team uses it.

Both tests build the hook repo from this working tree (tracked and untracked
files, one commit), so what runs is what is checked out, committed or not.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.git import git
from tests.support.precommit import use_hook
from tests.support.seeds import append, replace


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, env={**os.environ, **env}, timeout=900
    )


def test_try_repo_catches_an_nlu_defect_without_rasa_in_the_hook_env(
    hook_repo: Path, coffeebot_repo: Path, pre_commit_home: Path
) -> None:
    # The hook's own env has no Rasa: an NLU-only commit needs none.
    append(coffeebot_repo / "data/nlu.yml",
           "  - intent: orphan\n    examples: |\n      - orphaned text\n")
    git(coffeebot_repo, "add", "-A")
    done = _run(
        ["pre-commit", "try-repo", str(hook_repo), "rasa-validate", "--files", "data/nlu.yml"],
        coffeebot_repo, PRE_COMMIT_HOME=str(pre_commit_home),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "data/nlu.yml:45: [intent-not-in-domain]" in output, output
    assert "Traceback" not in output


def test_installed_hook_blocks_a_commit_that_breaks_an_untouched_rule(
    hook_repo: Path, coffeebot_repo: Path, pre_commit_home: Path
) -> None:
    use_hook(coffeebot_repo, hook_repo, "rasa-validate",
             "        language_version: python3.10\n"
             "        additional_dependencies: ['rasa==3.6.21']\n")
    env = {"PRE_COMMIT_HOME": str(pre_commit_home),
           "PYENV_VERSION": os.environ.get("PYENV_VERSION", "3.11.7:3.10.13")}
    installed = _run(["pre-commit", "install"], coffeebot_repo, **env)
    assert installed.returncode == 0, installed.stderr

    # Renaming a response in the domain breaks rules.yml, which the commit
    # does not touch; the domain is the changed file that is to blame.
    replace(coffeebot_repo / "domain.yml", "  utter_goodbye:\n", "  utter_farewell:\n")
    git(coffeebot_repo, "add", "domain.yml")
    blocked = _run(["git", "commit", "-m", "rename a response"], coffeebot_repo, **env)
    output = blocked.stdout + blocked.stderr
    assert blocked.returncode != 0, output
    assert "data/rules.yml:6: [utterance-not-in-domain]" in output, output
    assert "Traceback" not in output

    replace(coffeebot_repo / "data/rules.yml", "utter_goodbye", "utter_farewell")
    replace(coffeebot_repo / "data/stories.yml", "utter_goodbye", "utter_farewell")
    git(coffeebot_repo, "add", "-A")
    fixed = _run(["git", "commit", "-m", "rename a response everywhere"], coffeebot_repo, **env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "rasa data validate (fast)" in fixed.stdout + fixed.stderr


def test_installed_hook_without_rasa_fails_a_conflicting_story_and_says_how_to_add_rasa(
    hook_repo: Path, coffeebot_repo: Path, pre_commit_home: Path
) -> None:
    # No additional_dependencies: the hook's env cannot `import rasa`, so the
    # story-structure check cannot run. The commit must fail, not pass silently.
    use_hook(coffeebot_repo, hook_repo, "rasa-validate")
    env = {"PRE_COMMIT_HOME": str(pre_commit_home)}
    installed = _run(["pre-commit", "install"], coffeebot_repo, **env)
    assert installed.returncode == 0, installed.stderr
    before = git(coffeebot_repo, "rev-parse", "HEAD")

    # Two stories that predict different actions after the same `greet`.
    append(coffeebot_repo / "data/stories.yml", "  - story: rude greeting\n    steps:\n"
           "      - intent: greet\n      - action: utter_goodbye\n")
    git(coffeebot_repo, "add", "data/stories.yml")
    blocked = _run(["git", "commit", "-m", "a conflicting story"], coffeebot_repo, **env)
    output = blocked.stdout + blocked.stderr
    assert blocked.returncode != 0, output
    assert git(coffeebot_repo, "rev-parse", "HEAD") == before
    assert "no problems" not in output, output
    assert "[story-structure] not checked: this check needs Rasa" in output, output
    assert 'additional_dependencies: ["rasa==3.6.21"]' in output, output
    assert ".pre-commit-config.yaml" in output and "Traceback" not in output
