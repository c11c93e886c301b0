"""Smoke test: after switching, the configured conversations through the REST channel.

Each conversation runs with its own sender id; each turn's text replies, joined,
must contain the turn's `expect` (when given). The model target talks to the
server (`ModelTarget.talk`, part of every model target's interface).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.steps import SKIPPED, Outcome, StepContext, StepFailed
from agent.targets.base import DeployError, LogSink

NAME = "smoke"
LONG = False


def run(ctx: StepContext) -> Outcome:
    conversations: list[list[dict[str, Any]]] | None = ctx.config["smoke.conversations"]
    if not conversations:
        return Outcome("no smoke conversations configured (smoke.conversations)", SKIPPED)
    turns = converse(conversations, ctx.targets.model.talk, f"{ctx.release_id}", ctx.log)
    return Outcome(f"{len(conversations)} conversation(s), {turns} turn(s) answered as expected")


def converse(conversations: list[list[dict[str, Any]]], talk: Callable[[str, str], list[str]],
             tag: str, log: LogSink) -> int:
    """Each conversation with a sender of its own (`tag` in its id); the turns
    answered. StepFailed names the first turn whose replies lack its `expect`.
    Also what a soak in an environment sends now and then (agent/placement.py)."""
    turns = 0
    for number, conversation in enumerate(conversations, 1):
        sender = f"rasa-gitops-smoke-{tag}-{number}-{time.time_ns()}"
        for turn in conversation:
            try:
                replies = talk(sender, str(turn["say"]))
            except DeployError as exc:
                raise StepFailed(f"conversation {number}: {exc}") from None
            said = " / ".join(replies)
            log(f"you: {turn['say']}")
            log(f"bot: {said or '(nothing)'}")
            expect = turn.get("expect")
            if expect is not None and str(expect) not in said:
                raise StepFailed(f"conversation {number}: to {turn['say']!r} the bot said "
                                 f"{said!r}, expected {expect!r}")
            turns += 1
    return turns
