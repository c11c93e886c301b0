"""The deploy lock, held only while what serves changes.

Two journal locks split what one used to do. The tick holds PIPELINE_LOCK for a
whole release, gates included, so the daemon and `agent once` never run two
releases at once. DEPLOY_LOCK is held only around a change of what serves: the
tick's restore, a release's policy decision and switch, `agent promote` and
`agent rollback`, and the cleanup of old models (which must not delete one a
promote is about to load). So a rollback during an incident waits at most for
a switch in progress, never for a training or a test run.

Whoever needs DEPLOY_LOCK while a live process holds it waits, saying so, for
as long as the longest switch may take (`switch_wait`); a stale lock (its owner
is gone) fails at once with the `agent unlock` hint, as before.

In this process, an in-memory lock of the same name (`switching`) comes
first: every holder of a deploy lock takes it before the journal lock and
drops it after. Journal locks are owned per process (`host:pid`), so the
supervisor's thread would see the main thread's DEPLOY_LOCK as its own (and
releasing it would drop the main thread's!); it instead only tries the
in-memory lock (`try_deploy_lock`) and skips its round for an environment
while a switch, restore or cleanup of that environment in this process runs,
up to the journal write that ends it (a release's `finish_release` after
`go_live`).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

from agent.config import AgentConfig
from agent.journal import LockHeld
from agent.runtime import DEPLOY_LOCK, Agent

# One per deploy lock, held by every holder of that lock in this process
# (re-entrant: go_live undoes inside it, under the deploy lock). Per lock, so
# a switch in staging never pauses the supervisor's watch of production.
_SWITCHING: dict[str, threading.RLock] = {}
_SWITCHING_MADE = threading.Lock()


def switching(name: str) -> threading.RLock:
    """This process's in-memory lock in front of the journal's lock `name`."""
    with _SWITCHING_MADE:
        return _SWITCHING.setdefault(name, threading.RLock())

MARGIN = 60.0  # journal writes, the smoke test's own turns, process start-up


def switch_wait(config: AgentConfig) -> float:
    """The longest a switch can hold the lock: start an action server, load (and
    drain) a model, then undo both after a failed smoke test."""
    def one_way(view: AgentConfig) -> float:
        return (float(view["action_server.start_timeout"]) + float(view["model.load_timeout"])
                + float(view["model.drain_timeout"]))

    # The slowest environment's: each may override its timeouts.
    return 2 * max(one_way(config.for_environment(e.name)) for e in config.environments) \
        + MARGIN


def lock_name(config: AgentConfig, environment: str | None) -> str:
    """The deploy lock of `environment` (None: the first): each environment has its
    own, by name, so production never waits for a switch in staging. A single
    environment keeps the name it always had."""
    if len(config.environments) == 1:
        return DEPLOY_LOCK
    return f"{DEPLOY_LOCK}:{environment or config.environments[0].name}"


def take_deploy_lock(agent: Agent, purpose: str, check: Callable[[], None] | None = None,
                     environment: str | None = None) -> None:
    """Take `switching`, then `environment`'s deploy lock, waiting for a switch (or the
    supervisor's restart) in progress; LockHeld if stale or too long. `check` may
    raise to stop waiting for another process's lock. `release_deploy_lock` ends it."""
    timeout = switch_wait(agent.config)
    name = lock_name(agent.config, environment)
    local = switching(name)
    if not local.acquire(blocking=False):
        agent.progress.info(f"waiting for a server restart of this agent to end ({purpose})")
        if not local.acquire(timeout=timeout):
            raise LockHeld(f"a switch or server restart of this agent did not end within "
                           f"{timeout:.0f} s; try again when it is done.")
    try:
        agent.journal.wait_for_lock(name, purpose, timeout=timeout,
                                    say=agent.progress.info, check=check)
    except BaseException:
        local.release()
        raise


def try_deploy_lock(agent: Agent, purpose: str, environment: str | None = None) -> bool:
    """Take `switching` and the deploy lock now, or neither (False): a switch of this
    process or another, or a stale lock, holds one of them."""
    name = lock_name(agent.config, environment)
    local = switching(name)
    if not local.acquire(blocking=False):
        return False
    try:
        agent.journal.acquire_lock(name, purpose)
    except LockHeld:
        local.release()
        return False
    except BaseException:
        local.release()
        raise
    return True


def release_deploy_lock(agent: Agent, environment: str | None = None) -> None:
    """End what take_deploy_lock/try_deploy_lock took: the journal lock first."""
    name = lock_name(agent.config, environment)
    try:
        agent.journal.release_lock(name)
    finally:
        switching(name).release()


@contextmanager
def deploy_lock(agent: Agent, purpose: str, check: Callable[[], None] | None = None,
                environment: str | None = None) -> Iterator[None]:
    """Hold `environment`'s deploy lock for the block, waiting for a switch in
    progress to finish (`check` as for take_deploy_lock)."""
    take_deploy_lock(agent, purpose, check, environment)
    try:
        yield
    finally:
        release_deploy_lock(agent, environment)


@contextmanager
def every_deploy_lock(agent: Agent, purpose: str, check: Callable[[], None] | None = None
                      ) -> Iterator[None]:
    """Hold every environment's deploy lock, taken in config order (nobody else
    holds two, so no two holders wait for each other): for what touches all
    environments at once (the repair of stray steps, the cleanup of models)."""
    with ExitStack() as locks:
        for environment in agent.config.environments:
            locks.enter_context(deploy_lock(agent, purpose, check, environment.name))
        yield


_P = ParamSpec("_P")
_R = TypeVar("_R")


def exclusive_switch(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """`func(agent, ..., environment, ...)` holding `switching` for that
    environment: agent/switch.py's changes of what serves, one at a time."""
    signature = inspect.signature(func)

    @wraps(func)
    def exclusive(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        bound = signature.bind(*args, **kwargs).arguments
        agent: Agent = bound["agent"]
        with switching(lock_name(agent.config, bound["environment"])):
            return func(*args, **kwargs)

    return exclusive
