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

from agent.steps import SKIPPED, Outcome, StepContext, StepFailed
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
    options = Options(
        folds=int(ctx.config["nlu_gate.folds"]),
        cache_dir=ctx.config.work_dir / "nlu-compare",
        base_label=f"production ({production.short})",
        head_label=f"release ({ctx.commit[:8]})",
    )
    thresholds = Thresholds(
        max_macro_f1_drop=ctx.config["nlu_gate.max_macro_f1_drop"],
        max_intent_f1_drop=ctx.config["nlu_gate.max_intent_f1_drop"],
    )
    background = ctx.config["pipeline.priority"] == "background"
    with tempfile.TemporaryDirectory(prefix="nlu-gate-") as scratch, \
            background_priority(background):
        try:
            base = materialise(ctx.mirror.path, production.commit, ".", Path(scratch))
            if not nlu_changed(base, ctx.worktree, options):
                return Outcome("NLU data and pipeline unchanged since production", SKIPPED)
            comparison = compare(base, ctx.worktree, options, log=ctx.log)
        except FatalError as exc:
            raise StepFailed(f"NLU comparison failed: {exc}") from None
    failures = gate(comparison, thresholds)
    for failure in failures:
        ctx.log(failure)
    if failures:
        raise StepFailed(f"NLU gate: {failures[0]}" + (
            f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""))
    return Outcome("NLU F1 within the gate's thresholds")
