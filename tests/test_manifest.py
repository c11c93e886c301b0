"""The pre-commit manifest is valid and every hook in it is documented."""

from __future__ import annotations

import subprocess

import yaml

from tests.support.paths import REPO_ROOT

MANIFEST = REPO_ROOT / ".pre-commit-hooks.yaml"


def test_manifest_passes_pre_commit_validate_manifest() -> None:
    done = subprocess.run(
        ["pre-commit", "validate-manifest", str(MANIFEST)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_hook_is_documented_in_the_readme_and_installable() -> None:
    hooks = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    scripts = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert hooks, "the manifest lists no hooks"
    for hook in hooks:
        assert f"`{hook['id']}`" in readme, f"README does not document {hook['id']}"
        assert f"id: {hook['id']}" in readme, f"README shows no config block for {hook['id']}"
        entry = hook["entry"].split()[0]
        assert f'{entry} = "hooks.' in scripts, f"{entry} is not a console script"
        assert hook.get("stages"), f"{hook['id']} names no stages"
