"""Test stories: `rasa test core --e2e --fail-on-prediction-errors` on the configured glob.

`--e2e` because test stories carry the user's text: the model's own NLU reads
it, as in production, instead of trusting the intents and entities written in
the story (the `rasa-test-stories` hook runs them the same way).

Test stories exercise the model, not the action code (Rasa's guide says so).
So when an earlier release passed with the very same model and the very same
test stories, its verdict stands and the run is skipped.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from agent.steps import REUSED, SKIPPED, Outcome, StepContext, StepFailed
from hooks.core.process import run as run_command

NAME = "test"
LONG = True


def stories(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file())


def _verdict_key(model_id: str, files: list[Path], root: Path) -> str:
    digest = hashlib.sha256(model_id.encode())
    for path in files:
        digest.update(b"\0" + str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run(ctx: StepContext) -> Outcome:
    pattern = str(ctx.config["pipeline.test_stories"])
    files = stories(ctx.worktree, pattern)
    if not files:
        ctx.log(f"no test stories match {pattern}")
        return Outcome(f"no test stories match {pattern}", SKIPPED)
    release = ctx.release
    if not release.model_path or not release.model_id:
        raise StepFailed("no model to test (the train step recorded none)")
    key = _verdict_key(release.model_id, files, ctx.worktree)
    verdicts = ctx.config.work_dir / "test-verdicts"
    if (verdicts / key).is_file():
        earlier = (verdicts / key).read_text(encoding="utf-8").strip()
        ctx.log(f"release {earlier} passed with this model and these test stories")
        return Outcome(f"passed in release {earlier} with the same model and stories", REUSED)

    out = ctx.config.work_dir / "results" / f"release-{ctx.release_id}"
    if len(files) == 1:
        target = files[0]
    else:
        target = out / "stories"
        target.mkdir(parents=True, exist_ok=True)
        for index, path in enumerate(files):
            shutil.copy(path, target / f"{index:03d}_{path.name}")
    done = run_command(
        [*ctx.rasa_argv, "test", "core", "--e2e", "--model", release.model_path, "--stories",
         str(target), "--fail-on-prediction-errors", "--no-plot", "--out", str(out)],
        cwd=ctx.worktree, timeout=ctx.timeout, stream=ctx.log,
    )
    if not done.ok:
        failed = [ln.strip() for ln in done.output.splitlines() if "# predicted:" in ln]
        story = [ln.strip() for ln in done.output.splitlines() if ln.strip().startswith(
            "- story:")]
        detail = f"{story[0][2:]}: {failed[0]}" if story and failed else (
            failed[0] if failed else f"exit {done.returncode}")
        raise StepFailed(f"test stories failed: {detail}")
    verdicts.mkdir(parents=True, exist_ok=True)
    (verdicts / key).write_text(f"{ctx.release_id}\n", encoding="utf-8")
    names = ", ".join(str(p.relative_to(ctx.worktree)) for p in files)
    return Outcome(f"test stories passed ({names})")
