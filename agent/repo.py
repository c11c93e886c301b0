"""The agent's own mirror of the watched branch, and worktrees made from it.

The agent never writes into the repository it watches: it fetches into a bare
cache (`work_dir/repo.git`) and checks each release out as a clean worktree of
that cache. Fetching from a local bare repo takes milliseconds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from hooks.core.errors import FatalError
from hooks.core.process import Completed, git

FETCH_TIMEOUT = 300
LOW_DISK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    message: str


class Mirror:
    def __init__(self, source: str, branch: str, path: Path) -> None:
        self.source = source
        self.branch = branch
        self.path = path

    @property
    def tracking_ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def _git(self, *args: str, timeout: float = FETCH_TIMEOUT) -> Completed:
        return git(["--git-dir", str(self.path), *args], cwd=self.path.parent, timeout=timeout,
                   env={"GIT_TERMINAL_PROMPT": "0"})

    def ensure(self) -> None:
        if (self.path / "HEAD").is_file():
            current = self._git("config", "--get", "remote.origin.url")
            if current.output.strip() != self.source:
                self._git("config", "remote.origin.url", self.source)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for args in (("init", "--bare", "-q", str(self.path)),):
            done = git(list(args), cwd=self.path.parent)
            if not done.ok:
                raise FatalError(f"cannot create {self.path}: {done.tail(3)}")
        self._git("remote", "add", "origin", self.source)

    def fetch(self) -> str:
        """Fetch the branch; return its newest commit. Raise FatalError with the cause."""
        self.ensure()
        done = self._git(
            "fetch", "--quiet", "--no-tags", "origin",
            f"+refs/heads/{self.branch}:{self.tracking_ref}",
        )
        if not done.ok:
            text = done.output
            if "couldn't find remote ref" in text or "could not find remote ref" in text:
                raise FatalError(
                    f"branch {self.branch!r} does not exist in {self.source}; "
                    "push it, or set `branch:` in the agent config."
                )
            first = next((line for line in text.splitlines() if line.strip()), "no output")
            raise FatalError(f"cannot fetch {self.source}: {first.strip()}")
        return self.head()

    def head(self) -> str:
        done = self._git("rev-parse", "--verify", "--quiet", f"{self.tracking_ref}^{{commit}}")
        if not done.ok:
            raise FatalError(f"branch {self.branch!r} has not been fetched from {self.source}")
        return done.output.strip()

    def commit(self, sha: str) -> Commit:
        done = self._git("show", "-s", "--format=%H%x00%an <%ae>%x00%s", sha)
        if not done.ok:
            raise FatalError(f"commit {sha} is not in {self.source}")
        full, author, message = done.output.rstrip("\n").split("\x00", 2)
        return Commit(full, author, message)

    def superseded(self, since: str | None, head: str) -> list[str]:
        """Commits on the branch's first-parent line after `since`, before `head`."""
        if since is None or since == head:
            return []
        if not self._git("merge-base", "--is-ancestor", since, head).ok:
            return []  # history was rewritten: nothing in between to speak of
        done = self._git("rev-list", "--first-parent", "--reverse", f"{since}..{head}")
        return [sha for sha in done.output.split() if sha != head]

    def changed_paths(self, old: str | None, new: str) -> list[str] | None:
        """Paths changed between two commits; None when unknown (first release)."""
        if old is None:
            return None
        done = self._git("diff", "--name-only", old, new)
        return done.output.split("\n") if done.ok else None

    def add_worktree(self, sha: str, path: Path) -> Path:
        if path.exists():
            self.remove_worktree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        done = self._git("worktree", "add", "--detach", "--force", str(path), sha)
        if not done.ok:
            # git says only "unable to write file" when the disk is full: say why.
            free = shutil.disk_usage(path.parent).free
            if "No space left" in done.output or free < LOW_DISK_BYTES:
                raise FatalError(f"cannot check out {sha[:8]} into {path}: No space left on "
                                 f"device ({free // 1024} KiB free); free some space")
            detail = " / ".join(line.strip() for line in done.tail(3).splitlines())
            raise FatalError(f"cannot check out {sha[:8]} into {path}: {detail}")
        return path

    def remove_worktree(self, path: Path) -> None:
        self._git("worktree", "remove", "--force", str(path))
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        self._git("worktree", "prune")
