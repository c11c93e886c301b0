"""Where a Rasa project is: its root folder, and which files are its config,
domain, data and tests.

Hooks get a list of changed files (or --project); this module turns them into
bot roots and each root into a `Layout` the loaders read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hooks.core.errors import FatalError, LocatedError
from hooks.project.model import Layout

CONFIG_NAMES = ("config.yml", "config.yaml")
DOMAIN_NAMES = ("domain.yml", "domain.yaml", "domain")
YAML_SUFFIXES = (".yml", ".yaml")


def _first_existing(folder: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        candidate = folder / name
        if candidate.exists():
            return candidate
    return None


def is_project_root(folder: Path) -> bool:
    return (
        _first_existing(folder, CONFIG_NAMES) is not None
        and _first_existing(folder, DOMAIN_NAMES) is not None
    )


def looks_like_root(folder: Path) -> bool:
    """A project missing its config or domain still marks its root, so that a
    commit that deletes one gets an error rather than a pass. A lone
    config.yml is too common outside Rasa to count; with a data/ folder it is."""
    has_config = _first_existing(folder, CONFIG_NAMES) is not None
    has_domain_file = _first_existing(folder, DOMAIN_NAMES[:2]) is not None
    return has_domain_file or (has_config and (folder / "data").is_dir())


def find_root_above(path: Path, stop: Path | None = None) -> Path | None:
    """The nearest folder at or above `path` that holds config and domain
    (or, failing that, one of them)."""
    current = path if path.is_dir() else path.parent
    current = current.resolve()
    stop = stop.resolve() if stop else None
    half: Path | None = None
    while True:
        if is_project_root(current):
            return current
        if half is None and looks_like_root(current):
            half = current
        if current == stop or current.parent == current:
            return half
        current = current.parent


def yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix in YAML_SUFFIXES else []
    if not path.is_dir():
        return []
    # Dangling symlinks are kept so that loading reports them, not skips them.
    return sorted(
        p for p in path.rglob("*")
        if p.suffix in YAML_SUFFIXES and (p.is_file() or p.is_symlink())
    )


def layout_for(
    root: Path,
    *,
    config: str | None = None,
    domain: str | None = None,
    data: Sequence[str] = ("data",),
    tests: Sequence[str] = ("tests",),
) -> Layout:
    """Describe the project at `root`; paths in args are relative to it."""
    root = root.resolve()
    if not root.is_dir():
        raise FatalError(
            f"{root}: project folder does not exist; pass --project with a bot folder."
        )
    config_path = root / config if config else _first_existing(root, CONFIG_NAMES)
    if config_path is None or not config_path.is_file():
        raise LocatedError(
            config_path or root / "config.yml", 0,
            "config file not found; create it (`rasa init` makes one) or pass --config.",
        )
    domain_path = root / domain if domain else _first_existing(root, DOMAIN_NAMES)
    if domain_path is None or not domain_path.exists():
        raise LocatedError(
            domain_path or root / "domain.yml", 0,
            "domain not found; create domain.yml or a domain/ folder, or pass --domain.",
        )
    domain_files = tuple(yaml_files(domain_path))
    if not domain_files:
        raise LocatedError(domain_path, 0, "domain folder holds no .yml files.")
    data_files = tuple(f for d in data for f in yaml_files(root / d))
    test_files = tuple(f for d in tests for f in yaml_files(root / d))
    return Layout(root, config_path, domain_files, data_files, test_files)



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
