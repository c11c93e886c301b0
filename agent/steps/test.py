"""Test stories: the configured glob's stories through the hooks' `run_test_stories`.

The hooks own THE way to run test stories (hooks/stories/rasa_test.py): the
stories go to Rasa in files named `test_*`, whatever the glob matched (Rasa
3.6 silently skips test stories in other files), through `rasa test core
--e2e` (the model's own NLU reads the user's text, as in production), and the
verdict is read from Rasa's result files. A run in which Rasa evaluated no
story although the glob matched some fails the step; it never passes.

Test stories exercise the model, not the action code (Rasa's guide says so).
So when an earlier release passed with the very same model and the very same
test stories, its verdict stands and the run is skipped. Rasa runs at
background priority (`pipeline.priority`): the live bot comes first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from agent.steps import REUSED, SKIPPED, Outcome, StepContext, StepFailed
from hooks.core.errors import FatalError
from hooks.project.load import load_data
from hooks.project.model import Story
from hooks.stories.rasa_test import failure_lines, run_test_stories

NAME = "test"
LONG = True


def stories(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file())


def _verdict_key(model_id: str, files: list[Path], root: Path) -> str:
    digest = hashlib.sha256(model_id.encode())
    for path in files:
        digest.update(b"\0" + str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_stories_in(files: list[Path], root: Path) -> list[Story]:
    """Every story and rule of the matched files, or StepFailed when there is none."""
    try:
        found = [s for s in load_data((), test_files=files)[2] if s.kind == "test"]
    except FatalError as exc:
        raise StepFailed(str(exc).replace(f"{root}/", "")) from None
    if not found:
        names = ", ".join(str(p.relative_to(root)) for p in files)
        raise StepFailed(f"no test story in {names} (pipeline.test_stories matched them); "
                         "write them as Rasa test stories (stories: with steps)")
    return found


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

    given = test_stories_in(files, ctx.worktree)
    out = ctx.config.work_dir / "results" / f"release-{ctx.release_id}"
    try:
        result = run_test_stories(
            ctx.rasa_argv, ctx.worktree, Path(release.model_path), given, out,
            timeout=ctx.timeout, progress=ctx.log,
            background=ctx.config["pipeline.priority"] == "background",
        )
    except FatalError as exc:
        text = str(exc)
        for line in text.splitlines():
            ctx.log(line)
        raise StepFailed(text.splitlines()[0] if text else "rasa test failed") from None
    if result.failures:
        lines = failure_lines(result, ctx.worktree)
        for line in lines:
            ctx.log(line)
        ctx.log(f"Rasa's report of the failed stories: {result.failed_file}")
        more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
        raise StepFailed(f"test stories failed: {lines[0]}{more}")
    verdicts.mkdir(parents=True, exist_ok=True)
    (verdicts / key).write_text(f"{ctx.release_id}\n", encoding="utf-8")
    names = ", ".join(str(p.relative_to(ctx.worktree)) for p in files)
    return Outcome(f"test stories passed ({names}; {result.evaluated} conversation(s))")
