"""Kill points: where a test may make the agent die, as a crash would.

`RASA_GITOPS_KILL_AT=<point>[,<point>...]` makes the agent SIGKILL itself the
first time it reaches a named point (so a test kills the real process at an
exact moment without editing the code under test). When the agent leads its
own process group (as `agent once` started with a new session does, and as a
systemd service's cgroup is killed), the whole group dies with it: the `rasa
train` or `docker` children go too, but the servers the agent started, which
live in their own sessions, keep serving.

The points, named `<where>.<moment>`:
- `step.<step>.start` / `step.<step>.end`: after the journal records the step
  as started, or its result;
- `train.running`: at the first output line of `rasa train`;
- `train.trained`: the model file exists, the journal doesn't know it yet;
- `build.running`, `push.running`: at the engine's first line of a build or a push
  (dockerd is building or pushing);
- `rasa.spawned`: a blue/green slot's Rasa server was started, its record not
  yet written (only its environment's mark names it, agent/owned.py);
- `model.loaded`: the Rasa server loaded the new model, the restart link not yet moved;
- `actions.switched`: the forwarder points at the new action server, its
  record (`live.json`) is not yet written and the old server still runs;
- `release.promoting`: every switch is done, the production pointer not yet moved;
- `promote.switched`: `agent promote`/`rollback` switched, the pointer not yet moved.

Without the variable, every call is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

VARIABLE = "RASA_GITOPS_KILL_AT"


def armed(point: str) -> bool:
    wanted = os.environ.get(VARIABLE, "")
    return bool(wanted) and point in {p.strip() for p in wanted.split(",")}


def kill_point(point: str) -> None:
    """Die here, at once and without cleanup, when the environment names `point`."""
    if not armed(point):
        return
    os.environ[VARIABLE] = ""  # a point fires once (a retry in the same process survives)
    if os.getpgid(0) == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def on_first_line(sink: Callable[[str], None], point: str, skip: int = 0
                  ) -> Callable[[str], None]:
    """`sink`, killing the process at `point` when the first line after `skip` lines
    arrives (mid-command: `skip=1` passes the agent's own "building ..." line)."""
    if not armed(point):
        return sink
    seen = [0]

    def guarded(line: str) -> None:
        seen[0] += 1
        if seen[0] > skip:
            kill_point(point)
        sink(line)

    return guarded
