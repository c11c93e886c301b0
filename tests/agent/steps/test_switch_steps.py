"""The three steps of the switch, each alone, over in-memory targets.

`deploy_actions`, `activate_model` and `smoke` are what `agent.switch` runs:
each reads the release, drives its target through the Protocol only, notes
what it switched (for the undo), and says in one line what it did.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.journal import PROMOTED
from agent.steps import PASSED, SKIPPED, StepFailed, activate_model, deploy_actions, smoke
from tests.support.memory_targets import World, memory_world

SMOKE = ("smoke:\n  conversations:\n    - - say: hello\n        expect: Hi!\n"
         "      - say: bye\n")


def live_world(tmp_path: Path, config: str = "") -> tuple[World, int]:
    world = memory_world(tmp_path, config)
    old = world.release(model_id="model-1", calls={"action_a"}, code="code-1",
                        status=PROMOTED, live=True)
    return world, old


# ------------------------------------------------------------ deploy_actions


def test_deploy_actions_deploys_records_and_notes_the_switch(tmp_path: Path) -> None:
    world, _ = live_world(tmp_path)
    new = world.release(model_id="model-2", calls={"action_a", "action_c"}, code="code-2")
    ctx = world.context(new)
    outcome = deploy_actions.run(ctx)
    assert outcome.status == PASSED
    assert outcome.summary == f"action server live at memory://actions/{new} serving 2 action(s)"
    assert ctx.notes["action_server_switched"] == "yes"
    recorded = world.journal.release(new).action_server
    assert recorded is not None
    assert recorded["served_actions"] == ["action_a", "action_c"]
    assert world.serving.history == [("action_server", str(new))]


def test_deploy_actions_keeps_a_live_server_with_the_same_code(tmp_path: Path) -> None:
    world, old = live_world(tmp_path)
    new = world.release(model_id="model-2", calls={"action_a"}, code="code-1")
    ctx = world.context(new)
    outcome = deploy_actions.run(ctx)
    assert outcome.status == SKIPPED
    assert f"release {old}'s server stays live" in outcome.summary
    assert "action_server_switched" not in ctx.notes
    assert world.serving.history == []


def test_deploy_actions_skips_a_bot_without_action_code(tmp_path: Path) -> None:
    world = memory_world(tmp_path)
    new = world.release(model_id="model-1", calls=set(), code="code-1")
    world.journal.update_release(new, action_code_fingerprint=None)
    assert deploy_actions.run(world.context(new)).status == SKIPPED
    assert world.serving.history == []


def test_deploy_actions_failure_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    world, old = live_world(tmp_path)
    new = world.release(model_id="model-2", calls={"action_c"}, code="code-2")
    world.actions.failures.fail_at["deploy"] = {1}
    ctx = world.context(new)
    with pytest.raises(StepFailed, match=r"^action server: deploy failed"):
        deploy_actions.run(ctx)
    assert "action_server_switched" not in ctx.notes
    assert world.serving.live_server is not None
    assert world.serving.live_server.release_id == str(old)


# ------------------------------------------------------------ activate_model


def test_activate_model_switches_and_notes_it(tmp_path: Path) -> None:
    world, _ = live_world(tmp_path)
    new = world.release(model_id="model-2", calls={"action_a"}, code="code-1")
    ctx = world.context(new)
    outcome = activate_model.run(ctx)
    assert outcome.status == PASSED
    assert outcome.summary == "model model-2 is live (memory)"
    assert ctx.notes["model_switched"] == "yes"
    assert world.serving.live_model == "model-2"


def test_activate_model_of_the_live_model_is_a_skip(tmp_path: Path) -> None:
    world, old = live_world(tmp_path)
    ctx = world.context(old)
    outcome = activate_model.run(ctx)
    assert outcome.status == SKIPPED
    assert "was already live" in outcome.summary
    assert "model_switched" not in ctx.notes
    assert world.serving.history == []


def test_activate_model_without_a_model_or_with_a_failing_target_fails(
    tmp_path: Path,
) -> None:
    world, _ = live_world(tmp_path)
    new = world.release(model_id="model-2", calls={"action_a"}, code="code-1")
    world.model.failures.fail_at["activate"] = {1}
    with pytest.raises(StepFailed, match=r"^model: activate failed"):
        activate_model.run(world.context(new))
    assert world.serving.live_model == "model-1"
    world.journal.update_release(new, model_path=None)
    with pytest.raises(StepFailed, match="no model to activate"):
        activate_model.run(world.context(new))


# --------------------------------------------------------------------- smoke


def test_smoke_talks_through_the_model_target_and_checks_expectations(
    tmp_path: Path,
) -> None:
    world, old = live_world(tmp_path, SMOKE)
    outcome = smoke.run(world.context(old))
    assert outcome.status == PASSED
    assert outcome.summary == "1 conversation(s), 2 turn(s) answered as expected"
    assert world.lines == ["you: hello", "bot: Hi!", "you: bye", "bot: Hi!"]
    world.model.answers["model-1"] = ["Hello there"]
    with pytest.raises(StepFailed, match="to 'hello' the bot said 'Hello there', "
                                         "expected 'Hi!'"):
        smoke.run(world.context(old))


def test_smoke_without_conversations_is_a_skip_and_a_dead_channel_a_failure(
    tmp_path: Path,
) -> None:
    world, old = live_world(tmp_path)
    assert smoke.run(world.context(old)).status == SKIPPED
    talking, release = live_world(tmp_path / "talking", SMOKE)
    talking.model.failures.fail_at["talk"] = {1}
    with pytest.raises(StepFailed, match=r"^conversation 1: talk failed"):
        smoke.run(talking.context(release))
