"""The checks of `rasa-validate` that read the domain and config alone.

Domain shape, slot mappings, config keys and format versions need no training
data; keeping them apart leaves `light.py` with the checks that follow a
reference from the training data to the domain.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hooks.core.problems import Problem
from hooks.project.model import Project
from hooks.project.names import (
    ASSISTANT_ID_PLACEHOLDER,
    CONFIG_MANDATORY_KEYS,
    DEFAULT_INTENTS,
    DEFAULT_SLOTS,
    LATEST_FORMAT_VERSION,
)


def domain_files(project: Project) -> frozenset[Path]:
    """A finding about the domain is in scope when any domain file changed."""
    return frozenset(project.layout.domain)


def known_intents(project: Project) -> set[str]:
    return set(project.domain.intents) | set(DEFAULT_INTENTS)


# ----------------------------------------------------------------- domain


def domain_empty(project: Project) -> Iterator[Problem]:
    """Rasa: "Encountered empty domain during validation"."""
    if project.domain.is_empty():
        first = project.layout.domain[0]
        yield Problem(
            "domain-empty",
            "the domain declares no intents, entities, slots, responses, actions or forms.",
            first, 0, domain_files(project),
        )


def mapping_policy(project: Project) -> Iterator[Problem]:
    """Rasa: verify_domain_validity (MappingPolicy `triggers`)."""
    for name, props in project.domain.intent_properties.items():
        if "triggers" in props:
            ref = project.domain.intents[name]
            yield Problem(
                "mapping-policy",
                f"intent '{name}' uses the removed MappingPolicy `triggers:`; "
                "write a rule instead (RulePolicy).",
                ref.path, ref.line,
            )


def domain_duplicate(project: Project) -> Iterator[Problem]:
    """Extra: a name declared twice; Rasa silently merges or overrides it."""
    for name, first, again in project.domain.duplicates:
        yield Problem(
            "domain-duplicate",
            f"'{name}' is declared again (first at {first.path.name}:{first.line}); "
            "keep one declaration.",
            again.path, again.line, frozenset({first.path}),
        )


def form_slot_not_in_domain(project: Project) -> Iterator[Problem]:
    """Rasa: verify_form_slots."""
    slots = set(project.domain.slots) | DEFAULT_SLOTS
    for form_name, form in project.domain.forms.items():
        for slot in form.required_slots:
            if slot.name not in slots:
                yield Problem(
                    "form-slot-not-in-domain",
                    f"form '{form_name}' requires slot '{slot.name}', which the domain "
                    "does not declare under `slots:`; add it or fix the typo.",
                    slot.path, slot.line, domain_files(project),
                )


def slot_mapping_form(project: Project) -> Iterator[Problem]:
    """Rasa: verify_slot_mappings (conditions naming forms)."""
    forms = project.domain.forms
    for slot in project.domain.slots.values():
        for mapping, line in zip(slot.mappings, slot.mapping_lines, strict=True):
            conditions = mapping.get("conditions") or []
            for condition in conditions if isinstance(conditions, list) else []:
                loop = condition.get("active_loop") if isinstance(condition, dict) else None
                if not loop:
                    continue
                if loop not in forms:
                    yield Problem(
                        "slot-mapping-form",
                        f"slot '{slot.ref.name}' has a mapping condition for form '{loop}', "
                        "which is not under `forms:`; add the form or fix the typo.",
                        slot.ref.path, line, domain_files(project),
                    )
                    continue
                required = {r.name for r in forms[loop].required_slots}
                if (required and slot.ref.name not in required
                        and mapping.get("type") != "from_trigger_intent"):
                    yield Problem(
                        "slot-mapping-form",
                        f"slot '{slot.ref.name}' has a mapping condition for form '{loop}' "
                        f"but is not in that form's required_slots; add it there.",
                        slot.ref.path, line, domain_files(project),
                    )


def slot_mapping_reference(project: Project) -> Iterator[Problem]:
    """Extra: slot mappings must name declared entities and intents."""
    entities = set(project.domain.entities)
    intents = known_intents(project)
    for slot in project.domain.slots.values():
        for mapping, line in zip(slot.mappings, slot.mapping_lines, strict=True):
            entity = mapping.get("entity")
            if mapping.get("type") == "from_entity" and entity and entity not in entities:
                yield Problem(
                    "slot-mapping-reference",
                    f"slot '{slot.ref.name}' maps from entity '{entity}', which is not "
                    "under `entities:`; declare it or fix the name.",
                    slot.ref.path, line, domain_files(project),
                )
            for key in ("intent", "not_intent"):
                named = mapping.get(key) or []
                for intent in [named] if isinstance(named, str) else named:
                    if isinstance(intent, str) and intent not in intents:
                        yield Problem(
                            "slot-mapping-reference",
                            f"slot '{slot.ref.name}' mapping names intent '{intent}' "
                            f"(in `{key}`), which is not under `intents:`.",
                            slot.ref.path, line, domain_files(project),
                        )


# ----------------------------------------------------------------- config and format


def config_keys(project: Project) -> Iterator[Problem]:
    """Rasa: warn_if_config_mandatory_keys_are_not_set."""
    config = project.config
    path = project.layout.config
    for key in CONFIG_MANDATORY_KEYS:
        if key not in config:
            yield Problem(
                "config-keys",
                f"config is missing the mandatory key '{key}'; add it "
                "(assistant_id: a unique name for this bot).",
                path, 1,
            )
    if config.get("assistant_id") == ASSISTANT_ID_PLACEHOLDER:
        line = getattr(config, "line_of", lambda _k: 1)("assistant_id")
        yield Problem(
            "config-keys",
            "assistant_id is still the placeholder value; set a unique identifier.",
            path, line,
        )


def _parse_version(value: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in value.strip("\"'").split("."))
    except ValueError:
        return None


def format_version(project: Project) -> Iterator[Problem]:
    """Rasa: validate_training_data_format_version (older format keys)."""
    latest = ".".join(map(str, LATEST_FORMAT_VERSION))
    for key in [*project.domain.versions, *project.versions]:
        parsed = _parse_version(key.value)
        if parsed is None:
            yield Problem(
                "format-version",
                f"version '{key.value}' is not a version number; use \"{latest}\".",
                key.path, key.line,
            )
        elif parsed < LATEST_FORMAT_VERSION:
            yield Problem(
                "format-version",
                f"format version {key.value} is older than Rasa 3.6's {latest}; "
                f"set version: \"{latest}\" after checking the file.",
                key.path, key.line,
            )
