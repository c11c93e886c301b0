"""A release's way through the environments (agent/placement.py), fast: a real
journal, in-memory servers for each environment, no gates (the release is
queued as its gates leave it). The end-to-end proof with real servers is
test_environments_live.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import pipeline, placement
from agent.journal import PROMOTED, QUEUED, Release
from agent.journal.records import VERIFIED, WAITING
from agent.notify import notice_of
from agent.placement import carry_on, promote_through, verify
from agent.promote import rollback
from agent.release import run_release
from agent.serving_state import deployment_for
from agent.steps import nlu_gate
from agent.views import show_status, status_data
from hooks.core.errors import FatalError
from tests.support.memory_targets import World, add_memory_place, memory_world

SMOKE = "smoke:\n  conversations:\n    - - say: hello\n        expect: Hi!\n"
ENVS = """environments:
  staging:
    action_server: {port: 5155}
    model: {url: "http://127.0.0.1:5105"}
  production:
    promote: %s
"""


def _world(tmp_path: Path, policy: str, monkeypatch: pytest.MonkeyPatch) -> tuple[World, object]:
    monkeypatch.setattr(pipeline, "gates", lambda config: ())  # as the gates left it
    world = memory_world(tmp_path, ENVS % policy)
    return world, add_memory_place(world, "production")


def _queued(world: World, model_id: str) -> int:
    """A release of `model_id` as the gates leave it for staging (no custom actions)."""
    return world.release(model_id=model_id, calls=set(), code="c1", status=QUEUED,
                         environment="staging")


def _kinds(world: World, release: int) -> list[tuple[str, str | None]]:
    return [(e.kind, e.environment) for e in reversed(world.journal.events(limit=1000))
            if e.release_id == release]


def test_a_release_verified_in_staging_goes_on_to_an_auto_production(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world, production = _world(tmp_path, "auto", monkeypatch)
    queued = _queued(world, "model-1")
    assert run_release(world.agent, world.journal.release(queued)) == PROMOTED
    assert world.serving.live_model == "model-1"  # staging's own servers
    assert production.live_model == "model-1"  # production's own servers
    assert world.journal.production_release("production").id == queued  # type: ignore[union-attr]
    kinds = _kinds(world, queued)
    assert (VERIFIED, "staging") in kinds and (VERIFIED, "production") in kinds
    assert kinds.index((VERIFIED, "staging")) < kinds.index(("production.promoted",
                                                             "production"))


def test_the_tick_carries_on_a_release_a_crash_left_in_staging(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world, production = _world(tmp_path, "auto", monkeypatch)
    queued = _queued(world, "model-1")
    real_onward = placement.onward
    monkeypatch.setattr(placement, "onward", lambda agent, release, env: [])  # the crash
    assert run_release(world.agent, world.journal.release(queued)) == PROMOTED
    assert production.live_model is None
    monkeypatch.setattr(placement, "onward", real_onward)
    assert carry_on(world.agent) == [f"release {queued} verified in staging",
                                     f"release {queued} is in production",
                                     f"release {queued} verified in production"]
    assert production.live_model == "model-1"
    assert carry_on(world.agent) == []  # done: the next tick has nothing to carry on
    promoted = [e for e in world.journal.events() if e.kind == "production.promoted"]
    assert len(promoted) == 1


def test_the_tick_leaves_an_environment_a_rollback_paused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world, production = _world(tmp_path, "auto", monkeypatch)
    world.release(model_id="model-1", calls=set(), code="c1", status=PROMOTED,
                  environment="staging", live=True)  # from before staging went on
    world.journal.set_paused("staging", True, "rolled back", "test")
    assert carry_on(world.agent) == []
    assert production.live_model is None


def test_a_manual_production_waits_and_promote_refuses_what_staging_did_not_verify(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world, production = _world(tmp_path, "manual", monkeypatch)
    queued = _queued(world, "model-1")
    assert run_release(world.agent, world.journal.release(queued)) == PROMOTED
    assert production.live_model is None
    waiting = [e for e in world.journal.events() if e.kind == WAITING]
    assert waiting and f"`agent promote {queued} --env production`" in waiting[0].detail
    _, onward = promote_through(world.agent, queued, "production", "looks good")
    assert production.live_model == "model-1"
    assert onward == [f"release {queued} verified in production"]
    # A release staging never saw: refused, then forced only with a reason.
    other = world.release(model_id="model-2", calls=set(), code="c1", status=PROMOTED,
                          environment="staging")
    with pytest.raises(FatalError, match=f"release {other} has not passed staging"):
        promote_through(world.agent, other, "production")
    with pytest.raises(FatalError, match="--force needs --reason"):
        promote_through(world.agent, other, "production", force=True)
    assert production.live_model == "model-1"  # nothing changed
    promote_through(world.agent, other, "production", "hotfix, staging is down", force=True)
    assert production.live_model == "model-2"
    forced = [e for e in world.journal.events() if e.kind == "production.forced"]
    assert forced and "hotfix, staging is down" in forced[0].detail


def test_status_shows_what_waits_for_each_environment_and_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    world, _ = _world(tmp_path, "manual", monkeypatch)
    queued = _queued(world, "model-1")
    assert run_release(world.agent, world.journal.release(queued)) == PROMOTED
    data = status_data(world.agent.config, world.journal)
    assert data["environments"]["staging"]["release"] == queued
    production = data["environments"]["production"]
    assert production["after"] == "staging" and "release" not in production
    assert [w["release"] for w in production["waiting"]] == [queued]
    assert show_status(world.agent.config) == 0
    out = capsys.readouterr().out
    assert f"waiting: release {queued} (verified in staging): production is promoted " \
           f"manually; `agent promote {queued} --env production`" in out
    promote_through(world.agent, queued, "production")
    assert status_data(world.agent.config, world.journal)["environments"]["production"][
        "waiting"] == []


def test_people_hear_that_a_release_waits_for_production(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world, _ = _world(tmp_path, "manual", monkeypatch)
    queued = _queued(world, "model-1")
    run_release(world.agent, world.journal.release(queued))
    waiting = next(e for e in world.journal.events() if e.kind == WAITING)
    notice = notice_of(world.journal, waiting)
    assert notice is not None and notice.environment == "production" and notice.chat
    assert f"`agent promote {queued} --env production`" in notice.text
    assert [s.state for s in notice.statuses] == ["pending"]


def test_a_kept_smoke_failure_or_a_rollback_during_the_soak_is_never_verified(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world, production = _world(tmp_path, "auto", monkeypatch)
    first = _queued(world, "model-1")
    assert run_release(world.agent, world.journal.release(first)) == PROMOTED
    assert production.live_model == "model-1"
    # smoke.rollback off: the failure is kept in staging, and goes no further.
    second = _queued(world, "model-2")
    world.journal.event("smoke.failed_kept", second, "staging", detail="no reply")
    assert verify(world.agent, world.journal.release(second), "staging") is not None
    # Rolled back in staging while it soaks: not verified either.
    assert verify(world.agent, world.journal.release(second), "staging") == (
        "its smoke test failed there (kept: smoke.rollback is off)")
    third = world.release(model_id="model-3", calls=set(), code="c1", status=PROMOTED,
                          environment="staging")
    world.journal.set_production("staging", first, kind="production.rolled_back", actor="t",
                                 reason="incident")
    assert verify(world.agent, world.journal.release(third), "staging") == (
        "it is no longer live there (rolled back or replaced during the soak)")
    assert production.live_model == "model-1"
    assert not [e for e in world.journal.events() if e.kind == VERIFIED
                and e.release_id in (second, third)]


def test_production_rolls_back_to_what_was_live_in_production_not_in_staging(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world, production = _world(tmp_path, "auto", monkeypatch)
    ids = []
    for number in (1, 2, 3):
        queued = world.release(model_id=f"model-{number}", calls=set(), code="c1",
                               status=QUEUED, environment="staging")
        assert run_release(world.agent, world.journal.release(queued)) == PROMOTED
        ids.append(queued)
    # Release 4 reaches staging only (production paused by a rollback meanwhile).
    back = rollback(world.agent, "production", None, "incident")
    assert back.id == ids[1] and production.live_model == "model-2"
    staged_only = _queued(world, "model-4")
    assert run_release(world.agent, world.journal.release(staged_only)) == PROMOTED
    assert production.live_model == "model-2"  # paused: waits
    with pytest.raises(FatalError, match=f"release {staged_only} was never live in production"):
        rollback(world.agent, "production", staged_only, "wrong target")
    assert rollback(world.agent, "production", None, "again").id == ids[0]
    assert production.live_model == "model-1"


def test_each_environment_keeps_its_own_record_of_the_releases_action_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world, production = _world(tmp_path, "auto", monkeypatch)
    queued = world.release(model_id="model-1", calls={"action_hours"}, code="c1",
                           status=QUEUED, environment="staging")
    assert run_release(world.agent, world.journal.release(queued)) == PROMOTED
    assert production.live_server is not None and world.serving.live_server is not None
    recorded = world.journal.release(queued).action_server
    assert recorded is not None and set(recorded["environments"]) == {"staging", "production"}
    release = world.journal.release(queued)
    for environment in ("staging", "production"):
        found = deployment_for(world.agent, release, environment)
        assert found is not None and found.release_id == str(queued)
        assert found.url == recorded["environments"][environment]["url"]


def test_an_environments_nlu_gate_stops_a_release_that_loses_against_what_serves_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The comparison itself (k-fold training, the thresholds) is the hook's and is
    # tested in tests/hooks/test_rasa_nlu_compare.py; here: where its verdict goes.
    monkeypatch.setattr(pipeline, "gates", lambda config: ())
    world = memory_world(tmp_path, ENVS % "auto" + "    verify: {nlu_gate: true}\n")
    production = add_memory_place(world, "production")
    compared: list[tuple[int, str]] = []
    verdict: list[str] | None = ["intent greet: F1 0.90 -> 0.60 (-0.30 > 0.10)"]

    def regressions(config: object, mirror: object, base: Release, worktree: Path,
                    commit: str, against: str, log: object) -> list[str] | None:
        compared.append((base.id, against))
        return verdict

    monkeypatch.setattr(nlu_gate, "regressions", regressions)
    first = _queued(world, "model-1")
    assert run_release(world.agent, world.journal.release(first)) == PROMOTED
    assert production.live_model == "model-1"  # nothing served there: nothing to compare
    assert compared == []
    second = _queued(world, "model-2")
    assert run_release(world.agent, world.journal.release(second)) == PROMOTED
    assert compared == [(first, "production")]
    assert production.live_model == "model-1"  # refused: production keeps its release
    refusal = [e for e in world.journal.events(kind="release.promote_failed")]
    assert refusal and refusal[0].environment == "production"
    assert refusal[0].detail.startswith(f"NLU gate against production's release {first}: "
                                        "intent greet")
    with pytest.raises(FatalError, match=f"release {second} may not go to production: NLU"):
        promote_through(world.agent, second, "production", "looks fine")
    assert production.live_model == "model-1"
    promote_through(world.agent, second, "production", "the drop is a relabelling", force=True)
    assert production.live_model == "model-2"
    forced = world.journal.events(kind="production.forced")
    assert forced and forced[0].detail.endswith(": the drop is a relabelling")
    verdict = None  # unchanged NLU: nothing to compare, the gate lets it through
    third = _queued(world, "model-3")
    assert run_release(world.agent, world.journal.release(third)) == PROMOTED
    assert production.live_model == "model-3"


def test_history_json_carries_each_events_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.views import history_data

    world, _ = _world(tmp_path, "manual", monkeypatch)
    queued = _queued(world, "model-1")
    assert run_release(world.agent, world.journal.release(queued)) == PROMOTED
    promote_through(world.agent, queued, "production", "looks good")
    (item,) = history_data(world.journal, 10)
    where = [(e["kind"], e["environment"]) for e in item["events"]]
    assert (VERIFIED, "staging") in where and (WAITING, "production") in where, where
    assert ("production.promoted", "production") in where, where
    assert where.index((WAITING, "production")) < where.index(("production.promoted",
                                                                "production"))


def test_a_soak_watches_the_replies_and_a_wrong_one_is_never_verified(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "gates", lambda config: ())
    monkeypatch.setattr(placement, "SOAK_TALK_EVERY", 0.0)  # a round at each look
    world = memory_world(tmp_path, SMOKE + ENVS.replace(
        "    model: {url: \"http://127.0.0.1:5105\"}\n",
        "    model: {url: \"http://127.0.0.1:5105\"}\n    verify: {soak_seconds: 0.3}\n")
        % "manual")
    add_memory_place(world, "production")
    queued = _queued(world, "model-1")
    assert run_release(world.agent, world.journal.release(queued)) == PROMOTED
    assert world.journal.was_verified_in(queued, "staging")  # "Hi!" all through the soak
    world.model.answers["model-1"] = ["Sorry, I am broken."]
    assert verify(world.agent, world.journal.release(queued), "staging",
                  sleep=lambda seconds: None) == (
        "a reply during the soak: conversation 1: to 'hello' the bot said "
        "'Sorry, I am broken.', expected 'Hi!'")
