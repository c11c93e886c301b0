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

from agent import faults, order, switch
from agent.journal import PROMOTED, StepStatus
from agent.promote import promote, rollback
from agent.runner import ReleaseStopped
from agent.serving_state import deploy_plan
from agent.targets.base import ActionServerDeployment, ActionServerSpec, LogSink
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


def adds_an_action(world: World) -> tuple[int, int]:
    """Production's model calls a; the new release's calls c too: the server goes first."""
    old = world.release(model_id="model-1", calls={"action_a"}, code="code-1",
                        status=PROMOTED, live=True)
    new = world.release(model_id="model-2", calls={"action_a", "action_c"}, code="code-2")
    return old, new


def failed_go_live(world: World, old: int, new: int) -> ReleaseStopped:
    """`new` switched in over production `old`, which must fail; how it stopped."""
    production = world.journal.release(old)
    plan = deploy_plan(world.agent, world.journal.release(new), production, "production")
    with pytest.raises(ReleaseStopped) as stopped:
        switch.go_live(world.agent, world.context(new), plan, production, "production")
    return stopped.value


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
    old, new = adds_an_action(world)
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
    old, new = adds_an_action(world)
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
    old, new = adds_an_action(world)
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


def test_promote_runs_its_switches_through_the_step_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    points: list[str] = []
    monkeypatch.setattr(faults, "kill_point", points.append)
    world = memory_world(tmp_path, SMOKE)
    _, new = drops_an_action(world)
    promote(world.agent, new, "production")
    steps = {s.name: s.status for s in world.journal.steps(new)}
    assert steps == {"promote.activate_model": "passed", "promote.deploy_actions": "passed",
                     "promote.smoke": "passed"}
    assert points == [
        "step.promote.activate_model.start", "step.promote.activate_model.end",
        "step.promote.deploy_actions.start", "step.promote.deploy_actions.end",
        "step.promote.smoke.start", "step.promote.smoke.end", "promote.switched",
    ]
    log = world.agent.config.work_dir / "logs" / f"release-{new}" / "promote.smoke.log"
    assert "bot: Hi!" in log.read_text(encoding="utf-8")


def test_a_rollback_keeps_the_step_rows_and_logs_of_the_release_it_returns_to(
    tmp_path: Path,
) -> None:
    world = memory_world(tmp_path, SMOKE)
    first, second = drops_an_action(world)
    # What `first` recorded when it was released.
    world.journal.start_step(first, "activate_model")
    world.journal.finish_step(first, "activate_model", StepStatus.PASSED, "model-1 is live", "")
    promote(world.agent, second, "production")
    rollback(world.agent, "production", None, "customers complain")
    promote(world.agent, second, "production", "fixed upstream")
    rollback(world.agent, "production", None, "still broken")
    rows = {s.name: s.summary for s in world.journal.steps(first)}
    assert rows["activate_model"] == "model-1 is live"
    assert {"rollback.activate_model", "rollback-2.activate_model"} <= set(rows)
    logs = world.agent.config.work_dir / "logs" / f"release-{first}"
    assert (logs / "rollback.smoke.log").is_file()
    assert (logs / "rollback-2.smoke.log").is_file()


# ------------------------------------------------------------------ the plan


def test_deploy_plan_takes_the_server_first_unless_it_drops_a_live_action(
    tmp_path: Path,
) -> None:
    world = memory_world(tmp_path)
    old = world.release(model_id="model-1", calls={"action_a"}, code="code-1",
                        status=PROMOTED, live=True)
    production = world.journal.release(old)
    adds = world.release(model_id="model-2", calls={"action_a", "action_c"}, code="code-2")
    plan = deploy_plan(world.agent, world.journal.release(adds), production, "production")
    assert plan.switches == (order.ACTION_SERVER, order.MODEL)
    same_code = world.release(model_id="model-3", calls={"action_a"}, code="code-1")
    plan = deploy_plan(world.agent, world.journal.release(same_code), production,
                              "production")
    assert plan.switches == (order.MODEL,)  # the live server keeps serving
    drops = world.release(model_id="model-4", calls=set(), code="code-4")
    plan = deploy_plan(world.agent, world.journal.release(drops), production, "production")
    assert plan.switches == (order.MODEL, order.ACTION_SERVER)
    needs_both = world.release(model_id="model-5", calls={"action_y"}, code="code-5")
    with pytest.raises(order.NoSafeOrder, match="no order is safe"):
        # The live model calls action_a, which the new server drops; the new
        # model calls action_y, which the live server lacks.
        deploy_plan(world.agent, world.journal.release(needs_both), production, "production")


def test_a_first_release_switches_the_server_first_and_has_nothing_to_undo(
    tmp_path: Path,
) -> None:
    world = memory_world(tmp_path, SMOKE)
    first = world.release(model_id="model-1", calls={"action_a"}, code="code-1")
    plan = deploy_plan(world.agent, world.journal.release(first), None, "production")
    assert plan.switches == (order.ACTION_SERVER, order.MODEL)
    world.model.answers["model-1"] = ["Bye"]
    ctx = world.context(first)
    with pytest.raises(ReleaseStopped):
        switch.go_live(world.agent, ctx, plan, None, "production")
    # No production: what the release switched stays (nothing served before).
    assert world.serving.history == [("action_server", str(first)), ("model", "model-1")]


# ------------------------------------------------------- a release's switch


@pytest.mark.parametrize("model_first", [False, True], ids=["server-first", "model-first"])
def test_a_release_that_fails_its_smoke_test_is_undone_in_reverse_order(
    tmp_path: Path, model_first: bool,
) -> None:
    world = memory_world(tmp_path, SMOKE)
    if model_first:
        old, new = drops_an_action(world)
    else:
        old = world.release(model_id="model-1", calls={"action_a"}, code="code-1",
                            status=PROMOTED, live=True)
        new = world.release(model_id="model-2", calls={"action_a", "action_c"}, code="code-2")
    world.model.answers["model-2"] = ["Bye"]
    production = world.journal.release(old)
    plan = deploy_plan(world.agent, world.journal.release(new), production, "production")
    with pytest.raises(ReleaseStopped) as stopped:
        switch.go_live(world.agent, world.context(new), plan, production, "production",
                       rolled_back_event="release.rolled_back")
    assert stopped.value.step == "smoke"
    forward = [("model", "model-2"), ("action_server", str(new))]
    if not model_first:
        forward.reverse()
    back = [("model", "model-1") if what == "model" else ("action_server", str(old))
            for what, _ in reversed(forward)]
    assert world.serving.history == forward + back
    assert world.serving.violations == []
    kinds = events(world)
    assert "release.rolled_back" in kinds and "action_server.restored" in kinds
    assert "production.restored" in kinds


def test_a_failed_second_switch_undoes_only_the_first(tmp_path: Path) -> None:
    world = memory_world(tmp_path, SMOKE)
    old, new = adds_an_action(world)
    world.model.failures.fail_at["activate"] = {1}
    assert failed_go_live(world, old, new).step == "activate_model"
    assert world.serving.history == [("action_server", str(new)), ("action_server", str(old))]
    steps = {s.name: s.status for s in world.journal.steps(new)}
    assert steps == {"deploy_actions": "passed", "activate_model": "failed"}


def test_a_rollout_that_broke_after_its_switch_is_undone(tmp_path: Path) -> None:
    # The router switched to the new action server, then the connection broke while
    # the old one stopped: the step failed, yet the new server is live.
    world = memory_world(tmp_path, SMOKE)
    old, new = adds_an_action(world)
    world.actions.failures.fail_at["deploy.after_switch"] = {1}
    assert failed_go_live(world, old, new).step == "deploy_actions"  # the first switch
    assert world.serving.history == [("action_server", str(new)), ("action_server", str(old))]
    assert "action_server.restored" in events(world)


def test_an_action_server_that_cant_be_read_is_left_to_the_next_restore(
    tmp_path: Path,
) -> None:
    world = memory_world(tmp_path, SMOKE)
    old, new = adds_an_action(world)
    failures = world.actions.failures
    failures.fail_at["deploy.after_switch"] = {1}
    deploy = world.actions.deploy

    def deploy_then_lose_the_engine(spec: ActionServerSpec, log: LogSink
                                    ) -> ActionServerDeployment:
        # The next two reads of what serves (the undo's, then a restore's) fail.
        failures.fail_at["live"] = {failures.calls["live"] + 1, failures.calls["live"] + 2}
        return deploy(spec, log)

    world.actions.deploy = deploy_then_lose_the_engine  # type: ignore[method-assign]
    failed_go_live(world, old, new)
    assert world.serving.history == [("action_server", str(new))]
    stopped = world.journal.events()[0]
    assert stopped.kind == "production.undo_stopped"
    assert "action_server could not be checked" in stopped.detail
    assert switch.restore(world.agent, "production") == []
    assert events(world)[-1] == "production.restore_failed"
    assert switch.restore(world.agent, "production") == [
        f"action server (was release {new})"]
    assert world.serving.history[-1] == ("action_server", str(old))
    assert world.serving.violations == []


def test_a_smoke_failure_is_kept_when_smoke_rollback_is_off(tmp_path: Path) -> None:
    world = memory_world(tmp_path, NO_ROLLBACK)
    old = world.release(model_id="model-1", calls={"action_a"}, code="code-1",
                        status=PROMOTED, live=True)
    new = world.release(model_id="model-2", calls={"action_a"}, code="code-2")
    world.model.answers["model-2"] = ["Bye"]
    production = world.journal.release(old)
    plan = deploy_plan(world.agent, world.journal.release(new), production, "production")
    kept = switch.go_live(world.agent, world.context(new), plan, production, "production",
                          rolled_back_event="release.rolled_back")
    assert kept.startswith("smoke test failed (kept: smoke.rollback is off): conversation 1")
    assert world.serving.live_model == "model-2"
    assert "release.rolled_back" not in events(world)


# --------------------------------------------------- restore to the journal


def test_restore_after_a_crash_between_two_switches(tmp_path: Path) -> None:
    world = memory_world(tmp_path)
    old, new = drops_an_action(world)
    # A crash after both switches of the model-first release, before the pointer moved:
    world.serving.live_model = "model-2"
    world.serving.live_server = world.actions.deploy(
        ActionServerSpec(str(new), "", tmp_path, frozenset({"action_b"})), print)
    world.serving.history.clear()
    done = switch.restore(world.agent, "production")
    assert done == [f"action server (was release {new})", "model (was model-2)"]
    assert world.serving.history == [("action_server", str(old)), ("model", "model-1")]
    assert world.serving.violations == []
    assert "production.restored" in events(world)
    assert switch.restore(world.agent, "production") == []  # nothing drifted any more


def test_restore_after_a_crash_after_the_first_of_two_switches(tmp_path: Path) -> None:
    world = memory_world(tmp_path)
    old, _ = drops_an_action(world)
    world.serving.switch_model("model-2")  # the model-first release's first switch
    world.serving.history.clear()
    assert switch.restore(world.agent, "production") == ["model (was model-2)"]
    assert world.serving.history == [("model", "model-1")]
    assert world.serving.live_server is not None
    assert world.serving.live_server.release_id == str(old)


def test_restore_refuses_a_drift_no_order_repairs(tmp_path: Path) -> None:
    world = memory_world(tmp_path)
    world.release(model_id="model-1", calls={"action_a"}, code="code-1", status=PROMOTED,
                  live=True)
    stray = world.release(model_id="model-9", calls={"action_z"}, code="code-9")
    world.serving.live_model = "model-9"
    world.serving.live_server = world.actions.deploy(
        ActionServerSpec(str(stray), "", tmp_path, frozenset({"action_z"})), print)
    world.serving.history.clear()
    assert switch.restore(world.agent, "production") == []
    assert world.serving.history == []
    assert "production.restore_refused" in events(world)


def test_restore_leaves_a_server_it_does_not_manage_alone(tmp_path: Path) -> None:
    world = memory_world(tmp_path)
    world.release(model_id="model-1", calls={"action_a"}, code="code-1", status=PROMOTED,
                  live=True)
    world.model.failures.fail_at["live_model_id"] = {1}  # the Rasa server is down
    assert switch.restore(world.agent, "production") == []
    assert world.model.failures.calls["ensure_server"] == 1
    assert world.serving.history == []


def test_an_undo_that_cannot_put_the_model_back_leaves_the_new_action_server(
    tmp_path: Path,
) -> None:
    # Server first, then model; the smoke test fails and the model can't be put
    # back. Reverting the action server anyway would leave the new model, still
    # live, calling action_c on a server that lacks it.
    world = memory_world(tmp_path, SMOKE)
    old, new = adds_an_action(world)
    world.model.answers["model-2"] = ["Bye"]
    world.model.failures.fail_at["activate"] = {2}  # the undo's activation fails
    production = world.journal.release(old)
    plan = deploy_plan(world.agent, world.journal.release(new), production, "production")
    assert plan.switches == (order.ACTION_SERVER, order.MODEL)
    with pytest.raises(ReleaseStopped):
        switch.go_live(world.agent, world.context(new), plan, production, "production")
    assert world.serving.history == [("action_server", str(new)), ("model", "model-2")]
    assert world.serving.violations == []
    assert "production.undo_stopped" in events(world)
