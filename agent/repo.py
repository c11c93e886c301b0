"""The agent's own mirror of the watched branch, and worktrees made from it.

The agent never writes into the repository it watches: it fetches into a bare
cache (`work_dir/repo.git`) and checks each release out as a clean worktree of
that cache. Fetching from a local bare repo takes milliseconds.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from agent.secrets import public_url
from hooks.core.errors import FatalError
from hooks.core.process import Completed, git

FETCH_TIMEOUT = 300
LOW_DISK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    message: str


def split_credentials(url: str) -> tuple[str, str | None]:
    """(the URL git may be given, a git-credential `store` line or None).

    An HTTP(S) URL with `user:password@` keeps its credentials out of git's
    config and out of every git command line (git passes the remote's URL to
    `git-remote-https` as an argument, which `ps` shows): git gets the URL
    without them and finds them in a 0600 credential file. A URL with a user
    name only (`https://TOKEN@host/...`) is kept as it is; `agent doctor`
    warns about it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    if parts.scheme not in {"http", "https"} or ":" not in userinfo:
        return url, None
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, f"{parts.scheme}://{userinfo}@{host}\n"


def exposed_credential(url: str) -> bool:
    """Whether git is still handed a credential in the URL (see split_credentials)."""
    given = urlsplit(split_credentials(url)[0])
    return given.scheme in {"http", "https"} and ("@" in given.netloc or bool(given.query))


class Mirror:
    def __init__(self, source: str, branch: str, path: Path) -> None:
        self.source = source
        self.branch = branch
        self.path = path
        self.shown = public_url(source)  # what messages name

    @property
    def tracking_ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def _git(self, *args: str, timeout: float = FETCH_TIMEOUT) -> Completed:
        return git(["--git-dir", str(self.path), *args], cwd=self.path.parent, timeout=timeout,
                   env={"GIT_TERMINAL_PROMPT": "0"})

    def ensure(self) -> None:
        url, credentials = split_credentials(self.source)
        if not (self.path / "HEAD").is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            done = git(["init", "--bare", "-q", str(self.path)], cwd=self.path.parent)
            if not done.ok:
                raise FatalError(f"cannot create {self.path}: {done.tail(3)}")
            self._git("remote", "add", "origin", url)
        elif self._git("config", "--get", "remote.origin.url").output.strip() != url:
            self._git("config", "remote.origin.url", url)
        if credentials is not None:
            self._store_credentials(credentials)

    def _store_credentials(self, line: str) -> None:
        store = self.path / "credentials"
        fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(line)
        os.chmod(store, 0o600)  # an older file may have been wider
        self._git("config", "credential.helper", f"store --file={store}")

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
                    f"branch {self.branch!r} does not exist in {self.shown}; "
                    "push it, or set `branch:` in the agent config."
                )
            first = next((line for line in text.splitlines() if line.strip()), "no output")
            raise FatalError(f"cannot fetch {self.shown}: {first.strip()}")
        return self.head()

    def remote_head(self, timeout: float = 60) -> str | None:
        """The branch's newest commit on the remote, without fetching; None when
        the branch doesn't exist. FatalError when the remote can't be reached."""
        self.ensure()
        done = self._git("ls-remote", "--heads", "origin", f"refs/heads/{self.branch}",
                         timeout=timeout)
        if not done.ok:
            first = next((ln for ln in done.output.splitlines() if ln.strip()), "no output")
            raise FatalError(f"{self.shown} is not reachable: {first.strip()}")
        return done.output.split()[0] if done.output.strip() else None

    def head(self) -> str:
        done = self._git("rev-parse", "--verify", "--quiet", f"{self.tracking_ref}^{{commit}}")
        if not done.ok:
            raise FatalError(f"branch {self.branch!r} has not been fetched from {self.shown}")
        return done.output.strip()

    def commit(self, sha: str) -> Commit:
        done = self._git("show", "-s", "--format=%H%x00%an <%ae>%x00%s", sha)
        if not done.ok:
            raise FatalError(f"commit {sha} is not in {self.shown}")
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
