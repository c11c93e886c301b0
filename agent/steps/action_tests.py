"""Action-code tests: the bot's own command (e.g. `pytest -q`), in a clean environment.

"Clean" means the command sees only PATH, HOME, LANG and TMPDIR, and the
variables `pipeline.env` and `action_server.env` name, not the rest of the
agent's environment (so no secret of the agent leaks into a bot's test, and a
test can't pass because of something only the agent has set). The command runs
at background priority (`pipeline.priority`), beside the live bot.
"""

from __future__ import annotations

import os
import shlex

from agent.steps import SKIPPED, Outcome, StepContext, StepFailed
from hooks.core.child_env import passed_env
from hooks.core.process import run as run_command

NAME = "action_tests"
LONG = True
KEPT_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def run(ctx: StepContext) -> Outcome:
    command = ctx.config["pipeline.action_tests"]
    if not command:
        return Outcome("no action tests configured (pipeline.action_tests)", SKIPPED)
    env = {key: os.environ[key] for key in KEPT_VARIABLES if key in os.environ}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"})
    # The variables the config names for the bot: its pipeline's and its actions'.
    env.update(passed_env([*(ctx.config["pipeline.env"] or ()),
                           *(ctx.config["action_server.env"] or ())]))
    done = run_command(shlex.split(str(command)), cwd=ctx.worktree, timeout=ctx.timeout,
                       stream=ctx.log, env=env, inherit_env=False,
                       background=ctx.config["pipeline.priority"] == "background")
    if not done.ok:
        last = next((ln for ln in reversed(done.output.splitlines()) if ln.strip()), "")
        raise StepFailed(f"`{command}` failed (exit {done.returncode}): {last.strip()[:200]}")
    return Outcome(f"`{command}` passed")
