"""THE rule for "custom action" (hooks/project/custom_actions.py), case by case and
against Rasa 3.6's own dispatch (`action_for_name_or_text`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hooks.project.custom_actions import custom_actions, is_custom
from hooks.project.model import Domain, Form, Ref

HERE = Path("domain.yml")


def _domain(actions: list[str], forms: tuple[str, ...] | list[str] = (),
            responses: tuple[str, ...] | list[str] = ()) -> Domain:
    return Domain(
        actions={n: Ref(n, HERE, 1) for n in actions},
        forms={n: Form(Ref(n, HERE, 1), ()) for n in forms},
        responses={n: Ref(n, HERE, 1) for n in responses},
    )


def test_listed_actions_are_custom_except_responses() -> None:
    domain = _domain(["action_hours", "utter_greet", "validate_order_form"],
                     responses=["utter_greet"])
    assert custom_actions(domain) == {"action_hours", "validate_order_form"}


def test_a_listed_default_action_is_the_bots_own() -> None:
    domain = _domain(["action_session_start"])
    assert is_custom("action_session_start", domain)
    assert custom_actions(domain) == {"action_session_start"}
    # Not listed, Rasa runs its own.
    assert not is_custom("action_session_start", _domain([]))
    assert not is_custom("action_restart", domain)


def test_a_listed_form_name_overrides_the_form() -> None:
    assert is_custom("order_form", _domain(["order_form"], forms=["order_form"]))
    assert not is_custom("order_form", _domain([], forms=["order_form"]))


def test_unlisted_names() -> None:
    domain = _domain([], responses=["utter_greet"])
    assert not is_custom("utter_greet", domain)
    assert not is_custom("utter_faq", domain)  # a retrieval response, from data
    assert not is_custom("chitchat_reply", domain, responses={"chitchat_reply"})
    assert is_custom("action_unknown", domain)  # Rasa would need the server for it


@pytest.mark.rasa
def test_the_rule_equals_rasas_dispatch() -> None:
    pytest.importorskip("rasa.core.actions.action", reason="Rasa is not in this environment")
    from rasa.core.actions.action import RemoteAction, action_for_name_or_text
    from rasa.shared.core.domain import Domain as RasaDomain

    yaml_text = """
version: "3.1"
intents: [greet]
responses:
  utter_greet:
  - text: hi
forms:
  order_form:
    required_slots: []
  other_form:
    required_slots: []
actions:
  - action_hours
  - action_session_start
  - order_form
  - validate_order_form
  - utter_greet
"""
    theirs = RasaDomain.from_yaml(yaml_text)
    ours = _domain(["action_hours", "action_session_start", "order_form",
                    "validate_order_form", "utter_greet"],
                   forms=["order_form", "other_form"], responses=["utter_greet"])
    names = [*theirs.action_names_or_texts]
    assert "action_restart" in names and "other_form" in names
    for name in names:
        if name == "...":
            continue  # the rules' snippet marker: in the domain, never run as an action
        remote = isinstance(action_for_name_or_text(name, theirs, None), RemoteAction)
        assert is_custom(name, ours) == remote, name
    remote_listed = {n for n in theirs.user_actions
                     if isinstance(action_for_name_or_text(n, theirs, None), RemoteAction)}
    assert custom_actions(ours) == remote_listed
