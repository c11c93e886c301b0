"""The hook repo that real pre-commit clones, and pre-commit's cache folder.

The pre-commit tests install our hooks from this working tree, as a bot team
installs them from GitHub, so what runs is what is checked out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.git import git, init_repo
from tests.support.paths import REPO_ROOT


def copy_hook_repo(dest: Path) -> Path:
    """This working tree (tracked and untracked files) as a one-commit git repo at `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT,
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return init_repo(dest)


def pre_commit_cache() -> Path:
    """pre-commit's env cache, kept between local runs (a Rasa env takes minutes)."""
    cache = Path(os.environ.get("RASA_GITOPS_CACHE", Path.home() / ".cache/rasa-gitops"))
    home = cache / "pre-commit"
    home.mkdir(parents=True, exist_ok=True)
    return home


def use_hook(bot: Path, hook_repo: Path, hook_id: str, options: str = "") -> None:
    """Commit a .pre-commit-config.yaml that takes `hook_id` from `hook_repo`, as a
    bot team adds our hooks. `options` are the hook's extra YAML lines (8 spaces in)."""
    rev = git(hook_repo, "rev-parse", "HEAD")
    (bot / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hook_repo}\n    rev: {rev}\n    hooks:\n"
        f"      - id: {hook_id}\n{options}",
        encoding="utf-8",
    )
    git(bot, "add", ".pre-commit-config.yaml")
    git(bot, "commit", "-q", "-m", f"use {hook_id}")
