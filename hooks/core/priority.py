"""Background priority: how `run` and `spawn` (hooks/core/process.py) start a
command that must not slow the live bot.

The deploy agent trains and tests a release on the host that serves the live
bot, so it runs that work with `background=True`, at the lowest CPU priority
(nice 19) and the idle IO class (`ionice -c 3`), and the live Rasa and action
servers keep answering. The child is started through the `nice` (coreutils)
and `ionice` (util-linux) binaries, which lower their own priority and then
exec the command: the pid is the command's own, so timeouts and SIGTERM reach
it as before, and nothing runs between fork and exec in our process
(`preexec_fn` is unsafe in the threaded agent). A host without one of them
runs the command anyway and says so once: lowering the priority is a courtesy
to the live bot, never a reason to fail a step. A developer's hooks run at
normal priority: their user is waiting for them.
"""

from __future__ import annotations

import functools
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

NICENESS = 19  # the lowest CPU priority
IDLE_IO_CLASS = "3"  # ionice's idle class: disk time only when nobody else wants it
_BACKGROUND: ContextVar[bool] = ContextVar("rasa_gitops_background", default=False)
_said: set[str] = set()


@contextmanager
def background_priority(on: bool = True) -> Iterator[None]:
    """Run every command `run`/`spawn` start inside the block (in this thread)
    at background priority, unless a call says otherwise: for code that starts
    its commands deep inside (the NLU comparison) without a `background` option."""
    token = _BACKGROUND.set(on)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


def background_prefix(say: Callable[[str], None] | None = None) -> list[str]:
    """The argv prefix that runs a command at nice 19 in the idle IO class.

    A missing binary drops its part, and `say` (else stderr) hears it once per
    process: the command still runs.
    """
    prefix: list[str] = []
    nice, ionice = shutil.which("nice"), shutil.which("ionice")
    if nice:
        prefix += [nice, "-n", str(NICENESS)]
    # -t: run the command even where the IO class can't be set.
    if ionice:
        prefix += [ionice, "-c", IDLE_IO_CLASS, "-t"]
    missing = [name for name, found in (("nice (coreutils)", nice),
                                        ("ionice (util-linux)", ionice)) if not found]
    note = (f"background priority: {' and '.join(missing)} not found, so commands run "
            "without it (the live bot may answer slower while a release trains)")
    if missing and note not in _said:
        _said.add(note)
        if say is not None:
            say(note)
        else:
            print(f"rasa-gitops: {note}", file=sys.stderr)
    return prefix


def launch_argv(argv: list[str], background: bool,
                 say: Callable[[str], None] | None) -> list[str]:
    """`argv` as started: behind the priority prefix when in the background."""
    return [*background_prefix(say), *argv] if background else argv


def set_group_niceness(pid: int, niceness: int) -> bool:
    """Give the session `pid` leads a CPU weight of `niceness` (0..19).

    Why: with the kernel's autogroup scheduling (Linux's default where no
    cgroup sets CPU weights, /proc/sys/kernel/sched_autogroup_enabled), CPU is
    shared fairly between *sessions* first, and `nice` only ranks processes
    inside one session. A nice-19 training in the agent's session got as much
    CPU as the live Rasa server in its own session (measured: 5.8 s each of 12
    over 6 s on 2 cores; 11.6 s against 0.5 s with the session's niceness at
    19). So a background command runs in its own session, whose niceness is
    set here. Lowering a priority needs no privilege; False where the kernel
    has no autogroup (a cgroup then shares the CPU, and plain `nice` counts).
    """
    for _attempt in range(2):
        try:
            with open(f"/proc/{pid}/autogroup", "w", encoding="ascii") as group:
                group.write(str(niceness))
        except BlockingIOError:  # unprivileged: one change per 100 ms, system-wide
            time.sleep(0.11)
        except OSError:
            return False
        else:
            return True
    return False


@functools.cache
def die_with_parent() -> Callable[[], None] | None:
    """The pre-exec hook that makes a background command in its own session
    still end when its starter is killed (as it did in the starter's process
    group): PR_SET_PDEATHSIG. Resolved here, in the parent: nothing may be
    imported between fork and exec."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: the command outlives a killed agent, as any orphan

    def hook() -> None:  # pragma: no cover - runs in the child, before exec
        prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL

    return hook


def in_background(background: bool | None) -> bool:
    """Whether a command runs at background priority: as its call says, else as
    the `background_priority` block around it says (normal outside one)."""
    return _BACKGROUND.get() if background is None else background
