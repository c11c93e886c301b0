"""Hostile and broken commits, pushed to a real bare repo and released by the
real agent (`agent once` as a process): each ends as a failed release with a
clear one-line reason in the journal, never a traceback, a hang or a success,
and production stays untouched.

- a symlink pointing outside the worktree (to a file of the deploy host) is
  refused at checkout, and the host file's content appears nowhere;
- YAML bombs (billion laughs, deep nesting) and a huge file are refused by the
  same bounded loader as the hooks, and the agent's peak memory stays within a
  small margin of an ordinary failing release;
- a non-UTF-8 file and a commit that deletes domain.yml name the file;
- path traversal in the branch, release and environment names is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.journal import FAILED, Journal
from tests.support.agent_config import agent_config
from tests.support.bots import copy_bot, deploy_repo
from tests.support.git import git
from tests.support.paths import COFFEEBOT

# Light (tests/support/ci_split.py): no session service, nothing timed, and no
# model is ever served (every release fails before its switch).
pytestmark = [pytest.mark.rasa, pytest.mark.light, pytest.mark.timeout(1800)]

# Runs `agent once` and prints the peak RSS (KiB) of its whole process tree.
MEASURE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:]); "
           "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")

HOST_SECRET = "deploy-host-secret-line-4711"


@dataclass
class Repo:
    root: Path
    src: Path
    config: Path
    rasa_bin: Path
    outside: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "RASA_TELEMETRY_ENABLED": "false",
                "PATH": f"{self.rasa_bin.parent}{os.pathsep}{os.environ['PATH']}"}

    def agent(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent.cli", "-c", str(config or self.config), *args],
            capture_output=True, text=True, env=self.env(), timeout=600,
        )

    def release(self) -> tuple[int, str, str, int]:
        """`agent once` on HEAD: (release id, status, reason, peak RSS in KiB)."""
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, sys.executable, "-m", "agent.cli", "-c",
             str(self.config), "once", "-q"],
            capture_output=True, text=True, env=self.env(), timeout=600,
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        rss = int(done.stdout.rsplit("MAXRSS", 1)[1])
        journal = Journal(self.root / "work" / "journal.sqlite")
        try:
            release = journal.last_release()
            assert release is not None
            assert journal.production_release("production") is None  # untouched
            return release.id, release.status, release.reason, rss
        finally:
            journal.close()

    def commit(self, message: str) -> None:
        git(self.src, "add", "-A")
        git(self.src, "commit", "-q", "-m", message)
        git(self.src, "push", "-q", "deploy", "main")

    def reset(self) -> None:
        """Back to the clean bot, so each case breaks one thing."""
        git(self.src, "rm", "-r", "-q", "--cached", ".")
        for path in list(self.src.iterdir()):
            if path.name != ".git":
                subprocess.run(["rm", "-rf", str(path)], check=True)
        copy = copy_bot(COFFEEBOT, self.root / "clean")
        for path in copy.iterdir():
            path.rename(self.src / path.name)
        copy.rmdir()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, rasa_bin: Path) -> Iterator[Repo]:
    root = tmp_path_factory.mktemp("hostile")
    bare, src = deploy_repo(root)
    outside = root / "host-file.yml"
    outside.write_text(f"version: '3.1'\nnlu:\n- intent: greet\n  examples: |\n"
                       f"    - {HOST_SECRET}\n", encoding="utf-8")
    config = agent_config(root / "agent.yml", repo=bare, work_dir="work", rasa_command=rasa_bin,
                          model={"manage_server": False})
    yield Repo(root, src, config, rasa_bin, outside)


@pytest.fixture(scope="module")
def baseline_rss(repo: Repo) -> int:
    """Peak memory of an ordinary failing release (a story with an unknown intent)."""
    stories = repo.src / "data" / "stories.yml"
    stories.write_text(stories.read_text(encoding="utf-8") + "  - story: unknown intent\n"
                       "    steps:\n      - intent: order_tea\n      - action: utter_greet\n",
                       encoding="utf-8")
    repo.commit("an ordinary broken commit")
    _, status, reason, rss = repo.release()
    assert status == FAILED and "order_tea" in reason, reason
    repo.reset()
    return rss


def _journal_text(repo: Repo) -> str:
    db = repo.root / "work" / "journal.sqlite"
    done = subprocess.run(["sqlite3", str(db), ".dump"], capture_output=True, text=True)
    if done.returncode != 0:  # no sqlite3 CLI: Python's dump
        import sqlite3

        conn = sqlite3.connect(db)
        try:
            return "\n".join(conn.iterdump())
        finally:
            conn.close()
    return done.stdout


def test_a_symlink_out_of_the_worktree_is_refused_and_never_read(repo: Repo,
                                                                 baseline_rss: int) -> None:
    (repo.src / "data" / "leak.yml").symlink_to(repo.outside)
    repo.commit("training data that is a link to a host file")
    release_id, status, reason, _ = repo.release()
    assert status == FAILED
    assert reason.startswith("checkout: data/leak.yml is a symlink pointing outside"), reason
    journal = Journal(repo.root / "work" / "journal.sqlite")
    try:
        steps = {s.name: s.status for s in journal.steps(release_id)}
    finally:
        journal.close()
    assert steps == {"checkout": FAILED}  # nothing read the worktree after checkout
    assert HOST_SECRET not in _journal_text(repo)
    logs = repo.root / "work" / "logs"
    assert all(HOST_SECRET not in p.read_text(errors="replace")
               for p in logs.rglob("*") if p.is_file())
    repo.reset()


def test_a_symlinked_actions_folder_out_of_the_worktree_is_refused(repo: Repo) -> None:
    outside_actions = repo.root / "host-actions"
    outside_actions.mkdir(exist_ok=True)
    (outside_actions / "__init__.py").write_text("", encoding="utf-8")
    subprocess.run(["rm", "-rf", str(repo.src / "actions")], check=True)
    (repo.src / "actions").symlink_to(outside_actions)
    repo.commit("action code that is a link to a host folder")
    _, status, reason, _ = repo.release()
    assert status == FAILED and reason.startswith("checkout: actions is a symlink"), reason
    repo.reset()


# The classic: nine levels of ten aliases each, 90 aliases in a few lines,
# a billion strings once expanded. Appended to an otherwise valid domain.
BILLION_LAUGHS = (COFFEEBOT / "domain.yml").read_text(encoding="utf-8") + 'lol0: &lol0 "lol"\n'
BILLION_LAUGHS += "".join(
    f"lol{i}: &lol{i} [{', '.join(['*lol' + str(i - 1)] * 10)}]\n" for i in range(1, 10)
)


@pytest.mark.parametrize(("case", "path", "content", "expected"), [
    ("billion laughs", "domain.yml", BILLION_LAUGHS, "alias bomb"),
    ("deep nesting", "data/stories.yml", "version: '3.1'\nstories: " + "[" * 200 + "]" * 200
     + "\n", "nested deeper"),
    ("huge file", "data/huge.yml", "version: '3.1'\nnlu:\n- intent: greet\n  examples: |\n"
     + "    - hello there my friend\n" * 500_000, "MiB limit"),
], ids=["billion-laughs", "deep-nesting", "huge-file"])
def test_yaml_bombs_and_huge_files_are_refused_in_bounded_memory(
    repo: Repo, baseline_rss: int, case: str, path: str, content: str, expected: str
) -> None:
    (repo.src / path).write_text(content, encoding="utf-8")
    repo.commit(case)
    _, status, reason, rss = repo.release()
    assert status == FAILED
    assert reason.startswith("validate:") and expected in reason and path in reason, reason
    # Refused before anything expands it: no more memory than an ordinary failure
    # (plus a margin for the bytes of the file itself).
    assert rss < baseline_rss + 64 * 1024, (case, rss, baseline_rss)
    repo.reset()


def test_a_non_utf8_file_names_the_file(repo: Repo) -> None:
    nlu = repo.src / "data" / "nlu.yml"
    nlu.write_bytes(nlu.read_bytes().replace(b"hello", b"h\xe9llo\xff", 1))
    repo.commit("latin-1 bytes in the NLU data")
    _, status, reason, _ = repo.release()
    assert status == FAILED
    assert reason.startswith("validate:") and "data/nlu.yml" in reason, reason
    assert "UTF-8" in reason or "utf-8" in reason, reason
    repo.reset()


def test_a_commit_that_deletes_the_domain_fails_clearly(repo: Repo) -> None:
    (repo.src / "domain.yml").unlink()
    repo.commit("delete the domain")
    _, status, reason, _ = repo.release()
    assert status == FAILED
    assert reason.startswith("validate:") and "domain" in reason, reason
    repo.reset()


def test_path_traversal_in_names_is_refused(repo: Repo) -> None:
    for branch in ("../../etc/passwd", "main/../../x", "/abs", "a//b"):
        bad = agent_config(repo.root / "agent-branch.yml", like=repo.config, branch=branch)
        done = repo.agent("once", config=bad)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert "branch:" in done.stderr and "not a valid git branch name" in done.stderr
    for args, expected in [
        (("logs", "../../etc/passwd"), "is not a release number"),
        (("promote", "../1"), "is not a release number"),
        (("rollback", "--to", "../../1"), "is not a release number"),
        (("promote", "1", "--env", "../production"), "no environment '../production'"),
        (("logs", "99999"), "no release 99999"),
    ]:
        done = repo.agent(*args)
        assert done.returncode == 1, (args, done.stdout)
        assert expected in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
