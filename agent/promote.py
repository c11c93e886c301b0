"""`agent promote` and `agent rollback`: move production to a kept release.

This module decides what may be promoted (a staged or earlier promoted release
with a kept model; rollback only to a release that was in production) and what
the command records (who, why, a pause). It decides under the deploy lock,
which a release holds only for its switch (`agent.deploy_lock`): a command
waits at most for a switch in progress, never for a training, and then sees
the production that switch left. Changing what serves is the switch's
(`agent.switch`): it takes the order from `order.plan`
exactly as a release does, runs the switch steps and the smoke test through the
step runner, and undoes on failure; only then does the production pointer move.
A failed switch always leaves the pointer where it was; only a failed smoke
test with `smoke.rollback: false` is kept. Rollback also pauses auto-promotion
for the environment until `agent resume`.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent import faults, order, serving_state, switch
from agent.deploy_lock import deploy_lock
from agent.journal import PROMOTED, STAGED, Release
from agent.runner import ReleaseStopped
from agent.runtime import Agent
from agent.steps import StepContext
from agent.targets.factory import rasa_argv
from hooks.core.errors import FatalError


def actor() -> str:
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or "unknown"


def _usable(agent: Agent, release: Release) -> Path:
    if not release.model_path or not Path(release.model_path).is_file():
        raise FatalError(f"release {release.id} has no kept model (cleaned up or never "
                         "trained); push its commit again to rebuild it")
    worktree = Path(release.worktree or agent.config.work_dir / "releases"
                    / f"release-{release.id}")
    if not worktree.is_dir():
        agent.mirror.ensure()
        agent.mirror.add_worktree(release.commit, worktree)
        agent.journal.update_release(release.id, worktree=str(worktree))
    return worktree


def _step_prefix(agent: Agent, release: Release, kind: str) -> str:
    """`promote.`, `rollback.`, then `rollback-2.` …: a fresh name for each run."""
    verb = "rollback" if kind == "production.rolled_back" else "promote"
    taken = {step.name.split(".", 1)[0] for step in agent.journal.steps(release.id)}
    prefix, number = verb, 1
    while prefix in taken:
        number += 1
        prefix = f"{verb}-{number}"
    return prefix + "."


def switch_production(agent: Agent, release: Release, environment: str, *, kind: str,
                      reason: str, pause: bool = False) -> order.Plan:
    """Make `release` live in `environment`; raise FatalError (state unchanged) if not.
    The caller holds the deploy lock."""
    journal = agent.journal
    production = journal.production_release(environment)
    worktree = _usable(agent, release)
    try:
        plan = serving_state.deploy_plan(agent, release, production, environment)
    except order.NoSafeOrder as exc:
        journal.event(f"{kind}.refused", release.id, environment, actor(), str(exc))
        raise FatalError(f"refused: {exc}") from None
    ctx = StepContext(
        config=agent.config.for_environment(environment), journal=journal,
        mirror=agent.mirror, targets=agent.place(environment),
        release_id=release.id, commit=release.commit, rasa_argv=rasa_argv(agent.config),
        log=agent.progress.info, worktree=worktree, production=production,
        step_prefix=_step_prefix(agent, release, kind), environment=environment,
    )
    try:
        switch.go_live(agent, ctx, plan, production, environment, actor=actor())
    except ReleaseStopped as stop:  # undone: production serves as before
        journal.event(f"{kind}.failed", release.id, environment, actor(), stop.summary)
        raise FatalError(f"{kind} of release {release.id} failed, production is "
                         f"unchanged: {stop.step}: {stop.summary}") from None
    faults.kill_point("promote.switched")
    journal.set_production(environment, release.id, kind=kind, actor=actor(),
                           reason=reason, pause=pause)
    return plan


def promote(agent: Agent, release_id: int, environment: str, reason: str = "") -> order.Plan:
    release = agent.journal.release(release_id)
    agent.config.environment(environment)  # an unknown environment is a clean error
    with deploy_lock(agent, f"promote of release {release.id}", environment=environment):
        release = agent.journal.release(release_id)  # as the switch we waited for left it
        if release.status not in {STAGED, PROMOTED}:
            raise FatalError(f"release {release.id} is {release.status}; only a staged or an "
                             "earlier promoted release can be promoted (its gates passed)")
        current = agent.journal.production(environment)
        if current is not None and current.release_id == release.id:
            raise FatalError(f"release {release.id} is already in {environment}")
        return switch_production(agent, release, environment, kind="production.promoted",
                                 reason=reason or "agent promote")


def rollback(agent: Agent, environment: str, to: int | None, reason: str) -> Release:
    agent.config.environment(environment)
    if to is not None:
        agent.journal.release(to)  # an unknown release is a clean error, without waiting
    # The target is chosen under the lock: production is what a switch we waited
    # for left, not what it was when the command started.
    with deploy_lock(agent, "rollback", environment=environment):
        current = agent.journal.production(environment)
        if current is None:
            raise FatalError(f"nothing is in {environment} yet; there is nothing to roll back")
        if to is None:
            target = agent.journal.previous_production(environment, before=current.release_id)
            if target is None:
                raise FatalError(f"no earlier promoted release of {environment} has a kept "
                                 "model; name one with --to")
        else:
            target = agent.journal.release(to)
            if target.status != PROMOTED or not agent.journal.was_live_in(target.id,
                                                                          environment):
                raise FatalError(f"release {target.id} was never live in {environment}; "
                                 f"rollback goes only to a release that was")
        if target.id == current.release_id:
            raise FatalError(f"release {target.id} is already in {environment}")
        why = reason or "no reason given"
        switch_production(agent, target, environment, kind="production.rolled_back",
                          reason=f"rollback from release {current.release_id}: {why}",
                          pause=True)
    return target
