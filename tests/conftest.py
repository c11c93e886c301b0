"""Fixtures shared by every test module.

Expensive things (a trained model, services) are session-scoped: each is made
once per test run and shared, which keeps the suite inside its CI budget.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Real dockerd, docker-registry and sshd, started once per session (Docker tests).
pytest_plugins = ["tests.support.services"]

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
COFFEEBOT = EXAMPLES / "coffeebot"
SHARED_BOTS = REPO_ROOT.parent / "shared" / "bots"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# The test venv's console scripts (rasa, pre-commit, our hooks) come first on
# PATH, as they do under .ci/test, so a bare `pytest` run finds them too.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("PYENV_VERSION", "3.11.7:3.10.13")


def need(condition: bool, reason: str) -> None:
    """Skip locally when a real part is missing; in CI that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI needs this and it is missing: {reason}")
    pytest.skip(reason)


def copy_bot(source: Path, dest: Path) -> Path:
    shutil.copytree(
        source,
        dest,
        ignore=shutil.ignore_patterns("models", ".rasa", "results", "__pycache__"),
    )
    return dest


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.com",
        "GIT_COMMITTER_NAME": "Test Author",
        "GIT_COMMITTER_EMAIL": "author@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def init_repo(path: Path) -> Path:
    """Turn a folder into a git repo with everything in one commit."""
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "commit.gpgsign", "false")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture(scope="session")
def rasa_bin() -> Path:
    """The real `rasa` executable of the test venv."""
    candidate = Path(sys.executable).parent / "rasa"
    found = candidate if candidate.exists() else shutil.which("rasa")
    need(found is not None, "rasa 3.6.21 is not installed in the test environment")
    return Path(str(found))


@pytest.fixture()
def coffeebot(tmp_path: Path) -> Path:
    """A fresh copy of the example bot, not yet a git repo."""
    return copy_bot(COFFEEBOT, tmp_path / "coffeebot")


@pytest.fixture()
def coffeebot_repo(coffeebot: Path) -> Path:
    """A fresh copy of the example bot as a one-commit git repo."""
    return init_repo(coffeebot)


@pytest.fixture(scope="session")
def trained_coffeebot(
    tmp_path_factory: pytest.TempPathFactory, rasa_bin: Path
) -> Iterator[tuple[Path, Path]]:
    """The example bot trained once per session: (bot folder, model file)."""
    bot = copy_bot(COFFEEBOT, tmp_path_factory.mktemp("trained") / "coffeebot")
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false"}
    done = subprocess.run(
        [str(rasa_bin), "train", "--fixed-model-name", "coffeebot", "--out", "models"],
        cwd=bot,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield bot, bot / "models" / "coffeebot.tar.gz"


@pytest.fixture(scope="session")
def shared_bots() -> Path:
    """The real public bots in ../shared/bots (only where that folder exists)."""
    if not SHARED_BOTS.is_dir():
        pytest.skip("../shared/bots is not present on this machine")
    return SHARED_BOTS


# The example bot's training data under Rasa's light components only: no
# TensorFlow, so a model trains in about 10 s and a Rasa server loads it in
# 0.1 s, where the DIET/TED config takes about 60 s for each (2 cores). The
# deploy tests (pipeline, crashes, Docker, hostile commits) are about which
# release is live, not how well a model generalises; the real config is trained
# by `trained_coffeebot`, the story and NLU hooks' tests, and the demo test.
LIGHT_CONFIG = """\
recipe: default.v1
assistant_id: coffeebot
language: en
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 2
    max_ngram: 4
  - name: LogisticRegressionClassifier
    random_state: 42
  - name: CRFEntityExtractor
  - name: EntitySynonymMapper
policies:
  - name: MemoizationPolicy
    max_history: 3
  - name: RulePolicy
"""


def deploy_repo(root: Path) -> tuple[Path, Path]:
    """A bare repo on the "deploy host" and a copy of the example bot (with the
    light config) that pushes to it."""
    bare = root / "coffeebot.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    src = copy_bot(COFFEEBOT, root / "src")
    (src / "config.yml").write_text(LIGHT_CONFIG, encoding="utf-8")
    git(src, "init", "-q", "-b", "main")
    git(src, "config", "commit.gpgsign", "false")
    git(src, "remote", "add", "deploy", str(bare))
    return bare, src
