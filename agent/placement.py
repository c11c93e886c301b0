"""A release's way through the environments, after the gates put it in the first.

Each environment names the one a release must pass first (`after`,
agent/environments.py). A release live in an environment is verified there:
the switch already ran the smoke conversations; `verify.soak_seconds` then
watches the place's servers (a death fails the verification) and its replies
(the smoke conversations again every 30 s: a wrong reply fails it too). A verified
release is journaled `release.verified` (release, environment); only then is
it a candidate for the environments after that one, each by its own policy:

- auto: promoted there at once (promote.switch_production, under that
  environment's own deploy lock), then verified there in turn;
- auto_unless_action_code: the same, unless the release's action code differs
  from what that environment serves;
- manual: `release.waiting` with the command that promotes it.

With `verify.nlu_gate`, an environment after the first also takes a release only
when its NLU model holds up against what serves there (`nlu_refusal`: the same
comparison and thresholds as the `nlu_gate` step, which is the first
environment's). A failure in a later environment is undone by the switch and
journaled there; the environments before keep the release. `agent promote N
--env E` (`promote_through`) refuses a release not verified in E's `after`, or
refused by E's NLU gate, unless forced with a reason (`production.forced`).
A crash between two environments is resumed by the tick (`carry_on`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from agent import order
from agent.deploy_lock import deploy_lock
from agent.environments import Environment
from agent.journal import Journal, LockHeld, Release
from agent.journal.records import VERIFIED, WAITING
from agent.promote import actor, promote, switch_production
from agent.runtime import Agent
from agent.steps import StepFailed, nlu_gate, smoke
from agent.targets.base import DEAD
from hooks.core.errors import FatalError

SOAK_EVERY = 1.0  # seconds between two looks at the servers during a soak
SOAK_TALK_EVERY = 30.0  # seconds between two rounds of smoke conversations in a soak


def verified_in(journal: Journal, release_id: int, environment: str) -> bool:
    return journal.was_verified_in(release_id, environment)


def next_environments(agent: Agent, environment: str) -> list[Environment]:
    return [env for env in agent.config.environments if env.after == environment]


def goes_on(agent: Agent, environment: str) -> bool:
    """Whether a release live in `environment` has more to do: a soak there, or
    environments after it. A single environment without a soak: nothing (and no
    `release.verified` event, as before environments were places)."""
    soak = agent.config.environment(environment).verify.soak_seconds
    return soak > 0 or bool(next_environments(agent, environment))


def verify(agent: Agent, release: Release, environment: str,
           sleep: Callable[[float], None] = time.sleep) -> str | None:
    """Soak `release` in `environment`: None when it held, else why not."""
    env = agent.config.environment(environment)
    journal, place = agent.journal, agent.place(environment)
    if any(e.kind == "smoke.failed_kept" and e.environment == environment
           for e in journal.events(limit=1000, release_id=release.id)):
        return "its smoke test failed there (kept: smoke.rollback is off)"
    deadline = time.monotonic() + env.verify.soak_seconds
    # The replies too, not only the servers' health: the smoke conversations
    # (unless `verify.smoke` is off) every SOAK_TALK_EVERY seconds of the soak.
    conversations = agent.config.for_environment(environment)["smoke.conversations"]
    next_talk = time.monotonic() + SOAK_TALK_EVERY
    while True:
        pointer = journal.production(environment)
        if pointer is None or pointer.release_id != release.id:
            return "it is no longer live there (rolled back or replaced during the soak)"
        if time.monotonic() >= deadline:
            break
        if agent.stop_requested:
            return "the agent was stopped during the soak"
        dead = [h for h in (*place.model.health(), *place.action_server.health())
                if h.state == DEAD]
        if dead:
            return "; ".join(f"{h.part} died ({h.detail})" for h in dead)
        if conversations and time.monotonic() >= next_talk:
            try:
                smoke.converse(conversations, place.model.talk, f"soak-{release.id}",
                               agent.progress.line)
            except StepFailed as exc:
                return f"a reply during the soak: {exc.summary}"
            next_talk = time.monotonic() + SOAK_TALK_EVERY
        sleep(min(SOAK_EVERY, max(0.0, deadline - time.monotonic())))
    journal.event(VERIFIED, release.id, environment,
                  detail=f"soaked {env.verify.soak_seconds:g} s" if env.verify.soak_seconds
                  else "smoke conversations passed")
    return None


def onward(agent: Agent, release_id: int, environment: str) -> list[str]:
    """After `release_id` went live in `environment`: verify it there, then carry
    it into the environments after, as their policies say; what happened, one
    line each. Never raises for a later environment's trouble: it is journaled."""
    try:
        return _onward(agent, release_id, environment)
    except Exception as exc:  # the release is live where it is; the rest is news
        agent.journal.event("release.verify_failed", release_id, environment,
                            detail=f"{type(exc).__name__}: {exc}")
        return [f"release {release_id}: {type(exc).__name__}: {exc}"]


def _onward(agent: Agent, release_id: int, environment: str) -> list[str]:
    journal, done = agent.journal, []
    release = journal.release(release_id)
    if not journal.was_verified_in(release.id, environment):
        failed = verify(agent, release, environment)
        if failed is not None:
            journal.event("release.verify_failed", release.id, environment, detail=failed)
            return [f"release {release.id} not verified in {environment}: {failed}"]
        done.append(f"release {release.id} verified in {environment}")
    for env in next_environments(agent, environment):
        if _handled(journal, release.id, env.name):
            continue  # resumed after a crash: that environment had its turn
        waiting = promotion_decision(agent, release, env,
                                     journal.production_release(env.name))
        if waiting is not None:
            journal.event(WAITING, release.id, env.name, detail=waiting)
            done.append(f"release {release.id} waits for {env.name}: {waiting}")
            continue
        refused = nlu_refusal(agent, release, env)
        if refused is not None:
            journal.event("release.promote_failed", release.id, env.name, detail=refused)
            done.append(f"release {release.id} not promoted to {env.name}: {refused}")
            continue
        try:
            with deploy_lock(agent, f"promotion of release {release.id}",
                             environment=env.name):
                switch_production(agent, release, env.name, kind="production.promoted",
                                  reason=f"verified in {environment}")
        except (FatalError, LockHeld) as exc:
            journal.event("release.promote_failed", release.id, env.name, detail=str(exc))
            done.append(f"release {release.id} not promoted to {env.name}: {exc}")
            continue
        done.append(f"release {release.id} is in {env.name}")
        done += _onward(agent, release.id, env.name)
    return done


def _handled(journal: Journal, release_id: int, environment: str) -> bool:
    """Whether `release_id` already went to `environment`, waits for it, or failed there."""
    return journal.was_live_in(release_id, environment) or any(
        e.environment == environment for kind in (WAITING, "release.promote_failed")
        for e in journal.events(limit=50, release_id=release_id, kind=kind))


def nlu_refusal(agent: Agent, release: Release, env: Environment) -> str | None:
    """With `verify.nlu_gate`, why `release` may not go to `env`: its NLU model
    loses against what serves there beyond the `nlu_gate` thresholds, or the
    comparison failed; None when it may. Run before the deploy lock: it trains."""
    live = agent.journal.production_release(env.name)
    if not env.verify.nlu_gate or live is None or live.id == release.id:
        return None
    if not release.worktree or not Path(release.worktree).is_dir():
        return f"its files are gone (cleaned up), so the NLU gate of {env.name} can't run"
    try:
        failures = nlu_gate.regressions(agent.config, agent.mirror.path, live,
                                        Path(release.worktree), release.commit, env.name,
                                        agent.progress.line)
    except FatalError as exc:
        return f"the NLU comparison with {env.name}'s release {live.id} failed: {exc}"
    if not failures:
        return None
    return f"NLU gate against {env.name}'s release {live.id}: {nlu_gate.summary(failures)}"


def carry_on(agent: Agent) -> list[str]:
    """The tick's resumption of `onward` after a crash (or a stop) cut it short: each
    environment's live release that has more to do there, not yet verified and not
    failed, is verified and carried on; a verified one goes on to the environments
    it has not reached. An environment paused by a rollback is left alone. What
    happened, one line each."""
    journal, done = agent.journal, []
    for env in agent.config.environments:
        pointer = journal.production(env.name)
        if pointer is None or pointer.paused or not goes_on(agent, env.name):
            continue  # paused: a rollback put this release there, not a release
        release_id = pointer.release_id
        if any(e.environment == env.name for e in journal.events(
                limit=50, release_id=release_id, kind="release.verify_failed")):
            continue
        pending = not journal.was_verified_in(release_id, env.name) or any(
            not _handled(journal, release_id, later.name)
            for later in next_environments(agent, env.name))
        if pending:
            done += onward(agent, release_id, env.name)
    return done


def promotion_decision(agent: Agent, release: Release, env: Environment,
                       production: Release | None) -> str | None:
    """Why `release` waits for `env` instead of going live there now, with the
    command that promotes it; None: it goes. One policy for the release that
    passed its gates (the first environment) and for the ones after."""
    flag = "" if env.name == agent.environment.name else f" --env {env.name}"
    command = f"`agent promote {release.id}{flag}`"
    pointer = agent.journal.production(env.name)
    if pointer is not None and pointer.paused:
        return (f"auto-promotion of {env.name} is paused ({pointer.paused_reason}); "
                f"`agent resume{flag}` or {command}")
    if env.promote == "manual":
        return f"{env.name} is promoted manually; {command}"
    if env.promote == "auto_unless_action_code" and production is not None and (
            production.action_code_fingerprint != release.action_code_fingerprint):
        return (f"the release changes action code and {env.name} auto-promotes only "
                f"without such changes; {command}")
    return None


def promote_through(agent: Agent, release_id: int, environment: str, reason: str = "", *,
                    force: bool = False) -> tuple[order.Plan, list[str]]:
    """`agent promote`: into `environment` only once verified in the one before it
    (or `force` with a reason, journaled); then verified there and carried on."""
    env = agent.config.environment(environment)  # an unknown environment: a clean error
    if force and not reason:
        raise FatalError("--force needs --reason: why is recorded in the journal")
    skipped = env.after is not None and not verified_in(agent.journal, release_id, env.after)
    if skipped and not force:
        raise FatalError(f"release {release_id} has not passed {env.after}, which comes "
                         f"before {environment}; promote it there first, or pass "
                         "--force --reason WHY")
    refused = None if skipped else nlu_refusal(agent, agent.journal.release(release_id), env)
    if refused is not None and not force:
        raise FatalError(f"release {release_id} may not go to {environment}: {refused}; "
                         "pass --force --reason WHY to promote it anyway")
    plan = promote(agent, release_id, environment, reason)
    forced = f"not verified in {env.after}" if skipped else refused
    if forced is not None:  # journaled once it happened: a refused promote forced nothing
        agent.journal.event("production.forced", release_id, environment, actor(),
                            f"{forced}: {reason}")
    return plan, onward(agent, release_id, environment)
