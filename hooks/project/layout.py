"""Which Rasa bots a hook run is about: the one named, or those the files belong to."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hooks.core.errors import FatalError
from hooks.project.load import find_root_above, is_project_root


def bot_roots(project: Path | None, changed: Sequence[Path]) -> list[Path]:
    """--project if given; else the bot folder above each changed file; else the
    current folder, which must then be a bot."""
    if project:
        return [project.resolve()]
    cwd = Path.cwd()
    if not changed:
        if is_project_root(cwd):
            return [cwd.resolve()]
        raise FatalError(
            f"{cwd}: no Rasa project here (no config.yml with domain.yml or domain/); "
            "run from the bot folder or pass --project DIR."
        )
    return sorted({r for r in (find_root_above(p, stop=cwd) for p in changed) if r is not None})
