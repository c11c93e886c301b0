"""The switch, fast: plan, apply, undo and restore over in-memory targets.

No Rasa, no process, no port: a real journal and config, and the memory targets
of `tests.support.memory_targets`, which check at every change that each action
the live model calls is served. Two tests pin bugs of the four switch paths
that came before `agent/switch.py`: an undo that ignored the plan's order, and
`agent promote` keeping a failed switch when `smoke.rollback` is off.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.journal import PROMOTED
from agent.promote import promote, rollback
from hooks.core.errors import FatalError
from tests.support.memory_targets import World, memory_world

SMOKE = "smoke:\n  conversations:\n    - - say: hello\n        expect: Hi!\n"
NO_ROLLBACK = SMOKE + "  rollback: false\n"


def drops_an_action(world: World) -> tuple[int, int]:
    """Production's model calls a and b; the new release's server drops a, and its
    model calls only b: the plan must switch the model first."""
    old = world.release(model_id="model-1", calls={"action_a", "action_b"}, code="code-1",
                        status=PROMOTED, live=True)
    new = world.release(model_id="model-2", calls={"action_b"}, code="code-2")
    return old, new


def events(world: World) -> list[str]:
    return [e.kind for e in reversed(world.journal.events())]


def test_undo_after_a_model_first_switch_runs_in_reverse_plan_order(tmp_path: Path) -> None:
    world = memory_world(tmp_path, SMOKE)
    old, new = drops_an_action(world)
    world.model.answers["model-2"] = ["Bye"]  # the smoke test fails on the new model
    with pytest.raises(FatalError, match="production is unchanged"):
        promote(world.agent, new, "production")
    assert world.serving.history == [
        ("model", "model-2"), ("action_server", str(new)),  # the plan: model first
        ("action_server", str(old)), ("model", "model-1"),  # undo: the reverse
    ]
    assert world.serving.violations == []
    assert world.journal.production_release("production").id == old  # type: ignore[union-attr]


def test_promote_with_smoke_rollback_off_undoes_a_failed_second_switch(tmp_path: Path) -> None:
    world = memory_world(tmp_path, NO_ROLLBACK)
    old = world.release(model_id="model-1", calls={"action_a"}, code="code-1",
                        status=PROMOTED, live=True)
    new = world.release(model_id="model-2", calls={"action_a", "action_c"}, code="code-2")
    world.model.failures.fail_at["activate"] = {1}  # the second switch (the model) fails
    with pytest.raises(FatalError, match="production is unchanged"):
        promote(world.agent, new, "production")
    assert world.journal.production_release("production").id == old  # type: ignore[union-attr]
    assert "smoke.failed_kept" not in events(world)
    assert world.serving.live_model == "model-1"
    assert world.serving.live_server is not None
    assert world.serving.live_server.release_id == str(old)
    assert world.serving.violations == []


def test_promote_with_smoke_rollback_off_keeps_a_failed_smoke_test(tmp_path: Path) -> None:
    world = memory_world(tmp_path, NO_ROLLBACK)
    world.release(model_id="model-1", calls={"action_a"}, code="code-1", status=PROMOTED,
                  live=True)
    new = world.release(model_id="model-2", calls={"action_a"}, code="code-2")
    world.model.answers["model-2"] = ["Bye"]
    promote(world.agent, new, "production")
    assert world.journal.production_release("production").id == new  # type: ignore[union-attr]
    assert "smoke.failed_kept" in events(world)
    assert world.serving.live_model == "model-2"


def test_promote_with_smoke_rollback_on_undoes_a_failed_smoke_test(tmp_path: Path) -> None:
    world = memory_world(tmp_path, SMOKE)
    old = world.release(model_id="model-1", calls={"action_a"}, code="code-1",
                        status=PROMOTED, live=True)
    new = world.release(model_id="model-2", calls={"action_a", "action_c"}, code="code-2")
    world.model.answers["model-2"] = ["Bye"]
    with pytest.raises(FatalError, match="expected 'Hi!'"):
        promote(world.agent, new, "production")
    assert world.serving.history == [
        ("action_server", str(new)), ("model", "model-2"),  # the plan: server first
        ("model", "model-1"), ("action_server", str(old)),  # undo: the reverse
    ]
    assert world.serving.violations == []
    assert world.journal.production_release("production").id == old  # type: ignore[union-attr]
    assert "production.promoted.failed" in events(world)


def test_promote_with_a_failed_first_switch_changes_nothing(tmp_path: Path) -> None:
    world = memory_world(tmp_path, NO_ROLLBACK)
    old = world.release(model_id="model-1", calls={"action_a"}, code="code-1",
                        status=PROMOTED, live=True)
    new = world.release(model_id="model-2", calls={"action_a", "action_c"}, code="code-2")
    world.actions.failures.fail_at["deploy"] = {1}
    with pytest.raises(FatalError, match="deploy failed"):
        promote(world.agent, new, "production")
    assert world.serving.history == []
    assert world.journal.production_release("production").id == old  # type: ignore[union-attr]


def test_rollback_switches_in_plan_order_moves_the_pointer_and_pauses(tmp_path: Path) -> None:
    world = memory_world(tmp_path, SMOKE)
    first, second = drops_an_action(world)
    promote(world.agent, second, "production")
    assert world.serving.history == [("model", "model-2"), ("action_server", str(second))]
    rollback(world.agent, "production", None, "customers complain")
    # Back: the old model calls action_a, which the live server dropped, so the
    # action server goes first.
    assert world.serving.history[2:] == [("action_server", str(first)), ("model", "model-1")]
    assert world.serving.violations == []
    pointer = world.journal.production("production")
    assert pointer is not None and pointer.release_id == first and pointer.paused
