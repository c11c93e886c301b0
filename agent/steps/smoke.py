"""Smoke test: after switching, the configured conversations through the REST channel.

Each conversation runs with its own sender id; each turn's text replies, joined,
must contain the turn's `expect` (when given). The model target talks to the
server (`ModelTarget.talk`, part of every model target's interface).
"""

from __future__ import annotations

import time
from typing import Any

from agent.steps import SKIPPED, Outcome, StepContext, StepFailed
from agent.targets.base import DeployError

NAME = "smoke"
LONG = False


def run(ctx: StepContext) -> Outcome:
    conversations: list[list[dict[str, Any]]] | None = ctx.config["smoke.conversations"]
    if not conversations:
        return Outcome("no smoke conversations configured (smoke.conversations)", SKIPPED)
    talk = ctx.targets.model.talk
    turns = 0
    for number, conversation in enumerate(conversations, 1):
        sender = f"rasa-gitops-smoke-{ctx.release_id}-{number}-{int(time.time())}"
        for turn in conversation:
            try:
                replies = talk(sender, str(turn["say"]))
            except DeployError as exc:
                raise StepFailed(f"conversation {number}: {exc}") from None
            said = " / ".join(replies)
            ctx.log(f"you: {turn['say']}")
            ctx.log(f"bot: {said or '(nothing)'}")
            expect = turn.get("expect")
            if expect is not None and str(expect) not in said:
                raise StepFailed(f"conversation {number}: to {turn['say']!r} the bot said "
                                 f"{said!r}, expected {expect!r}")
            turns += 1
    return Outcome(f"{len(conversations)} conversation(s), {turns} turn(s) answered as expected")
