"""Names Rasa 3.6 defines itself, so a project may use them undeclared.

Copied rather than imported so the light path never imports Rasa;
tests/hooks/project/test_names.py holds them equal to Rasa's own constants.
"""

DEFAULT_INTENTS = frozenset({"restart", "back", "out_of_scope", "session_start", "nlu_fallback"})

DEFAULT_ACTIONS = frozenset(
    {
        "action_listen",
        "action_restart",
        "action_session_start",
        "action_default_fallback",
        "action_deactivate_loop",
        "action_revert_fallback_events",
        "action_default_ask_affirmation",
        "action_default_ask_rephrase",
        "action_two_stage_fallback",
        "action_unlikely_intent",
        "action_back",
        "...",
        "action_extract_slots",
    }
)

DEFAULT_SLOTS = frozenset(
    {
        "requested_slot",
        "session_started_metadata",
        "knowledge_base_listed_objects",
        "knowledge_base_last_object",
        "knowledge_base_last_object_type",
    }
)

CONFIG_MANDATORY_KEYS = ("assistant_id", "language")
ASSISTANT_ID_PLACEHOLDER = "placeholder_default"
LATEST_FORMAT_VERSION = (3, 1)
UTTER_PREFIX = "utter_"
