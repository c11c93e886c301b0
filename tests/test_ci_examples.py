"""The example pipelines in examples/ci/ are valid and call commands that exist.

"Exist" means: a `rasa-*` command is a console script in pyproject.toml, a
`pre-commit run HOOK` names a hook of .pre-commit-hooks.yaml in a stage it has,
and every `rasa-nlu-compare` invocation parses with the command's real parser.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hooks.rasa_nlu_compare import _parser as nlu_compare_parser
from tests.support.paths import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest needs tomli on 3.10, so it is there
    import tomli as tomllib

CI = REPO_ROOT / "examples" / "ci"
GITHUB = sorted((CI / "github").glob("*.yml"))
GITLAB = CI / "gitlab" / ".gitlab-ci.yml"
SEPARATORS = {"||", "&&", ";", "|", "then", "else", "do", "!"}
GITLAB_RESERVED = {"stages", "variables", "default", "include", "workflow", "image",
                   "services", "cache", "before_script", "after_script"}


def console_scripts() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return set(project["project"]["scripts"])


def hook_stages() -> dict[str, list[str]]:
    manifest = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    return {hook["id"]: hook.get("stages", []) for hook in manifest}


def github_scripts(path: Path) -> list[str]:
    workflow = yaml.safe_load(path.read_text())
    assert isinstance(workflow, dict) and workflow.get("jobs"), f"{path}: no jobs"
    assert True in workflow or "on" in workflow, f"{path}: no trigger (`on:`)"
    scripts = []
    for name, job in workflow["jobs"].items():
        assert job.get("runs-on"), f"{path}: job {name} has no runs-on"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"{path}: {name}: step {step}"
            if "run" in step:
                scripts.append(step["run"])
    return scripts


def gitlab_jobs() -> dict[str, Any]:
    pipeline = yaml.safe_load(GITLAB.read_text())
    jobs = {k: v for k, v in pipeline.items() if k not in GITLAB_RESERVED}
    for name, job in jobs.items():
        assert isinstance(job.get("script"), list) and job["script"], f"{name}: no script"
        assert job.get("stage") in pipeline["stages"], f"{name}: unknown stage"
    return jobs


def gitlab_scripts() -> list[str]:
    return ["\n".join(job["script"]) for job in gitlab_jobs().values()]


def commands(script: str) -> list[list[str]]:
    """Each simple command of a shell script, as argv (placeholders filled in)."""
    script = re.sub(r"\$\{\{[^}]*\}\}", "PLACEHOLDER", script).replace("\\\n", " ")
    found = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|!")
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in SEPARATORS:
                if current:
                    found.append(current)
                current = []
            else:
                current.append(token)
        if current:
            found.append(current)
    return found


def all_commands(scripts: list[str]) -> list[list[str]]:
    return [argv for script in scripts for argv in commands(script)]


SYSTEMS = {
    "github": lambda: [s for path in GITHUB for s in github_scripts(path)],
    "gitlab": gitlab_scripts,
}


def test_every_example_is_valid_yaml() -> None:
    files = sorted(CI.rglob("*.yml")) + sorted(CI.rglob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict | list), path


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_pipelines_call_commands_that_exist(system: str) -> None:
    scripts_available, hooks = console_scripts(), hook_stages()
    argvs = all_commands(SYSTEMS[system]())
    called = [argv for argv in argvs if argv[0].startswith("rasa-")]
    assert called, f"{system}: no rasa-gitops command"
    for argv in called:
        assert argv[0] in scripts_available, f"{system}: {argv[0]} is not a console script"
    pre_commit = [argv for argv in argvs if argv[:2] == ["pre-commit", "run"]]
    assert any("--all-files" in argv for argv in pre_commit), f"{system}: no --all-files run"
    for argv in pre_commit:
        ids = [a for a in argv[2:] if not a.startswith("-")]
        stage = argv[argv.index("--hook-stage") + 1] if "--hook-stage" in argv else None
        for hook_id in ids:
            if stage is not None and hook_id == stage:
                continue
            assert hook_id in hooks, f"{system}: no hook {hook_id}"
            assert stage is None or stage in hooks[hook_id], f"{hook_id} lacks stage {stage}"


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_nlu_compare_invocations_parse(system: str) -> None:
    invocations = [a for a in all_commands(SYSTEMS[system]()) if a[0] == "rasa-nlu-compare"]
    assert invocations
    for argv in invocations:
        try:
            args = nlu_compare_parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{system}: `{shlex.join(argv)}` does not parse")
        assert args.main_branch or args.base, "CI names the target branch explicitly"


def test_the_comparison_runs_only_when_nlu_changes() -> None:
    workflow = yaml.safe_load((CI / "github" / "rasa-nlu-compare.yml").read_text())
    trigger = workflow.get(True, workflow.get("on"))
    paths = trigger["pull_request"]["paths"]
    assert "data/**" in paths and "config.yml" in paths
    rules = gitlab_jobs()["nlu-compare"]["rules"]
    assert any({"data/**/*", "config.yml"} <= set(rule.get("changes", [])) for rule in rules)


def test_the_report_is_posted_as_a_comment() -> None:
    github = (CI / "github" / "rasa-nlu-compare.yml").read_text()
    assert "gh pr comment" in github and "nlu_comparison.md" in github
    gitlab = GITLAB.read_text()
    assert "merge_requests/$CI_MERGE_REQUEST_IID/notes" in gitlab
    assert "body@results/nlu-compare/nlu_comparison.md" in gitlab


def test_example_pre_commit_config_is_valid_for_pre_commit(tmp_path: Path) -> None:
    config = CI / "pre-commit-config.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", str(config)],
        capture_output=True, text=True,
    )
    if "No module named pre_commit" in done.stderr:
        pytest.skip("pre-commit is not installed")
    assert done.returncode == 0, done.stdout + done.stderr
    hooks = hook_stages()
    repos = yaml.safe_load(config.read_text())["repos"]
    for hook in repos[0]["hooks"]:
        assert hook["id"] in hooks
        if hook["id"] == "rasa-nlu-compare":
            nlu_compare_parser().parse_args(hook.get("args", []))
            assert hooks["rasa-nlu-compare"] == ["manual"]
