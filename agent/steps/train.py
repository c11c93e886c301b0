"""Train: `rasa train`, unless a kept model was trained from the same inputs.

The training fingerprint is the hooks' own (`hooks.project.fingerprint`): what
`rasa train` reads (config, domain, the training data) plus the Rasa version,
since another Rasa trains another model from the same files. A commit that
changes none of them, such as an action-code-only change, reuses the earlier
model as is: no training, the same `model_id`, so activating it later is a
no-op. When something did change, the hooks' `train_model` trains with Rasa's
own training cache (kept in one place across worktrees), which retrains only
the components whose inputs changed. Training runs at background priority
(`pipeline.priority`), so the live bot on the same host keeps answering.
"""

from __future__ import annotations

from pathlib import Path

from agent import faults
from agent.steps import REUSED, Outcome, StepContext, StepFailed
from agent.targets.base import DeployError
from agent.targets.rasa_api import model_id_of
from hooks.core.errors import FatalError
from hooks.project.custom_actions import custom_actions
from hooks.project.domain import load_domain
from hooks.project.fingerprint import rasa_identity, tree_fingerprint
from hooks.project.layout import layout_for
from hooks.stories.train import TrainingFailed, train_model

NAME = "train"
LONG = True


def training_fingerprint(root: Path, rasa_argv: list[str]) -> str:
    """THE hooks' training fingerprint of the tree at `root` for this Rasa."""
    return tree_fingerprint(layout_for(root), rasa_identity(rasa_argv))


def required_actions(root: Path) -> frozenset[str]:
    """Custom actions the domain lists (THE hooks' rule, overridden default actions
    included): what the action server must serve."""
    return custom_actions(load_domain(layout_for(root).domain))


def run(ctx: StepContext) -> Outcome:
    try:
        fingerprint = training_fingerprint(ctx.worktree, ctx.rasa_argv)
        actions = required_actions(ctx.worktree)
    except FatalError as exc:
        raise StepFailed(str(exc)) from None
    ctx.journal.update_release(ctx.release_id, model_fingerprint=fingerprint,
                               required_actions=sorted(actions))
    earlier = ctx.journal.reusable_model(fingerprint)
    if earlier is not None and earlier.id != ctx.release_id and earlier.model_path:
        ctx.journal.update_release(ctx.release_id, model_path=earlier.model_path,
                                   model_id=earlier.model_id, model_reused=1)
        ctx.log(f"config, domain and training data are unchanged since release {earlier.id}: "
                f"reusing {earlier.model_path}")
        return Outcome(f"reused the model of release {earlier.id} (training inputs unchanged)",
                       REUSED)

    try:
        model = train_model(
            ctx.rasa_argv, layout_for(ctx.worktree), out=ctx.models_dir,
            name=f"release-{ctx.release_id}", cache_dir=ctx.config.work_dir / "train-cache",
            timeout=ctx.timeout, progress=faults.on_first_line(ctx.log, "train.running"),
            background=ctx.config["pipeline.priority"] == "background",
        )
    except TrainingFailed as exc:
        raise StepFailed(f"rasa train failed (exit {exc.done.returncode}): "
                         f"{exc.last_line()[:300]}") from None
    faults.kill_point("train.trained")
    try:
        model_id = model_id_of(model)
    except DeployError as exc:
        raise StepFailed(str(exc)) from None
    ctx.journal.update_release(ctx.release_id, model_path=str(model), model_id=model_id)
    return Outcome(f"trained {model.name} (model_id {model_id[:12]})")
