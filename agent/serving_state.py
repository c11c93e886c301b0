"""What serves now, read from the journal and the targets' health; changes nothing.

The lookups agent/switch.py's restore and revive decide with, kept apart from
the one module that changes what serves: which recorded action server runs a
release's action code, which release a live model id belongs to, and whether
the action server's process is up.
"""

from __future__ import annotations

from agent import order
from agent.config import legacy_environment
from agent.journal import Release
from agent.runtime import Agent
from agent.server_records import server_record
from agent.targets.base import DEAD, ActionServerDeployment
from agent.targets.factory import Targets
from hooks.core.errors import FatalError

# The part name (Health.part) of the action server itself, not its forwarder.
ACTION_SERVER_PART = "action server"


def action_server_running(targets: Targets) -> bool:
    """Whether the action server's process is up (alive or slow), by its health."""
    return any(h.part == ACTION_SERVER_PART and h.state != DEAD
               for h in targets.action_server.health())


def same_action_code(agent: Agent, release: Release, live_release_id: str) -> bool:
    """Whether the live action server runs `release`'s action code."""
    try:
        live_release = agent.journal.release(int(live_release_id))
    except (ValueError, FatalError):
        return False
    return live_release.action_code_fingerprint == release.action_code_fingerprint


def release_of_model(agent: Agent, model_id: str | None) -> Release | None:
    if model_id is None:
        return None
    for release in agent.journal.releases(limit=500):
        if release.model_id == model_id:
            return release
    return None


def deployment_for(agent: Agent, production: Release,
                   environment: str) -> ActionServerDeployment | None:
    """The newest action server recorded in `environment` with production's action code."""
    legacy = legacy_environment(agent.config)
    for release in agent.journal.releases(limit=500):
        server = server_record(release.action_server, environment, legacy)
        if release.id > production.id or server is None:
            continue
        if release.action_code_fingerprint != production.action_code_fingerprint:
            continue
        return ActionServerDeployment(
            str(release.id), str(server.get("url", "")),
            frozenset(server.get("served_actions", [])), dict(server.get("handle", {})),
        )
    return None


def deploy_plan(agent: Agent, release: Release, production: Release | None,
                environment: str) -> order.Plan:
    """The order to make `release` serve in `environment`, where `production` serves now."""
    live_server = agent.place(environment).action_server.live()
    served = live_server.served_actions if live_server else frozenset()
    new_served: frozenset[str] | None = frozenset(release.required_actions)
    if live_server is not None and same_action_code(agent, release, live_server.release_id):
        new_served = None  # deploy_actions keeps the live server: nothing switches
    model_actions = frozenset(production.required_actions) if production else frozenset()
    return order.plan(order.LiveState(model_actions, served),
                      frozenset(release.required_actions), new_served)
