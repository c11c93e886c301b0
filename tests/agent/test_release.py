"""A release after its gates, fast: the policy, the plan, the switch, the pointer.

The gates are left out (`pipeline.gates` returns none here; the end-to-end
tests in test_pipeline.py run them on a real bot); everything after them runs
as in production, over in-memory targets and a real journal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import pipeline
from agent import release as release_module
from agent.journal import FAILED, PROMOTED, QUEUED, STAGED
from agent.placement import promotion_decision
from agent.release import run_release
from agent.targets.base import DeployError
from tests.support.memory_targets import World, memory_world

SMOKE = "smoke:\n  conversations:\n    - - say: hello\n        expect: Hi!\n"


@pytest.fixture(autouse=True)
def no_gates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "gates", lambda config: ())


def queued(world: World, model_id: str, calls: set[str], code: str) -> int:
    """A release as the tick creates it, with what its gates would have recorded."""
    return world.release(model_id=model_id, calls=calls, code=code, status=QUEUED)


def test_a_release_goes_live_in_plan_order_and_moves_the_pointer(tmp_path: Path) -> None:
    world = memory_world(tmp_path, SMOKE)
    world.release(model_id="model-1", calls={"action_a", "action_b"}, code="code-1",
                  status=PROMOTED, live=True)
    new = queued(world, "model-2", {"action_b"}, "code-2")
    assert run_release(world.agent, world.journal.release(new)) == PROMOTED
    assert world.serving.history == [("model", "model-2"), ("action_server", str(new))]
    assert world.serving.violations == []
    assert world.journal.production_release("production").id == new  # type: ignore[union-attr]
    order_event = next(e for e in world.journal.events() if e.kind == "release.order")
    assert order_event.detail.startswith("model then action_server (the new action server "
                                         "drops action_a")


def test_a_release_failing_its_smoke_test_is_undone_and_production_stays(
    tmp_path: Path,
) -> None:
    world = memory_world(tmp_path, SMOKE)
    old = world.release(model_id="model-1", calls={"action_a", "action_b"}, code="code-1",
                        status=PROMOTED, live=True)
    new = queued(world, "model-2", {"action_b"}, "code-2")
    world.model.answers["model-2"] = ["Bye"]
    assert run_release(world.agent, world.journal.release(new)) == FAILED
    release = world.journal.release(new)
    assert release.reason.startswith("smoke: conversation 1: to 'hello' the bot said 'Bye'")
    assert world.serving.history[2:] == [("action_server", str(old)), ("model", "model-1")]
    assert world.serving.violations == []
    assert world.journal.production_release("production").id == old  # type: ignore[union-attr]


def test_a_target_gone_during_the_cleanup_leaves_the_releases_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a cut SSH connection does after a failed deploy: the cleanup can't ask
    # the action server what serves, so it is skipped (and said), never an error.
    world = memory_world(tmp_path, SMOKE)
    world.release(model_id="model-1", calls={"action_a"}, code="code-1",
                  status=PROMOTED, live=True)
    new = queued(world, "model-2", {"action_a"}, "code-2")
    world.model.answers["model-2"] = ["Bye"]
    said: list[str] = []
    monkeypatch.setattr(world.agent.progress, "info", said.append)

    def engine_gone(agent: object) -> set[int]:
        raise DeployError("cannot reach 127.0.0.1:22 over SSH (gave up after 4 attempt(s))")

    monkeypatch.setattr(release_module, "server_releases", engine_gone)
    assert run_release(world.agent, world.journal.release(new)) == FAILED
    assert world.journal.release(new).reason.startswith("smoke: ")
    assert "cleanup skipped: cannot reach 127.0.0.1:22 over SSH" in "\n".join(said)


def test_a_release_no_order_can_switch_fails_at_order_untouched(tmp_path: Path) -> None:
    world = memory_world(tmp_path)
    old = world.release(model_id="model-1", calls={"action_a"}, code="code-1",
                        status=PROMOTED, live=True)
    new = queued(world, "model-2", {"action_y"}, "code-2")
    assert run_release(world.agent, world.journal.release(new)) == FAILED
    assert world.journal.release(new).reason.startswith("order: no order is safe")
    assert {s.name: s.status for s in world.journal.steps(new)} == {"order": "failed"}
    assert world.serving.history == []
    assert world.journal.production_release("production").id == old  # type: ignore[union-attr]


def test_a_manual_environment_stages_the_release_and_switches_nothing(tmp_path: Path) -> None:
    world = memory_world(tmp_path, "environments:\n  production:\n    promote: manual\n")
    world.release(model_id="model-1", calls={"action_a"}, code="code-1", status=PROMOTED,
                  live=True)
    new = queued(world, "model-2", {"action_a"}, "code-2")
    assert run_release(world.agent, world.journal.release(new)) == STAGED
    assert world.journal.release(new).reason == \
        f"production is promoted manually; `agent promote {new}`"
    assert world.serving.history == []


def test_promotion_decision_follows_the_policy_and_the_pause(tmp_path: Path) -> None:
    world = memory_world(tmp_path, "environments:\n  production:\n"
                         "    promote: auto_unless_action_code\n")
    old = world.release(model_id="model-1", calls={"action_a"}, code="code-1",
                        status=PROMOTED, live=True)
    production = world.journal.release(old)
    env = world.agent.environment
    same = world.journal.release(queued(world, "model-2", {"action_a"}, "code-1"))
    changed = world.journal.release(queued(world, "model-3", {"action_a"}, "code-3"))
    assert promotion_decision(world.agent, same, env, production) is None
    waits = promotion_decision(world.agent, changed, env, production)
    assert waits is not None and waits.startswith("the release changes action code")
    world.journal.set_paused("production", True, "customers complain", "test")
    paused = promotion_decision(world.agent, same, env, production)
    assert paused is not None and "paused (customers complain)" in paused
