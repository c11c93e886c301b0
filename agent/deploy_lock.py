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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from agent.config import AgentConfig
from agent.runtime import DEPLOY_LOCK, Agent

MARGIN = 60.0  # journal writes, the smoke test's own turns, process start-up


def switch_wait(config: AgentConfig) -> float:
    """The longest a switch can hold the lock: start an action server, load (and
    drain) a model, then undo both after a failed smoke test."""
    one_way = (float(config["action_server.start_timeout"]) + float(config["model.load_timeout"])
               + float(config["model.drain_timeout"]))
    return 2 * one_way + MARGIN


def take_deploy_lock(agent: Agent, purpose: str) -> None:
    """Take DEPLOY_LOCK, waiting for a switch in progress; LockHeld if stale or too long."""
    agent.journal.wait_for_lock(DEPLOY_LOCK, purpose, timeout=switch_wait(agent.config),
                                say=agent.progress.info)


@contextmanager
def deploy_lock(agent: Agent, purpose: str) -> Iterator[None]:
    """Hold DEPLOY_LOCK for the block, waiting for a switch in progress to finish."""
    take_deploy_lock(agent, purpose)
    try:
        yield
    finally:
        agent.journal.release_lock(DEPLOY_LOCK)
