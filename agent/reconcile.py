"""Make what serves match what the journal says is in production.

A crash can stop the agent between two switches (new action server, old model),
after a switch but before the production pointer moved, or in the middle of
`agent promote`. The journal is the truth, so at the start of every tick, under
the deploy lock, the live model and the live action server are put back to the
production release's, in the order `agent.order` gives (so that the live
model's actions stay served at every moment). A state that no order can repair
safely is left alone and journaled, never made worse.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent import order
from agent.journal import Release
from agent.targets.base import ActionServerDeployment, DeployError
from hooks.core.errors import FatalError

if TYPE_CHECKING:
    from agent.tick import Agent


def _release_of_model(agent: Agent, model_id: str | None) -> Release | None:
    if model_id is None:
        return None
    for release in agent.journal.releases(limit=500):
        if release.model_id == model_id:
            return release
    return None


def _deployment_for(agent: Agent, production: Release) -> ActionServerDeployment | None:
    """The newest recorded action server with production's action code."""
    for release in agent.journal.releases(limit=500):
        if release.id > production.id or not release.action_server:
            continue
        if release.action_code_fingerprint != production.action_code_fingerprint:
            continue
        server = release.action_server
        return ActionServerDeployment(
            str(release.id), str(server.get("url", "")),
            frozenset(server.get("served_actions", [])), dict(server.get("handle", {})),
        )
    return None


def _server_matches(agent: Agent, production: Release, live_id: str) -> bool:
    try:
        live_release = agent.journal.release(int(live_id))
    except (ValueError, FatalError):
        return False
    return live_release.action_code_fingerprint == production.action_code_fingerprint


def _restart_server(agent: Agent, current: Release) -> str | None:
    """A managed Rasa server that died is started again, on the production link."""
    ensure = getattr(agent.targets.model, "ensure_server", None)
    if not callable(ensure) or not getattr(agent.targets.model, "manage_server", False):
        return current.model_id  # not ours to start; nothing to compare with
    try:
        ensure(agent.progress.info)
        live = agent.targets.model.live_model_id()
    except DeployError as exc:
        agent.journal.event("production.restore_failed", current.id, detail=str(exc))
        agent.progress.info(f"the Rasa server does not answer and could not be started: {exc}")
        return current.model_id
    agent.journal.event("rasa_server.restarted", current.id, detail=f"model {live}")
    return live


def production(agent: Agent, environment: str) -> list[str]:
    """Put production's model and action server back where they drifted; what was done."""
    journal, progress = agent.journal, agent.progress
    current = journal.production_release(environment)
    if current is None:
        return []
    model_target, server_target = agent.targets.model, agent.targets.action_server
    try:
        live_model = model_target.live_model_id()
    except DeployError:
        live_model = _restart_server(agent, current)
    live_server = server_target.live()
    model_drift = bool(current.model_path and current.model_id and live_model != current.model_id)
    server_drift = False
    deployment = None
    has_actions = current.action_code_fingerprint is not None or bool(current.required_actions)
    if has_actions and (live_server is None
                        or not _server_matches(agent, current, live_server.release_id)):
        deployment = _deployment_for(agent, current)
        server_drift = deployment is not None
    if not model_drift and not server_drift:
        return []
    live_model_release = _release_of_model(agent, live_model)
    live = order.LiveState(
        frozenset(live_model_release.required_actions) if live_model_release else frozenset(),
        live_server.served_actions if live_server else frozenset(),
    )
    try:
        plan = order.plan(
            live,
            frozenset(current.required_actions) if model_drift else None,
            deployment.served_actions if server_drift and deployment else None,
        )
    except order.NoSafeOrder as exc:
        journal.event("production.restore_refused", current.id, environment, detail=str(exc))
        progress.info(f"production drifted from the journal and can't be restored safely: {exc}")
        return []
    done: list[str] = []
    for switch in plan.switches:
        try:
            if switch == order.MODEL:
                assert current.model_path is not None
                ref = model_target.upload(str(current.id), Path(current.model_path),
                                          progress.info)
                model_target.activate(ref, progress.info)
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
