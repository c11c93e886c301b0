"""Symlinks of a commit that point outside its worktree.

A release's worktree is read by `rasa train` (whose model may then be uploaded
elsewhere), by validation, and by the Docker build. A symlink committed as
`data/nlu.yml -> /etc/shadow` would make any of them read a file of the deploy
host. Such a commit is refused at checkout, naming the link; links that stay
inside the worktree are fine.
"""

from __future__ import annotations

import os
from pathlib import Path


def outside_links(root: Path) -> list[str]:
    """Paths (relative to `root`) of symlinks whose target resolves outside it."""
    root = root.resolve()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in [*dirnames, *filenames]:
            path = here / name
            if not path.is_symlink():
                continue
            target = (path.parent / os.readlink(path)).resolve()
            if target != root and root not in target.parents:
                found.append(path.relative_to(root).as_posix())
    return sorted(found)
