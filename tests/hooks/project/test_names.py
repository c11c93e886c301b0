"""hooks/project/names.py copies Rasa's built-in names; hold the copy to the original."""

from __future__ import annotations

import pytest

from hooks.project import names


@pytest.mark.rasa
def test_builtin_names_match_rasa() -> None:
    pytest.importorskip("rasa.shared", reason="Rasa is not in this environment")
    from rasa.shared import constants as shared
    from rasa.shared.core import constants as core

    assert set(core.DEFAULT_INTENTS) == names.DEFAULT_INTENTS
    assert set(core.DEFAULT_ACTION_NAMES) == names.DEFAULT_ACTIONS
    assert set(core.DEFAULT_SLOT_NAMES) == names.DEFAULT_SLOTS
    assert set(shared.CONFIG_MANDATORY_KEYS) == set(names.CONFIG_MANDATORY_KEYS)
    assert shared.ASSISTANT_ID_DEFAULT_VALUE == names.ASSISTANT_ID_PLACEHOLDER
    latest = tuple(int(p) for p in shared.LATEST_TRAINING_DATA_FORMAT_VERSION.split("."))
    assert latest == names.LATEST_FORMAT_VERSION
