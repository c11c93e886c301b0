"""The switch, fast, for a release that changes only the bot's config.

A target that serves the bot's own endpoints.yml/credentials.yml (blue/green)
runs a release with the same model but a changed config on a new server: that
is a switch like any other, which a failed smoke test undoes and `restore`
repairs. Before, both compared only the model_id, so the new config stayed
live (found in review; pinned here on the memory targets, which serve a
bot config the same way).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import switch
from agent.journal import PROMOTED
from agent.promote import promote
from hooks.core.errors import FatalError
from tests.support.memory_targets import memory_world

SMOKE = "smoke:\n  conversations:\n    - - say: hello\n        expect: Hi!\n"
OLD_CONFIG, NEW_CONFIG = "rest:\n", "rest:\nsocketio:\n"


def test_a_config_only_release_that_fails_its_smoke_test_puts_the_old_config_back(
        tmp_path: Path) -> None:
    world = memory_world(tmp_path, SMOKE)
    old = world.release(model_id="model-1", calls=set(), code="code-1", status=PROMOTED,
                        live=True, credentials=OLD_CONFIG)
    new = world.release(model_id="model-1", calls=set(), code="code-1",
                        credentials=NEW_CONFIG)
    world.model.failures.fail_at["talk"] = {1}  # the smoke test fails on the new config
    with pytest.raises(FatalError, match="production is unchanged"):
        promote(world.agent, new, "production")
    assert world.serving.history == [("model", "model-1"), ("model", "model-1")]
    assert world.serving.live_config == OLD_CONFIG.strip()
    assert world.journal.production_release("production").id == old  # type: ignore[union-attr]


def test_a_config_only_release_whose_smoke_test_passes_stays_live(tmp_path: Path) -> None:
    world = memory_world(tmp_path, SMOKE)
    world.release(model_id="model-1", calls=set(), code="code-1", status=PROMOTED, live=True,
                  credentials=OLD_CONFIG)
    new = world.release(model_id="model-1", calls=set(), code="code-1",
                        credentials=NEW_CONFIG)
    promote(world.agent, new, "production")
    assert world.serving.history == [("model", "model-1")]
    assert world.serving.live_config == NEW_CONFIG.strip()
    assert world.journal.production_release("production").id == new  # type: ignore[union-attr]


def test_restore_puts_production_config_back_under_the_same_model(tmp_path: Path) -> None:
    world = memory_world(tmp_path)
    world.release(model_id="model-1", calls=set(), code="code-1", status=PROMOTED, live=True,
                  credentials=OLD_CONFIG)
    # A crash after a config-only switch, before the production pointer moved:
    world.serving.live_config = NEW_CONFIG.strip()
    assert switch.restore(world.agent, "production") == ["model (was model-1)"]
    assert world.serving.live_config == OLD_CONFIG.strip()
    assert switch.restore(world.agent, "production") == []  # nothing drifted any more


def test_an_unchanged_release_is_no_switch_and_nothing_to_undo(tmp_path: Path) -> None:
    world = memory_world(tmp_path, SMOKE)
    world.release(model_id="model-1", calls=set(), code="code-1", status=PROMOTED, live=True,
                  credentials=OLD_CONFIG)
    new = world.release(model_id="model-1", calls=set(), code="code-1",
                        credentials=OLD_CONFIG)
    world.model.failures.fail_at["talk"] = {1}
    with pytest.raises(FatalError, match="production is unchanged"):
        promote(world.agent, new, "production")
    assert world.serving.history == []
    assert world.serving.live_config == OLD_CONFIG.strip()
