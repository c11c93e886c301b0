"""The agent's NLU gate: the rasa-nlu-compare comparison against production.

Real git (a bare repo and the agent's mirror), real Rasa training of the tiny
NLU bot, the step run as the pipeline runs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import load_config
from agent.journal import Release
from agent.repo import Mirror
from agent.steps import SKIPPED, StepContext, StepFailed, nlu_gate
from tests.support.agent_config import agent_config
from tests.support.bots import copy_bot
from tests.support.git import git, init_repo
from tests.support.nlu import move_greetings
from tests.support.paths import NLUBOT


@pytest.fixture()
def rasa_on_path(rasa_bin: Path) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RASA_GITOPS_RASA", str(rasa_bin))
        yield


def _context(tmp_path: Path, change: str, **gate: object) -> tuple[StepContext, list[str]]:
    src = init_repo(copy_bot(NLUBOT, tmp_path / "src"))
    base = git(src, "rev-parse", "HEAD")
    if change == "moved":
        move_greetings(src)
    else:
        (src / "README.md").write_text("docs only\n", encoding="utf-8")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", change)
    head = git(src, "rev-parse", "HEAD")
    bare = tmp_path / "bot.git"
    git(tmp_path, "clone", "-q", "--bare", str(src), str(bare))

    config = load_config(agent_config(tmp_path / "agent.yml", repo=bare,
                                      work_dir=tmp_path / "work",
                                      nlu_gate={"enabled": True, "folds": 3, **gate}))
    mirror = Mirror(str(bare), "main", tmp_path / "work" / "repo.git")
    mirror.fetch()
    worktree = mirror.add_worktree(head, tmp_path / "work" / "release")
    production = Release(
        id=1, environment="production", commit=base, branch="main", author="a", message="m",
        status="promoted", reason="", created_at=0.0, started_at=None, finished_at=None,
        owner="", retry_of=None, worktree=None, model_path=None, model_fingerprint=None,
        model_id=None, model_reused=False, required_actions=(), action_code_fingerprint=None,
        image=None, action_server=None,
    )
    log: list[str] = []
    ctx = StepContext(
        config=config, journal=None, mirror=mirror, targets=None,  # type: ignore[arg-type]
        release_id=2, commit=head, rasa_argv=[], log=log.append, worktree=worktree,
        production=production,
    )
    return ctx, log


@pytest.mark.rasa
@pytest.mark.light  # trains two tiny NLU models, like the NLU hook's tests; times nothing
def test_moved_examples_fail_the_gate_then_pass_with_looser_thresholds(
    tmp_path: Path, rasa_on_path: None
) -> None:
    ctx, log = _context(tmp_path, "moved", max_intent_f1_drop=0.05)
    with pytest.raises(StepFailed, match="F1 dropped"):
        nlu_gate.run(ctx)
    assert any("greet" in line for line in log)
    # The base side is cached under the work dir: the second run trains only
    # the release's side, and with no thresholds the gate passes.
    cache = Path(ctx.config.work_dir) / "nlu-compare"
    assert cache.is_dir() and any(cache.iterdir())
    loose = tmp_path / "loose"
    loose.mkdir()
    ctx2, _ = _context(loose, "moved", max_intent_f1_drop=1, max_macro_f1_drop=1)
    shutil.copytree(cache, Path(ctx2.config.work_dir) / "nlu-compare", dirs_exist_ok=True)
    assert nlu_gate.run(ctx2).status != SKIPPED


def test_a_release_without_nlu_changes_skips_the_gate(tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path, "docs")
    outcome = nlu_gate.run(ctx)
    assert outcome.status == SKIPPED and "unchanged" in outcome.summary
    assert os.path.isdir(ctx.worktree)
