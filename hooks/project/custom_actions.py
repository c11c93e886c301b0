"""THE rule for "custom action": which action names Rasa 3.6 runs on the action server.

The commit-time check (rasa-check-actions) and the deploy agent (which actions
the action server of a release must serve) both ask this question, so it lives
here once. It follows Rasa's own dispatch, `rasa.core.actions.action.
action_for_name_or_text`, whose order is:

1. a default action (`action_session_start`, ...) runs Rasa's own code, *unless*
   the domain lists it under `actions:`: then the bot overrides it and Rasa
   calls the action server;
2. an `utter_` name is a response (or retrieval) action Rasa answers itself;
3. a form runs Rasa's FormAction, *unless* the domain lists the form's name
   under `actions:`: then the bot overrides the form;
4. everything else is a RemoteAction: the action server has to run it.

tests/hooks/project/test_custom_actions.py holds the rule to those cases.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from hooks.project.names import DEFAULT_ACTIONS, UTTER_PREFIX


class DomainNames(Protocol):
    """What the rule reads of a domain (hooks.project's Domain has these)."""

    @property
    def actions(self) -> Mapping[str, object]: ...

    @property
    def forms(self) -> Mapping[str, object]: ...

    @property
    def responses(self) -> Mapping[str, object]: ...


def is_custom(name: str, domain: DomainNames, responses: Collection[str] = ()) -> bool:
    """Whether Rasa 3.6 runs action `name` on the action server.

    `responses` adds responses defined outside the domain (in data files).
    """
    if name.startswith(UTTER_PREFIX):
        return False  # step 2 comes before the form check and the remote fallback
    if name in domain.actions:
        return True  # listed: overrides a default action or a form of that name
    # Not listed: Rasa's own default or form runs. An unlisted response name is
    # a response for us (Rasa 3 wants responses named utter_; rasa-validate says so).
    return not (name in DEFAULT_ACTIONS or name in domain.forms
                or name in domain.responses or name in responses)


def custom_actions(domain: DomainNames) -> frozenset[str]:
    """The actions listed under the domain's `actions:` that the action server must serve."""
    return frozenset(name for name in domain.actions if is_custom(name, domain))
