"""Which two revisions rasa-nlu-compare compares, and unpacking one of them.

pre-commit hands a hook the range it runs on as PRE_COMMIT_FROM_REF and
PRE_COMMIT_TO_REF (at the pre-push stage, and with `--from-ref/--to-ref`).
When a range is given it is compared exactly; a guessed range (the merge base
with main against the working tree) would compare something else than what is
being pushed, and could pass a push it never looked at.
"""

from __future__ import annotations

import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hooks.core.errors import FatalError
from hooks.core.process import git

MAIN_BRANCHES = ("origin/main", "main", "origin/master", "master")
FROM_REF_ENV = "PRE_COMMIT_FROM_REF"
TO_REF_ENV = "PRE_COMMIT_TO_REF"
WORKING_TREE = "working tree"


@dataclass(frozen=True)
class Range:
    """The base commit, and the head commit or None for the working tree."""

    base: str
    base_label: str
    head: str | None = None
    head_label: str = WORKING_TREE


def repo_root(path: Path) -> Path:
    done = git(["rev-parse", "--show-toplevel"], cwd=path)
    if not done.ok:
        raise FatalError(f"{path}: not inside a git repository; rasa-nlu-compare compares "
                         "a git revision with the working tree.")
    return Path(done.output.strip()).resolve()


def _commit(repo: Path, rev: str, what: str) -> tuple[str, str]:
    done = git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=repo)
    if not done.ok:
        raise FatalError(
            f"{what} revision '{rev}' does not exist in {repo}; fetch it first "
            "(e.g. `git fetch origin main`) or pass another one."
        )
    sha = done.output.strip()
    return sha, f"`{sha[:8]}` ({rev})"


def resolve_base(
    repo: Path, base: str | None, main_branch: str | None, *, head: str = "HEAD"
) -> tuple[str, str]:
    """(commit, label) of the base: `base`, else the merge base of `head` with
    the main branch."""
    if base:
        return _commit(repo, base, "base")
    candidates = (main_branch,) if main_branch else MAIN_BRANCHES
    for branch in candidates:
        if branch is None:
            continue
        if not git(["rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}"], cwd=repo).ok:
            continue
        done = git(["merge-base", head, branch], cwd=repo)
        if done.ok:
            sha = done.output.strip()
            return sha, f"`{sha[:8]}` (merge base with {branch})"
        raise FatalError(f"{head} and {branch} share no history; pass --base REV.")
    tried = ", ".join(c for c in candidates if c)
    raise FatalError(f"no main branch found (tried {tried}); pass --base REV or --main-branch.")


def resolve_range(
    repo: Path,
    *,
    base: str | None = None,
    head: str | None = None,
    main_branch: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Range:
    """The range to compare: revisions given on the command line first, then
    pre-commit's PRE_COMMIT_FROM_REF/PRE_COMMIT_TO_REF, then the merge base
    with the main branch against the working tree."""
    env = {} if env is None else env
    base = base or env.get(FROM_REF_ENV) or None
    head = head or env.get(TO_REF_ENV) or None
    if head is None:
        return Range(*resolve_base(repo, base, main_branch))
    head_sha, head_label = _commit(repo, head, "head")
    base_sha, base_label = resolve_base(repo, base, main_branch, head=head_sha)
    return Range(base_sha, base_label, head_sha, head_label)


def materialise(repo: Path, commit: str, project: str, dest: Path) -> Path:
    """Unpack the project folder as it is at `commit` into `dest`; return it there."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "base.tar"
    spec = [] if project in ("", ".") else ["--", project]
    done = git(["archive", "--format=tar", "-o", str(archive), commit, *spec], cwd=repo)
    if not done.ok:
        raise FatalError(f"the project folder '{project}' does not exist at {commit[:8]}; "
                         f"there is nothing to compare against.\n{done.tail(3)}")
    tree = dest / "tree"
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(tree, filter="data")
        else:  # pragma: no cover - Pythons before the tarfile filters
            tar.extractall(tree)
    archive.unlink()
    return tree / project if project not in ("", ".") else tree
