"""THE only code that changes what serves: the action server and the live model.

A release, `agent promote`, `agent rollback` and the tick's reconcile all come
here. Every change keeps the invariant `agent.order` defines (each custom
action the live model may call is served by the live action server):

- `serving_state.deploy_plan` asks `order.plan` which switch goes first;
- `go_live` applies the plan's switches through the step runner (journaled
  step rows, step logs, kill points), runs the smoke test, and on a failure
  undoes what it switched;
- `undo` puts production back in the REVERSE of the plan's order, so it passes
  through the very states the plan went through, each already known safe;
- `restore` makes what serves match what the journal says is in production
  (after a crash between two switches, or a crashed `agent promote`), in an
  order `order.plan` gives for the drifted state.

Restorations are journaled as events (`production.restored`,
`action_server.restored`, ...), not as steps: they belong to no release run.

`revive` restarts a server the supervisor (agent/supervise.py) found dead. A
switch and a revival never run at once: every switch and every holder of the
deploy lock in this process holds the environment's `switching` lock
(agent/deploy_lock.py), and the supervisor's thread only tries it and then
the deploy lock itself (another process's promote/rollback), skipping its
round when either is held.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from agent import order
from agent.deploy_lock import (
    exclusive_switch,
    release_deploy_lock,
    try_deploy_lock,
)
from agent.journal import Release, StepStatus
from agent.pipeline import SMOKE, SWITCHES
from agent.runner import ReleaseStopped, run_step
from agent.runtime import Agent
from agent.serving_state import (
    ACTION_SERVER_PART,
    action_server_running,
    deployment_for,
    release_of_model,
    same_action_code,
)
from agent.steps import StepContext
from agent.targets.base import DEAD, DeployError, Health, LogSink, ModelRef
from agent.targets.factory import Targets
from agent.targets.rasa_standby import FAILED as STANDBY_FAILED

# What each switch step notes in `ctx.notes` once it changed what serves.
SWITCHED = {order.ACTION_SERVER: "action_server_switched", order.MODEL: "model_switched"}

@exclusive_switch
def go_live(agent: Agent, ctx: StepContext, plan: order.Plan, production: Release | None,
            environment: str, *, rolled_back_event: str | None = None, actor: str = "") -> str:
    """Switch to ctx's release in the plan's order, then smoke-test it.

    Returns "" or, when the smoke test failed and `smoke.rollback` is off, the
    failure kept on record. Any other failure (a switch, or the smoke test with
    rollback on) undoes what was switched and raises ReleaseStopped: only a
    smoke-test failure may ever be kept.
    """
    try:
        for switch in plan.switches:
            run_step(agent, ctx, SWITCHES[switch])
        return _smoke(agent, ctx, environment, rolled_back_event, actor)
    except ReleaseStopped:
        undo(agent, ctx, plan, production, environment)
        raise


def _smoke(agent: Agent, ctx: StepContext, environment: str, rolled_back_event: str | None,
           actor: str) -> str:
    try:
        run_step(agent, ctx, SMOKE)
    except ReleaseStopped as stop:
        if agent.config["smoke.rollback"]:
            if rolled_back_event:
                agent.journal.event(rolled_back_event, ctx.release_id, environment,
                                    detail=stop.summary)
            raise
        agent.journal.event("smoke.failed_kept", ctx.release_id, environment, actor,
                            stop.summary)
        return f"smoke test failed (kept: smoke.rollback is off): {stop.summary}"
    return ""


@exclusive_switch
def undo(agent: Agent, ctx: StepContext, plan: order.Plan, production: Release | None,
         environment: str) -> None:
    """Put `production` back where the plan switched, last switch first.

    The first part that can't be put back stops the undo: every state on the
    way back is one the plan went through, so stopping there keeps the live
    model's actions served, where going on could not (the old action server
    behind a new model that is still live). The next tick's `restore` retries.
    """
    if production is None:
        return  # nothing served before this release; nothing to go back to
    for switch in reversed(plan.switches):
        switched = _switched(agent, ctx, switch, environment)
        if switched is False:
            continue
        back = switched is not None and (
            _undo_model(agent, production, environment) if switch == order.MODEL
            else _undo_server(agent, production, environment))
        if not back:
            why = "could not be put back" if switched else "could not be checked"
            agent.journal.event("production.undo_stopped", production.id, environment,
                                detail=f"the {switch} {why}; the rest of the undo waits "
                                       "for the next tick's repair")
            return


def _switched(agent: Agent, ctx: StepContext, switch: str, environment: str) -> bool | None:
    """Whether `switch` changed what serves; None when that can't be known now.

    A step notes its switch once it returns. An action-server rollout can break
    after its router switched (the SSH connection cut while the old container
    stops), so a failed one counts as switched when the live server is this
    release's. One that never ran (an earlier switch failed) is not asked about.
    """
    if ctx.notes.get(SWITCHED[switch]):
        return True
    if switch != order.ACTION_SERVER:
        return False
    name = SWITCHES[switch].NAME
    if not any(s.name == name and s.status == StepStatus.FAILED
               for s in agent.journal.steps(ctx.release_id)):
        return False
    try:
        live = agent.place(environment).action_server.live()
    except Exception:  # DeployError, or a transport error with_engine passed on
        return None
    return live is not None and live.release_id == str(ctx.release_id)


def _undo_model(agent: Agent, production: Release, environment: str) -> bool:
    """Whether production's model is live again (or never stopped being)."""
    if not production.model_path or not production.model_id:
        return True  # production had no model of ours: nothing to put back
    model = agent.place(environment).model
    try:
        ref = _upload(agent, production, environment)
    except DeployError as exc:
        return _restore_failed(agent, production, environment, exc)
    try:
        # The model AND the bot config it serves with: a release that changed
        # only endpoints.yml/credentials.yml runs the same model_id on a new server.
        if model.serves(ref):
            return True  # the switch failed before the new release went live
    except DeployError:
        # The server is down: no model serves now, and a managed server starts
        # again on the production link (moved only after a confirmed load).
        return True
    try:
        live: str | None = model.live_model_id()  # for the journal only
    except DeployError:
        live = "unknown (the server does not answer)"
    try:
        model.activate(ref, agent.progress.info)
    except DeployError as exc:
        return _restore_failed(agent, production, environment, exc)
    agent.journal.event("production.restored", production.id, environment,
                        detail=f"live model was {live}")
    agent.progress.info(f"restored release {production.id}'s model as the live one")
    return True


def _restore_failed(agent: Agent, production: Release, environment: str,
                    exc: DeployError) -> bool:
    agent.journal.event("production.restore_failed", production.id, environment,
                        detail=str(exc))
    agent.progress.info(f"could not restore production model: {exc}")
    return False


def _undo_server(agent: Agent, production: Release, environment: str) -> bool:
    """Whether production's action server serves again, or its model needs none."""
    deployment = deployment_for(agent, production, environment)
    if deployment is None:
        return not production.required_actions
    try:
        agent.place(environment).action_server.reactivate(deployment, agent.progress.info)
    except DeployError as exc:
        agent.journal.event("action_server.restore_failed", production.id, detail=str(exc))
        return False
    agent.journal.event("action_server.restored", production.id)
    return True


def _upload(agent: Agent, release: Release, environment: str) -> ModelRef:
    assert release.model_path is not None
    bot_dir = Path(release.worktree) if release.worktree else None
    return agent.place(environment).model.upload(str(release.id), Path(release.model_path),
                                      agent.progress.info, bot_dir)


def _load_model(agent: Agent, release: Release, environment: str) -> None:
    agent.place(environment).model.activate(_upload(agent, release, environment),
                                            agent.progress.info)


def _model_drifted(agent: Agent, current: Release, live_model: str | None,
                   environment: str) -> bool:
    """Whether what serves is not `current`'s model with its bot config."""
    if not current.model_path or not current.model_id:
        return False
    if live_model != current.model_id:
        return True
    try:
        return not agent.place(environment).model.serves(_upload(agent, current, environment))
    except DeployError as exc:
        # The live model_id is production's; only its config can't be checked now.
        agent.progress.info(f"could not check which bot config serves: {exc}")
        return False


# ---------------------------------------------------------------- restore


@exclusive_switch
def restore(agent: Agent, environment: str) -> list[str]:
    """Put production's model and action server back where they drifted; what was done.

    A state that no order can repair safely is left alone and journaled
    (`production.restore_refused`), never made worse. An action server whose
    process runs but that does not list its actions in time is busy, not gone:
    nothing is replaced then (a second server would stop it mid-request); the
    next restore looks again.
    """
    journal, progress = agent.journal, agent.progress
    current = journal.production_release(environment)
    if current is None:
        return []
    place = agent.place(environment)
    model_target, server_target = place.model, place.action_server
    try:
        live_model = model_target.live_model_id()
    except DeployError:
        live_model = _restart_server(agent, current, place)
    has_actions = current.action_code_fingerprint is not None or bool(current.required_actions)
    try:
        live_server = server_target.live()
    except Exception as exc:  # DeployError, or a transport error
        if has_actions:  # what serves the actions can't be known: the next tick asks again
            journal.event("production.restore_failed", current.id, environment,
                          detail=str(exc))
            progress.info(f"could not read which action server serves: {exc}")
            return []
        live_server = None  # production needs no action server: the model may still drift
    if live_server is None and has_actions and action_server_running(place):
        progress.info("the action server runs but did not list its actions in time: "
                      "busy, left alone; the next tick's restore checks again")
        return []
    model_drift = _model_drifted(agent, current, live_model, environment)
    deployment = None
    if has_actions and (live_server is None
                        or not same_action_code(agent, current, live_server.release_id)):
        deployment = deployment_for(agent, current, environment)
    if not model_drift and deployment is None:
        return []
    live_model_release = release_of_model(agent, live_model)
    live = order.LiveState(
        frozenset(live_model_release.required_actions) if live_model_release else frozenset(),
        live_server.served_actions if live_server else frozenset(),
    )
    try:
        plan = order.plan(live, frozenset(current.required_actions) if model_drift else None,
                          deployment.served_actions if deployment else None)
    except order.NoSafeOrder as exc:
        journal.event("production.restore_refused", current.id, environment, detail=str(exc))
        progress.info(f"production drifted from the journal and can't be restored safely: {exc}")
        return []
    done: list[str] = []
    for switch in plan.switches:
        try:
            if switch == order.MODEL:
                _load_model(agent, current, environment)
                done.append(f"model (was {live_model})")
            elif deployment is not None:
                server_target.reactivate(deployment, progress.info)
                was = live_server.release_id if live_server else "none"
                done.append(f"action server (was release {was})")
        except DeployError as exc:
            journal.event("production.restore_failed", current.id, environment,
                          detail=str(exc))
            progress.info(f"could not restore production's {switch}: {exc}")
            return done
    journal.event("production.restored", current.id, environment, detail="; ".join(done))
    progress.info(f"restored release {current.id}'s " + " and ".join(done))
    return done


def revive(agent: Agent, environment: str,
           dead_now: Callable[[], tuple[list[Health], list[Health]]]) -> list[str] | None:
    """Start again what `dead_now()` (asked under the lock: (model parts, action
    parts)) finds dead, as the journal's production has it; what was done. None,
    doing nothing, while a switch runs in this process or another holds the
    deploy lock (the supervisor asks again next round). The restart holds the
    deploy lock: a promote/rollback started meanwhile waits for it."""
    if not try_deploy_lock(agent, "supervisor: restart of a dead server", environment):
        return None  # a switch, or `agent promote`/`rollback`: it repairs, or we do after
    try:
        model_dead, action_dead = dead_now()
        if not model_dead and not action_dead:
            return []
        return _revive(agent, environment, model_dead, action_dead)
    finally:
        release_deploy_lock(agent, environment)


def _revive(agent: Agent, environment: str, model_dead: list[Health],
            action_dead: list[Health]) -> list[str]:
    journal, log = agent.journal, agent.progress.info
    place = agent.place(environment)
    current = journal.production_release(environment)
    release_id = current.id if current else None
    died = "; ".join(f"{h.part} ({h.detail})" for h in (*action_dead, *model_dead))
    journal.event("server.dead", release_id, environment, detail=died)
    log(f"supervisor: dead: {died}")
    done: list[str] = []
    try:
        # Actions first: a restarted Rasa server's warm-up may call them.
        if action_dead:
            done += place.action_server.revive(log)  # its forwarder
        # Only a DEAD server is replaced: live() is also None when a busy one
        # answers GET /actions late, and that one must keep its requests.
        server_dead = any(h.part == ACTION_SERVER_PART for h in action_dead)
        deployment = (deployment_for(agent, current, environment) if current and server_dead
                      else None)
        if deployment is not None:
            place.action_server.reactivate(deployment, log)
            done.append(f"action server of release {deployment.release_id}")
        if model_dead and place.model.ensure_server(log):
            now = [f"{h.part} {h.detail}" for h in place.model.health() if h.state != DEAD]
            done.append(f"Rasa server / front proxy (the last switched-to model; now: "
                        f"{', '.join(now) or 'none'})")  # which slot serves: a standby took over?
        done += restore(agent, environment)  # what serves = what the journal says
    except DeployError as exc:
        journal.event("server.revive_failed", release_id, environment,
                      detail=f"dead: {died}; {exc}")
        log(f"supervisor: could not restart: {exc}")
        return done
    journal.event("server.restarted", release_id, environment,
                  detail=f"dead: {died}; started: {'; '.join(done) or 'nothing'}")
    log(f"supervisor: restarted {'; '.join(done) or 'nothing'}")
    return done


def _restart_server(agent: Agent, current: Release, place: Targets) -> str | None:
    """A managed Rasa server that died is started again, on the production link."""
    model = place.model
    try:
        if not model.ensure_server(agent.progress.info):
            return current.model_id  # not ours to start; nothing to compare with
        live = model.live_model_id()
    except DeployError as exc:
        agent.journal.event("production.restore_failed", current.id, detail=str(exc))
        agent.progress.info(f"the Rasa server does not answer and could not be started: {exc}")
        return current.model_id
    agent.journal.event("rasa_server.restarted", current.id, detail=f"model {live}")
    return live


@runtime_checkable
class KeepsStandby(Protocol):
    """A model target with a warm standby (BlueGreenRasaTarget)."""

    standby: bool

    def keep_standby(self, log: LogSink) -> tuple[str, str]: ...


def keep_standby(agent: Agent, environment: str) -> tuple[str, str] | None:
    """One step toward an armed warm standby (agent/targets/rasa_standby.py): what
    was done and its detail. Arming a standby decides what serves when the live
    server dies, so it is done here, under the deploy lock, like a revive. None,
    doing nothing, when the target keeps no standby or a switch holds the lock."""
    model = agent.place(environment).model
    if not isinstance(model, KeepsStandby) or not model.standby:
        return None
    if not try_deploy_lock(agent, "supervisor: warm standby", environment):
        return None
    try:
        return model.keep_standby(agent.progress.info)
    except DeployError as exc:
        return STANDBY_FAILED, str(exc)
    except Exception as exc:  # e.g. an odd /status answer: a failed step, backed off
        return STANDBY_FAILED, f"{type(exc).__name__}: {exc}"
    finally:
        release_deploy_lock(agent, environment)
