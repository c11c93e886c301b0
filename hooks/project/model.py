"""The plain records a loaded Rasa project is made of.

Every hook reads the same shapes: names that remember their file and line
(`Ref`), where a project's files are (`Layout`), and the domain, examples and
stories loaded from them. Kept apart from the loaders so that code which only
passes records around does not pull in YAML parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_HISTORY = 5
MEMOIZATION_POLICIES = ("MemoizationPolicy", "AugmentedMemoizationPolicy")


@dataclass(frozen=True)
class Ref:
    """One mention of a name in a file."""

    name: str
    path: Path
    line: int


@dataclass(frozen=True)
class Layout:
    """Where a project's files are."""

    root: Path
    config: Path
    domain: tuple[Path, ...]
    data: tuple[Path, ...]
    tests: tuple[Path, ...]

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.config, *self.domain, *self.data)


@dataclass(frozen=True)
class VersionKey:
    path: Path
    line: int
    value: str


@dataclass(frozen=True)
class Slot:
    ref: Ref
    mappings: tuple[dict[str, Any], ...]
    mapping_lines: tuple[int, ...]


@dataclass(frozen=True)
class Form:
    ref: Ref
    required_slots: tuple[Ref, ...]


@dataclass
class Domain:
    files: tuple[Path, ...] = ()
    intents: dict[str, Ref] = field(default_factory=dict)
    intent_properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    entities: dict[str, Ref] = field(default_factory=dict)
    slots: dict[str, Slot] = field(default_factory=dict)
    responses: dict[str, Ref] = field(default_factory=dict)
    actions: dict[str, Ref] = field(default_factory=dict)
    forms: dict[str, Form] = field(default_factory=dict)
    duplicates: list[tuple[str, Ref, Ref]] = field(default_factory=list)
    versions: list[VersionKey] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.intents or self.entities or self.slots or self.responses
                    or self.actions or self.forms)


@dataclass(frozen=True)
class Example:
    intent: str  # the base intent; `faq` for `faq/ask_name`
    full_intent: str
    text: str  # without entity markup, as Rasa compares examples
    entities: tuple[str, ...]
    path: Path
    line: int


@dataclass(frozen=True)
class Step:
    """One event of a story or rule: kind is intent, action, active_loop,
    slot, checkpoint, user (text only) or bot."""

    kind: str
    name: str | None
    path: Path
    line: int
    entities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Story:
    kind: str  # story, rule or test
    name: str
    path: Path
    line: int
    steps: tuple[Step, ...]


@dataclass
class Project:
    layout: Layout
    config: dict[str, Any]
    domain: Domain
    examples: list[Example]
    data_responses: dict[str, Ref]
    stories: list[Story]
    versions: list[VersionKey]

    @property
    def max_history(self) -> int:
        return memoization_max_history(self.config) or DEFAULT_MAX_HISTORY


def memoization_max_history(config: dict[str, Any]) -> int | None:
    """max_history of the (Augmented)MemoizationPolicy, if the config sets one."""
    policies = config.get("policies")
    if not isinstance(policies, list):
        return None
    for policy in policies:
        if isinstance(policy, dict) and policy.get("name") in MEMOIZATION_POLICIES:
            value = policy.get("max_history")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None

