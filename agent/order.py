"""Which switch comes first, so that the live model's actions stay served.

The invariant: at every moment, the custom actions the live model may call are a
subset of what the live action server lists on `/actions`. A release switches
two things (the action server and the model); this module works out the order
that keeps the invariant true before, between and after the two switches, or
says why no order does. It is pure: sets in, a plan out. The tick and
`agent promote`/`rollback` all take their order from here, nowhere else.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

ACTION_SERVER = "action_server"
MODEL = "model"


@dataclass(frozen=True)
class LiveState:
    model_actions: frozenset[str]  # custom actions the live model calls
    served_actions: frozenset[str]  # what the live action server lists


@dataclass(frozen=True)
class Plan:
    switches: tuple[str, ...]  # ACTION_SERVER and/or MODEL, in the order to apply
    why: str


class NoSafeOrder(Exception):
    """No order of switches keeps every model action served."""


def _missing(needed: Set[str], served: Set[str]) -> list[str]:
    return sorted(set(needed) - set(served))


def plan(
    live: LiveState,
    new_model_actions: frozenset[str] | None,
    new_served_actions: frozenset[str] | None,
) -> Plan:
    """The order to switch to the new model and/or action server.

    `None` means "that part does not change". Raises NoSafeOrder naming the
    actions that would be missing.
    """
    model_after = live.model_actions if new_model_actions is None else new_model_actions
    served_after = live.served_actions if new_served_actions is None else new_served_actions
    end_missing = _missing(model_after, served_after)
    if end_missing:
        raise NoSafeOrder(
            "the new model calls actions the action server would not serve: "
            + ", ".join(end_missing)
        )
    changes = [
        part for part, new in ((ACTION_SERVER, new_served_actions), (MODEL, new_model_actions))
        if new is not None
    ]
    if len(changes) < 2:
        return Plan(tuple(changes), "only one part changes" if changes else "nothing changes")

    # Two switches: the state between them is either (old model, new server)
    # or (new model, old server). Prefer the action server first, as Rasa's
    # guide does, whenever it is safe.
    server_first_gap = _missing(live.model_actions, served_after)
    if not server_first_gap:
        return Plan((ACTION_SERVER, MODEL), "the new action server still serves the live model")
    model_first_gap = _missing(model_after, live.served_actions)
    if not model_first_gap:
        return Plan(
            (MODEL, ACTION_SERVER),
            "the new action server drops " + ", ".join(server_first_gap)
            + " which the live model calls, and the live server already serves the new model",
        )
    raise NoSafeOrder(
        "no order is safe: switching the action server first would drop "
        + ", ".join(server_first_gap) + " (called by the live model); switching the model "
        "first would call " + ", ".join(model_first_gap) + " (not served yet). "
        "Release in two steps: first an action server serving both, then the model."
    )
