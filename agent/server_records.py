"""A release's recorded action server, per environment.

`releases.action_server` held one record (url, served actions, the target's
handle) when there was one place. With environments as places the same release
may run an action server in each, so the column holds `{"environments": {name:
record}}`. A flat record (a journal from before, or a single environment, which
still writes one) belongs to the environment of the single-environment layout
(agent/config.py `legacy_environment`).
"""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]


def server_record(recorded: Record | None, environment: str, legacy: str) -> Record | None:
    """The record of the action server `environment` ran for the release, if any."""
    if not recorded:
        return None
    by_environment = recorded.get("environments")
    if isinstance(by_environment, dict):
        found = by_environment.get(environment)
        return found if isinstance(found, dict) else None
    return recorded if environment == legacy else None


def with_server_record(recorded: Record | None, environment: str, legacy: str,
                       record: Record, *, several: bool) -> Record:
    """`recorded` with `environment`'s record set; flat while there is one environment."""
    if not several:
        return record
    by_environment: Record = {}
    if recorded:
        inner = recorded.get("environments")
        by_environment = dict(inner) if isinstance(inner, dict) else {legacy: recorded}
    by_environment[environment] = record
    return {"environments": by_environment}
