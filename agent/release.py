"""Run one release: the gates in pipeline order, the policy, then the switch.

A release runs every gate `agent.pipeline` lists, without the deploy lock: a
rollback or promote may run meanwhile. A newer commit on the branch abandons
the release while it is in its gates (`agent.supersede`): it ends `superseded`.
Then, under the deploy lock (`agent.deploy_lock`), production is read afresh
(a rollback may have moved it, and paused auto-promotion) and the environment's
promotion policy decides: go live now, or wait as `staged`. Going live is
`agent.switch.go_live` (the switches in `order.plan`'s order, the smoke test,
an undo on failure); only then does the production pointer move, in the same
transaction that closes the release. Afterwards, old worktrees, models and
results are cleaned up.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from agent import faults, order, pipeline, placement, serving_state, switch
from agent.deploy_lock import every_deploy_lock, release_deploy_lock, take_deploy_lock
from agent.journal import (
    FAILED,
    INTERRUPTED,
    PROMOTED,
    RUNNING,
    SKIPPED,
    STAGED,
    SUPERSEDED,
    LockHeld,
    Release,
    ReleaseStatus,
    StepStatus,
)
from agent.journal.records import WAITING
from agent.prune import prune, server_releases
from agent.runner import ReleaseStopped, run_step
from agent.runtime import Agent
from agent.steps import Abandoned, StepContext
from agent.supersede import Guard, Superseded
from agent.targets.base import DeployError
from agent.targets.factory import rasa_argv


def run_release(agent: Agent, release: Release, guard: Guard | None = None) -> ReleaseStatus:
    """Run `release` to its end; `guard` (if any) abandons it for a newer commit
    while it is in its gates."""
    journal = agent.journal
    env = agent.environment.name
    journal.start_release(release.id)
    ctx = StepContext(
        config=agent.config.for_environment(env), journal=journal, mirror=agent.mirror,
        targets=agent.place(env),
        release_id=release.id, commit=release.commit, rasa_argv=rasa_argv(agent.config),
        log=agent.progress.line, production=journal.production_release(env), environment=env,
    )
    agent.progress.info(f"release {release.id}: {release.short} {release.message!r} "
                        f"by {release.author}")
    where = ""
    try:
        if guard is not None:
            guard.arm(release.commit)
        try:
            for step in pipeline.gates(agent.config):
                where = f"before {step.NAME}"
                if guard is not None:
                    guard.check()
                where = f"during {step.NAME}"
                # Gates compare with what serves now (a rollback may have moved it).
                ctx.production = journal.production_release(env)
                run_step(agent, ctx, step)
        finally:
            if guard is not None:
                guard.disarm()  # from here on, the release is finished, never abandoned
        status = _switch(agent, ctx, release)
        if status == PROMOTED and placement.goes_on(agent, env):
            # Out of the deploy lock: a soak must not hold up a rollback.
            for line in placement.onward(agent, release.id, env):
                agent.progress.info(line)
        return status
    except ReleaseStopped as stop:  # go_live has undone what it switched
        journal.finish_release(release.id, FAILED, f"{stop.step}: {stop.summary}")
        agent.progress.info(f"release {release.id} failed at {stop.step}; "
                            f"{env} is unchanged")
        return FAILED
    except Superseded as newer:
        journal.finish_release(release.id, SUPERSEDED, f"{newer} ({where})")
        agent.progress.info(f"release {release.id} superseded by {newer.newer[:8]} {where}")
        return SUPERSEDED
    except Abandoned:
        journal.finish_release(release.id, INTERRUPTED,
                               "the agent was stopped during the release")
        agent.progress.info(f"release {release.id} abandoned; it is retried at the next start")
        return INTERRUPTED
    finally:
        def skip_if_stopping() -> None:
            if agent.stop_requested:  # SIGTERM: stop now, the next start cleans up
                raise LockHeld("the agent is stopping")

        try:
            with every_deploy_lock(agent, "cleanup of old releases", check=skip_if_stopping):
                cleanup(agent)
        except (LockHeld, DeployError) as exc:
            # Stale, stopping, or a target that can't say what its servers run (an
            # engine gone): nothing is removed now, the next release cleans up. The
            # release's own outcome stands either way.
            agent.progress.info(f"cleanup skipped: {exc}")


def _switch(agent: Agent, ctx: StepContext, release: Release) -> ReleaseStatus:
    """After the gates: under the deploy lock, the policy, then the switch."""
    journal = agent.journal
    env = agent.environment.name
    def abandon_if_stopping() -> None:
        # SIGTERM while another process switches: this release switched nothing
        # yet, so it ends `interrupted` (retried at the next start) at once
        # instead of keeping `agent stop` waiting for up to switch_wait.
        if agent.stop_requested:
            raise Abandoned()

    try:
        take_deploy_lock(agent, f"switch of release {release.id}", check=abandon_if_stopping)
    except LockHeld as exc:  # stale, or a switch that never ends: nothing changed
        why = f"its gates passed, but the deploy lock was not free: {exc}"
        journal.finish_release(release.id, STAGED, f"{why}; `agent promote {release.id}`")
        agent.progress.info(f"release {release.id} staged: {why}")
        return STAGED
    try:
        # What serves now, not when the release started: a rollback may have
        # moved production (and paused auto-promotion) while the gates ran.
        production = journal.production_release(env)
        ctx.production = production
        current = journal.release(release.id)
        waiting = placement.promotion_decision(agent, current, agent.environment, production)
        if waiting is not None:
            journal.finish_release(release.id, STAGED, waiting)
            agent.progress.info(f"release {release.id} staged: {waiting}")
            return STAGED
        try:
            plan = serving_state.deploy_plan(agent, current, production, env)
        except order.NoSafeOrder as exc:
            journal.start_step(release.id, "order")
            journal.finish_step(release.id, "order", StepStatus.FAILED, str(exc), "")
            raise ReleaseStopped("order", str(exc)) from None
        journal.event("release.order", release.id, env, detail=" then ".join(plan.switches)
                      + f" ({plan.why})")
        kept = switch.go_live(agent, ctx, plan, production, env,
                              rolled_back_event="release.rolled_back")
        faults.kill_point("release.promoting")
        journal.finish_release(release.id, PROMOTED, kept, promote_environment=env)
        agent.progress.info(f"release {release.id} ({release.short}) is in {env}")
        return PROMOTED
    finally:  # only now may the supervisor restore: the journal says what serves
        release_deploy_lock(agent)


def cleanup(agent: Agent) -> None:
    """Keep the worktrees and models of recent, production and live releases only."""
    keep = int(agent.config["keep_releases"])
    journal = agent.journal
    recent = [r for r in journal.releases(limit=500) if r.status != SKIPPED]
    kept: set[int] = {r.id for r in recent[:keep]}
    kept |= {r.id for r in recent if r.status in {RUNNING, STAGED}}
    kept |= set([r.id for r in recent if r.status == PROMOTED][:keep])  # rollback targets
    for env in agent.config.environments:
        pointer = journal.production(env.name)
        if pointer is not None:
            kept.add(pointer.release_id)
    kept |= server_releases(agent)  # a live server's worktree: reactivate needs it
    # Releases waiting for a later environment: `agent promote N --env E` needs them.
    kept |= {e.release_id for e in journal.events(limit=500, kind=WAITING)
             if e.release_id is not None}
    kept_models = {journal.release(i).model_path for i in kept}
    for release in recent:
        if release.id in kept:
            continue
        if release.worktree and Path(release.worktree).exists():
            agent.mirror.remove_worktree(Path(release.worktree))
        if release.model_path and release.model_path not in kept_models:
            Path(release.model_path).unlink(missing_ok=True)
    results = agent.config.work_dir / "results"
    if results.is_dir():
        for folder in results.iterdir():
            number = folder.name.removeprefix("release-")
            if number.isdigit() and int(number) not in kept:
                shutil.rmtree(folder, ignore_errors=True)
    prune(agent)  # logs and journal events to their bounds (keep_logs, journal.keep_events)
