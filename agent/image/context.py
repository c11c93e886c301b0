"""The build context: exactly the files an image is made of, and their fingerprint.

A symlink is never followed. One that stays inside the bot folder goes into
the context as a link; one that points outside it is left out with a warning,
so a commit can't pull a file of the deploy host into an image.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent.image.dockerfile import ImageSettings, default_dockerfile
from agent.targets.base import LogSink

# Looked for in this order when the config names no requirements file.
REQUIREMENTS_CANDIDATES = ("actions/requirements.txt", "requirements-actions.txt")
ALWAYS_LEFT_OUT = {".git", "models", ".rasa", "results", "__pycache__", ".pytest_cache"}
FINGERPRINT_LABEL = "io.rasa-gitops.fingerprint"
DEFAULT_DOCKERFILE_LABEL = "io.rasa-gitops.default-dockerfile"


class ContextError(Exception):
    """The bot folder can't become a build context (message names the path)."""


@dataclass(frozen=True)
class Entry:
    name: str  # path inside the context, with forward slashes
    source: Path | None  # file on disk; None for generated content
    data: bytes | None = None  # generated content
    link: str | None = None  # symlink target, kept as a link
    executable: bool = False


@dataclass
class BuildContext:
    entries: list[Entry]
    dockerfile: str  # name of the Dockerfile inside the context
    uses_default_dockerfile: bool
    skipped_links: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """sha256 over names, modes, link targets and contents, in a stable order."""
        digest = hashlib.sha256()
        for entry in sorted(self.entries, key=lambda e: e.name):
            digest.update(entry.name.encode() + b"\0")
            digest.update(b"x" if entry.executable else b"-")
            if entry.link is not None:
                digest.update(b"L" + entry.link.encode() + b"\0")
                continue
            digest.update(b"F")
            digest.update(_content(entry))
            digest.update(b"\0")
        return digest.hexdigest()

    def tar(self) -> io.BytesIO:
        """The context as an uncompressed tar, with normalised owners and times."""
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as archive:
            for entry in sorted(self.entries, key=lambda e: e.name):
                info = tarfile.TarInfo(entry.name)
                info.mtime = 0
                info.uid = info.gid = 0
                if entry.link is not None:
                    info.type = tarfile.SYMTYPE
                    info.linkname = entry.link
                    info.mode = 0o777
                    archive.addfile(info)
                    continue
                data = _content(entry)
                info.size = len(data)
                info.mode = 0o755 if entry.executable else 0o644
                archive.addfile(info, io.BytesIO(data))
        out.seek(0)
        return out


def _content(entry: Entry) -> bytes:
    if entry.data is not None:
        return entry.data
    assert entry.source is not None
    return entry.source.read_bytes()


def _inside(root: Path, path: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def walk(root: Path, start: Path, skipped: list[str]) -> Iterable[Entry]:
    """Files under `start`, never following a symlink, relative to `root`."""
    root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(start, followlinks=False):
        here = Path(dirpath)
        keep_dirs = []
        for name in sorted(dirnames):
            if name in ALWAYS_LEFT_OUT:
                continue
            full = here / name
            if full.is_symlink():
                filenames.append(name)  # a link to a folder is handled as a link
                continue
            keep_dirs.append(name)
        dirnames[:] = keep_dirs
        for name in sorted(filenames):
            full = here / name
            rel = full.relative_to(root).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                target = os.readlink(full)
                resolved = (full.parent / target).resolve()
                if not _inside(root, resolved):
                    skipped.append(rel)
                    continue
                yield Entry(rel, None, link=target)
            elif stat.S_ISREG(mode):
                yield Entry(rel, full, executable=bool(mode & stat.S_IXUSR))


def find_requirements(bot: Path, configured: str | None) -> Path | None:
    if configured:
        path = bot / configured
        if not path.is_file():
            raise ContextError(f"{path}: requirements file named in the config does not exist")
        return path
    for candidate in REQUIREMENTS_CANDIDATES:
        path = bot / candidate
        if path.is_file() and not path.is_symlink():
            return path
    return None


def assemble(
    bot: Path,
    settings: ImageSettings,
    *,
    requirements: str | None = None,
    actions_dir: str = "actions",
    dockerfile: str = "Dockerfile",
    log: LogSink | None = None,
) -> BuildContext:
    """The build context of the bot folder `bot` (a release worktree)."""
    bot = bot.resolve()
    skipped: list[str] = []
    own = bot / dockerfile
    if own.is_symlink():
        raise ContextError(f"{own}: the Dockerfile is a symlink; commit a real file")
    if own.is_file():
        ignored = _dockerignore(bot)
        entries = [e for e in walk(bot, bot, skipped) if not _ignored(e.name, ignored)]
        context = BuildContext(entries, dockerfile, False, skipped)
    else:
        actions = bot / actions_dir
        if actions.is_symlink() or not actions.is_dir():
            raise ContextError(f"{actions}: no action code folder; the default Dockerfile "
                               f"copies `{actions_dir}/` (or commit your own Dockerfile)")
        entries = [
            Entry("actions/" + e.name[len(actions_dir) + 1:], e.source, e.data, e.link,
                  e.executable)
            for e in walk(bot, actions, skipped)
        ]
        req = find_requirements(bot, requirements)
        if req is not None:
            entries.append(Entry("requirements.txt", req))
        text = default_dockerfile(settings, has_requirements=req is not None)
        entries.append(Entry("Dockerfile", None, data=text.encode()))
        context = BuildContext(entries, "Dockerfile", True, skipped)
    if log is not None:
        for name in skipped:
            log(f"left out of the image: {name} is a symlink pointing outside the bot folder")
    return context


def _dockerignore(bot: Path) -> list[str]:
    path = bot / ".dockerignore"
    if not path.is_file() or path.is_symlink():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(name: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        if fnmatch(name, pat) or fnmatch(name, pat + "/*") or name.startswith(pat + "/"):
            ignored = not negate
    return ignored and name != ".dockerignore"
