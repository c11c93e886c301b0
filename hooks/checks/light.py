"""The named checks of `rasa-validate`: pure functions from a Project to Problems.

Each mirrors one finding of Rasa 3.6's `rasa data validate` (noted per check)
or closes a gap it leaves, so that every reference from the training data to
the domain resolves. This module holds the checks that follow those references
and the table of all light checks; those that read the domain and config alone
are in `hooks.checks.domain`. A check never prints; `hooks.checks.run` scopes
and grades.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hooks.checks.domain import (
    config_keys,
    domain_duplicate,
    domain_empty,
    domain_files,
    form_slot_not_in_domain,
    format_version,
    known_intents,
    mapping_policy,
    slot_mapping_form,
    slot_mapping_reference,
)
from hooks.core.problems import Problem
from hooks.project.model import Project, Ref, Story
from hooks.project.names import DEFAULT_ACTIONS, DEFAULT_INTENTS, DEFAULT_SLOTS, UTTER_PREFIX

CheckFn = Callable[[Project], Iterator[Problem]]


@dataclass(frozen=True)
class Check:
    name: str
    summary: str
    run: CheckFn
    needs_rasa: bool = False


def _training_stories(project: Project) -> list[Story]:
    return [s for s in project.stories if s.kind in {"story", "rule"}]


def _story_files(project: Project) -> frozenset[Path]:
    return frozenset(s.path for s in _training_stories(project))


def _nlu_files(project: Project) -> frozenset[Path]:
    return frozenset(e.path for e in project.examples)


def _known_actions(project: Project) -> set[str]:
    domain = project.domain
    retrieval = {name.split("/")[0] for name in project.data_responses}
    return (
        set(DEFAULT_ACTIONS) | set(domain.actions) | set(domain.responses)
        | set(domain.forms) | retrieval
    )


# ----------------------------------------------------------------- NLU


def intent_not_in_domain(project: Project) -> Iterator[Problem]:
    """Rasa: verify_intents (NLU intent missing from the domain)."""
    known = known_intents(project)
    seen: set[tuple[str, Path]] = set()
    for example in project.examples:
        if example.intent in known or (example.intent, example.path) in seen:
            continue
        seen.add((example.intent, example.path))
        yield Problem(
            "intent-not-in-domain",
            f"NLU examples are labelled with intent '{example.intent}', which the domain "
            "does not list; add it under `intents:`.",
            example.path, example.line, domain_files(project),
        )


def intent_without_examples(project: Project) -> Iterator[Problem]:
    """Rasa: verify_intents (domain intent with no NLU examples)."""
    labelled = {e.intent for e in project.examples}
    for name, ref in _domain_intents_outside(project, labelled):
        yield Problem(
            "intent-without-examples",
            f"intent '{name}' is in the domain but has no NLU training examples.",
            ref.path, ref.line, _nlu_files(project) | domain_files(project),
        )


def _domain_intents_outside(project: Project, present: set[str]) -> Iterator[tuple[str, Ref]]:
    """The domain's own intents (Rasa's defaults aside) that `present` lacks."""
    for name, ref in project.domain.intents.items():
        if name not in DEFAULT_INTENTS and name not in present:
            yield name, ref


def example_multiple_intents(project: Project) -> Iterator[Problem]:
    """Rasa: verify_example_repetition_in_intents."""
    by_text: dict[str, list] = defaultdict(list)  # type: ignore[type-arg]
    for example in project.examples:
        by_text[example.text].append(example)
    for text, examples in by_text.items():
        intents = sorted({e.intent for e in examples})
        if len(intents) < 2:
            continue
        places = ", ".join(f"{e.intent} ({e.path.name}:{e.line})" for e in examples)
        yield Problem(
            "example-multiple-intents",
            f"example '{text}' is labelled with several intents: {places}; keep one.",
            examples[-1].path, examples[-1].line, frozenset(e.path for e in examples),
        )


def entity_not_in_domain(project: Project) -> Iterator[Problem]:
    """Extra: entities annotated in NLU examples or stories must be declared."""
    declared = set(project.domain.entities)
    seen: set[tuple[str, Path]] = set()
    places = [(e.entities, e.path, e.line) for e in project.examples]
    places += [(s.entities, s.path, s.line) for st in _training_stories(project) for s in st.steps]
    for names, path, line in places:
        for name in names:
            if name in declared or (name, path) in seen:
                continue
            seen.add((name, path))
            yield Problem(
                "entity-not-in-domain",
                f"entity '{name}' is annotated here but not declared under `entities:`.",
                path, line, domain_files(project),
            )


# ----------------------------------------------------------------- stories


def _undeclared_steps(
    project: Project, kind: str, declared: set[str], check: str, what: str, where: str,
    *, applies: Callable[[str], bool] = lambda _name: True,
) -> Iterator[Problem]:
    """A Problem for every story or rule step of `kind` whose name the domain
    does not declare; `what` and `where` fill in the message."""
    for story in _training_stories(project):
        for step in story.steps:
            name = step.name or ""
            if step.kind == kind and name and applies(name) and name not in declared:
                yield Problem(
                    check,
                    f"{story.kind} '{story.name}' {what} '{name}', which the domain "
                    f"does not list; add it under `{where}:`.",
                    step.path, step.line, domain_files(project),
                )


def story_intent_not_in_domain(project: Project) -> Iterator[Problem]:
    """Rasa: verify_intents_in_stories (intent used in a story or rule)."""
    known = known_intents(project)
    yield from _undeclared_steps(
        project, "intent", known, "story-intent-not-in-domain", "uses intent", "intents",
        applies=lambda name: name.split("/")[0] not in known,
    )


def intent_unused(project: Project) -> Iterator[Problem]:
    """Rasa: verify_intents_in_stories (intent not used in any story or rule)."""
    used = {
        step.name.split("/")[0]
        for story in _training_stories(project) for step in story.steps
        if step.kind == "intent" and step.name
    }
    for name, ref in _domain_intents_outside(project, used):
        yield Problem(
            "intent-unused",
            f"intent '{name}' is not used in any story or rule.",
            ref.path, ref.line, _story_files(project) | domain_files(project),
        )


def _utterances(project: Project) -> set[str]:
    return {n for n in project.domain.responses if n.startswith(UTTER_PREFIX)} | {
        n.split("/")[0] for n in project.data_responses
    }


def utterance_not_in_domain(project: Project) -> Iterator[Problem]:
    """Rasa: verify_utterances_in_stories (undefined utter_ action)."""
    yield from _undeclared_steps(
        project, "action", _utterances(project), "utterance-not-in-domain", "uses response",
        "responses", applies=lambda name: name.startswith(UTTER_PREFIX),
    )


def utterance_unused(project: Project) -> Iterator[Problem]:
    """Rasa: verify_utterances_in_stories (response not used in any story)."""
    used = {
        step.name for story in _training_stories(project) for step in story.steps
        if step.kind == "action"
    }
    for name in sorted(_utterances(project)):
        if name in used:
            continue
        ref = project.domain.responses.get(name)
        if ref is None:
            ref = next(r for k, r in project.data_responses.items() if k.split("/")[0] == name)
        hint = " Forms ask with it; if so, make this check warn-only." if "_ask_" in name else ""
        yield Problem(
            "utterance-unused",
            f"response '{name}' is not used in any story or rule.{hint}",
            ref.path, ref.line, _story_files(project) | domain_files(project),
        )


def action_not_in_domain(project: Project) -> Iterator[Problem]:
    """Rasa: verify_actions_in_stories_rules (it checks `action_*` only; we
    check every non-utter action name)."""
    yield from _undeclared_steps(
        project, "action", _known_actions(project), "action-not-in-domain", "uses action",
        "actions", applies=lambda name: not name.startswith(UTTER_PREFIX),
    )


def form_not_in_domain(project: Project) -> Iterator[Problem]:
    """Rasa: verify_forms_in_stories_rules (active_loop names)."""
    yield from _undeclared_steps(
        project, "active_loop", _known_actions(project), "form-not-in-domain",
        "activates form", "forms",
    )


def slot_not_in_domain(project: Project) -> Iterator[Problem]:
    """Extra: `slot_was_set` must name a declared slot."""
    yield from _undeclared_steps(
        project, "slot", set(project.domain.slots) | DEFAULT_SLOTS, "slot-not-in-domain",
        "sets slot", "slots",
    )



CHECKS: tuple[Check, ...] = (
    Check("domain-empty", "the domain declares something", domain_empty),
    Check("mapping-policy", "no MappingPolicy `triggers`", mapping_policy),
    Check("domain-duplicate", "each name declared once in the domain", domain_duplicate),
    Check("form-slot-not-in-domain", "form required slots are declared", form_slot_not_in_domain),
    Check("slot-mapping-form", "slot mapping conditions name real forms", slot_mapping_form),
    Check("slot-mapping-reference", "slot mappings name declared entities and intents",
          slot_mapping_reference),
    Check("intent-not-in-domain", "NLU intents are in the domain", intent_not_in_domain),
    Check("intent-without-examples", "domain intents have NLU examples", intent_without_examples),
    Check("example-multiple-intents", "an example has one intent", example_multiple_intents),
    Check("entity-not-in-domain", "annotated entities are declared", entity_not_in_domain),
    Check("story-intent-not-in-domain", "story intents are in the domain",
          story_intent_not_in_domain),
    Check("intent-unused", "domain intents are used in stories or rules", intent_unused),
    Check("utterance-not-in-domain", "utter_ actions have responses", utterance_not_in_domain),
    Check("utterance-unused", "responses are used in stories or rules", utterance_unused),
    Check("action-not-in-domain", "story actions are in the domain", action_not_in_domain),
    Check("form-not-in-domain", "active_loop forms are in the domain", form_not_in_domain),
    Check("slot-not-in-domain", "slot_was_set slots are declared", slot_not_in_domain),
    Check("config-keys", "config has assistant_id and language", config_keys),
    Check("format-version", "files use format version 3.1", format_version),
)
