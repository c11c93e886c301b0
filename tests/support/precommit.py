"""The hook repo that real pre-commit clones, and pre-commit's cache folder.

The pre-commit tests install our hooks from this working tree, as a bot team
installs them from GitHub, so what runs is what is checked out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.git import init_repo
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
