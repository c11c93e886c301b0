"""THE order of a release's steps, as one typed table.

A step is any object with `NAME`, `LONG` and `run(ctx) -> Outcome`: the step
modules under `agent/steps/` are such objects themselves (mypy accepts a module
as an implementation of a Protocol, the way pre-commit registers its languages
in `pre_commit/all_languages.py`), so every table here is checked, and nothing
dispatches on an untyped module. To add a step: write its module, put it in
the table where it belongs, nowhere else.
"""

from __future__ import annotations

from typing import Protocol

from agent import order
from agent.config import AgentConfig
from agent.steps import (
    Outcome,
    StepContext,
    action_tests,
    activate_model,
    build,
    checkout,
    deploy_actions,
    nlu_gate,
    push,
    smoke,
    test,
    train,
    validate,
)


class Step(Protocol):
    NAME: str  # the step's row in the journal and its log file's name
    LONG: bool  # SIGTERM may abandon it midway (a switch never is)

    def run(self, ctx: StepContext) -> Outcome:
        """Do the one thing; raise StepFailed (one-line summary) to stop the release."""


# The gates every release passes before anything serves it.
GATES: tuple[Step, ...] = (checkout, validate, train, test, action_tests, nlu_gate)
# Docker action-server targets also build and push an image, after the gates.
IMAGE_STEPS: tuple[Step, ...] = (build, push)
# What changes what serves; only agent.switch runs these, in `order.plan`'s order.
SWITCHES: dict[str, Step] = {order.ACTION_SERVER: deploy_actions, order.MODEL: activate_model}
SMOKE: Step = smoke


def gates(config: AgentConfig) -> tuple[Step, ...]:
    """The steps a release runs before the promotion policy decides, in order."""
    return (*GATES, *(IMAGE_STEPS if build.uses_images(config) else ()))
