"""NLU gate: compare the release's NLU model with production's, before promotion.

The same comparison as the `rasa-nlu-compare` hook (same folds, same seed,
base results cached under the work dir), against the release in production.
Off unless `nlu_gate.enabled`; it runs only when the NLU data or pipeline
changed, and fails the release when F1 drops more than the thresholds allow.
Its training and testing runs at background priority (`pipeline.priority`);
the comparison starts them deep inside, so a `background_priority` block
reaches them all.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from agent.config import AgentConfig
from agent.journal import Release
from agent.steps import SKIPPED, Outcome, StepContext, StepFailed
from agent.targets.base import LogSink
from hooks.core.errors import FatalError
from hooks.core.priority import background_priority
from hooks.nlu.compare import Options, compare, nlu_changed
from hooks.nlu.report import Thresholds, gate
from hooks.nlu.revisions import materialise

NAME = "nlu_gate"
LONG = True


def run(ctx: StepContext) -> Outcome:
    if not ctx.config["nlu_gate.enabled"]:
        return Outcome("off (nlu_gate.enabled)", SKIPPED)
    production = ctx.production
    if production is None:
        return Outcome("nothing in production to compare with", SKIPPED)
    try:
        failures = regressions(ctx.config, ctx.mirror.path, production, ctx.worktree,
                               ctx.commit, "production", ctx.log)
    except FatalError as exc:
        raise StepFailed(f"NLU comparison failed: {exc}") from None
    if failures is None:
        return Outcome("NLU data and pipeline unchanged since production", SKIPPED)
    if failures:
        raise StepFailed(f"NLU gate: {summary(failures)}")
    return Outcome("NLU F1 within the gate's thresholds")


def regressions(config: AgentConfig, mirror: Path, base: Release, worktree: Path,
                commit: str, against: str, log: LogSink) -> list[str] | None:
    """What the tree at `worktree` (of `commit`) loses against `base`'s commit,
    beyond the `nlu_gate` thresholds: [] when nothing, None when the NLU data and
    pipeline are unchanged (nothing to compare). Also the gate of an environment
    after the first (`verify.nlu_gate`, agent/placement.py), against what serves
    there. FatalError when the comparison itself fails."""
    options = Options(
        folds=int(config["nlu_gate.folds"]),
        cache_dir=config.work_dir / "nlu-compare",
        base_label=f"{against} ({base.short})",
        head_label=f"release ({commit[:8]})",
    )
    thresholds = Thresholds(
        max_macro_f1_drop=config["nlu_gate.max_macro_f1_drop"],
        max_intent_f1_drop=config["nlu_gate.max_intent_f1_drop"],
    )
    background = config["pipeline.priority"] == "background"
    with tempfile.TemporaryDirectory(prefix="nlu-gate-") as scratch, \
            background_priority(background):
        base_tree = materialise(mirror, base.commit, ".", Path(scratch))
        if not nlu_changed(base_tree, worktree, options):
            return None
        comparison = compare(base_tree, worktree, options, log=log)
    failures = gate(comparison, thresholds)
    for failure in failures:
        log(failure)
    return failures


def summary(failures: list[str]) -> str:
    return failures[0] + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else "")
