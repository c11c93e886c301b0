"""Train: `rasa train`, unless a kept model was trained from the same inputs.

The training fingerprint hashes what `rasa train` reads (config, domain, the
training data) plus the Rasa command. A commit that changes none of them, such
as an action-code-only change, reuses the earlier model as is: no training, the
same `model_id`, so activating it later is a no-op. When something did change,
Rasa's own training cache (kept in one place across worktrees through
RASA_CACHE_DIRECTORY) retrains only the components whose inputs changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from agent import faults
from agent.steps import REUSED, Outcome, StepContext, StepFailed
from agent.targets.base import DeployError
from agent.targets.rasa_http import model_id_of
from hooks.core.errors import FatalError
from hooks.core.process import run as run_command
from hooks.project.custom_actions import custom_actions
from hooks.project.domain import load_domain
from hooks.project.layout import layout_for

NAME = "train"
LONG = True


def training_fingerprint(root: Path, rasa_argv: list[str]) -> str:
    layout = layout_for(root)
    digest = hashlib.sha256()
    digest.update(" ".join(rasa_argv).encode())
    for path in sorted({layout.config, *layout.domain, *layout.data}):
        digest.update(b"\0" + str(path.relative_to(layout.root)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


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

    ctx.models_dir.mkdir(parents=True, exist_ok=True)
    name = f"release-{ctx.release_id}"
    cache = ctx.config.work_dir / "train-cache"
    done = run_command(
        [*ctx.rasa_argv, "train", "--out", str(ctx.models_dir), "--fixed-model-name", name],
        cwd=ctx.worktree, timeout=ctx.timeout,
        stream=faults.on_first_line(ctx.log, "train.running"),
        env={"RASA_CACHE_DIRECTORY": str(cache)},
    )
    model = ctx.models_dir / f"{name}.tar.gz"
    faults.kill_point("train.trained")
    if not done.ok or not model.is_file():
        last = next((ln for ln in reversed(done.output.splitlines()) if ln.strip()), "")
        raise StepFailed(f"rasa train failed (exit {done.returncode}): {last.strip()[:300]}")
    try:
        model_id = model_id_of(model)
    except DeployError as exc:
        raise StepFailed(str(exc)) from None
    ctx.journal.update_release(ctx.release_id, model_path=str(model), model_id=model_id)
    return Outcome(f"trained {model.name} (model_id {model_id[:12]})")
