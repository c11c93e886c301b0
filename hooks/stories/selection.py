"""Which test stories a change can affect, and why.

A test story is picked when the story itself changed, or when it uses a name
(intent, action or response, entity, slot, form) whose definition a changed
training file touched. Both are found by comparing the file now with the same
file at the base revision (HEAD at commit time, the remote's commit at push
time): a story changed when its whole block is not in the old file, and a name
was touched when its definition differs. Without a base every story of a
changed test file counts as changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hooks.core.process import git
from hooks.core.yaml_lines import LDict, load_yaml, plain
from hooks.project.load import strip_markup
from hooks.project.model import Layout, Story

INTENT, ACTION, ENTITY, SLOT, FORM = "intent", "action", "entity", "slot", "form"
ANY_ENTITY = "*"  # a synonym changed: every entity value may map differently
NAMED_SECTIONS = {
    "intents": INTENT,
    "entities": ENTITY,
    "slots": SLOT,
    "responses": ACTION,
    "actions": ACTION,
    "forms": FORM,
}
# Keys that change no prediction.
INERT_KEYS = frozenset({"version"})

Key = tuple[str, str]  # (kind, name)


@dataclass
class Touched:
    """Names a change touched, each with the file that touched it."""

    names: dict[Key, str] = field(default_factory=dict)
    everything: str | None = None  # why every story is affected, if so

    def add(self, key: Key, because: str) -> None:
        self.names.setdefault(key, because)

    def reason_for(self, story: Story) -> str | None:
        if self.everything:
            return self.everything
        for key in story_keys(story):
            if key in self.names:
                return f"uses {key[0]} '{key[1]}', {self.names[key]}"
            if key[0] == ENTITY and (ENTITY, ANY_ENTITY) in self.names:
                return f"uses entity '{key[1]}', {self.names[(ENTITY, ANY_ENTITY)]}"
        return None


@dataclass(frozen=True)
class Pick:
    story: Story
    reason: str


def story_keys(story: Story) -> Iterator[Key]:
    for step in story.steps:
        if step.name is not None:
            if step.kind == INTENT:
                yield INTENT, step.name.split("/")[0]
                yield INTENT, step.name
            elif step.kind == ACTION:
                yield ACTION, step.name
                yield FORM, step.name  # a form runs as an action of its name
            elif step.kind == "active_loop":
                yield FORM, step.name
            elif step.kind == SLOT:
                yield SLOT, step.name
        for entity in step.entities:
            yield ENTITY, entity


# ------------------------------------------------------------------ signatures


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _section_items(section: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(section, list):
        for item in section:
            if isinstance(item, dict):
                for key, props in item.items():
                    yield str(key), props
            elif item is not None:
                yield str(item), None
    elif isinstance(section, dict):
        for key, props in section.items():
            yield str(key), props


def _step_names(steps: Any) -> Iterator[Key]:
    if not isinstance(steps, list):
        return
    for step in steps:
        if not isinstance(step, dict):
            continue
        if "or" in step:
            yield from _step_names(step["or"])
        if step.get("intent") is not None:
            yield INTENT, str(step["intent"]).split("/")[0]
        if step.get("action") is not None:
            yield ACTION, str(step["action"])
            yield FORM, str(step["action"])
        if step.get("active_loop") is not None:
            yield FORM, str(step["active_loop"])
        for slot, _ in _section_items(step.get("slot_was_set")):
            yield SLOT, slot
        entities = step.get("entities")
        for entity, props in _section_items(entities):
            if entity == "entity" and props is not None:
                yield ENTITY, str(props)
            elif entity not in {"role", "group", "value"}:
                yield ENTITY, entity
        if isinstance(step.get("user"), str):
            for entity in strip_markup(step["user"])[1]:
                yield ENTITY, entity


def signatures(doc: Any) -> tuple[dict[Key, str], dict[str, str]]:
    """(definition of each name, content of every other top-level key)."""
    names: dict[Key, list[str]] = {}
    others: dict[str, str] = {}
    if not isinstance(doc, dict):
        return {}, {}

    def note(key: Key, value: Any) -> None:
        names.setdefault(key, []).append(_canonical(value))

    for top, section in doc.items():
        top = str(top)
        if top in NAMED_SECTIONS:
            for name, props in _section_items(section):
                note((NAMED_SECTIONS[top], name), props)
        elif top == "nlu" and isinstance(section, list):
            for item in section:
                if not isinstance(item, dict):
                    continue
                if "intent" in item:
                    intent = str(item["intent"])
                    note((INTENT, intent.split("/")[0]), item)
                    examples = item.get("examples")
                    lines = examples.splitlines() if isinstance(examples, str) else []
                    for line in lines:
                        for entity in strip_markup(line)[1]:
                            note((ENTITY, entity), line)
                elif "synonym" in item:
                    note((ENTITY, ANY_ENTITY), item)
                else:
                    for kind in ("regex", "lookup"):
                        if kind in item:
                            note((ENTITY, str(item[kind])), item)
        elif top in {"stories", "rules"} and isinstance(section, list):
            label = "story" if top == "stories" else "rule"
            for item in section:
                if not isinstance(item, dict):
                    continue
                block = f"{label}:{item.get(label)}:{_canonical(item)}"
                steps = [*(item.get("condition") or []), *(item.get("steps") or [])]
                for key in set(_step_names(steps)):
                    note(key, block)
        elif top not in INERT_KEYS:
            others[top] = _canonical(section)
    return {k: "\n".join(sorted(v)) for k, v in names.items()}, others


def changed_keys(old: Any, new: Any) -> tuple[set[Key], set[str]]:
    """Names whose definition differs, and other top-level keys that differ."""
    old_names, old_other = signatures(old)
    new_names, new_other = signatures(new)
    names = {k for k in old_names.keys() | new_names.keys()
             if old_names.get(k) != new_names.get(k)}
    others = {k for k in old_other.keys() | new_other.keys()
              if old_other.get(k) != new_other.get(k)}
    return names, others


# ------------------------------------------------------------------ base revision


def base_content(path: Path, base: str) -> tuple[bool, Any]:
    """(known, parsed content of `path` at revision `base`); None when absent.

    `known` is False when there is no git history to compare with, in which
    case every name in the file counts as touched.
    """
    done = git(["show", f"{base}:./{path.name}"], cwd=path.parent)
    if done.ok:
        try:
            return True, yaml.safe_load(done.output)
        except yaml.YAMLError:
            return True, None  # a broken old file: everything in the new one is new
    inside = git(["rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], cwd=path.parent)
    return inside.ok, None


def touched_by(
    layout: Layout, changed: Iterable[Path], base: str | None
) -> Touched:
    touched = Touched()
    root = layout.root
    for path in sorted(set(changed)):
        shown = path.relative_to(root).as_posix()
        if path not in layout.domain and path not in layout.data and path != layout.config:
            continue
        new = load_yaml(path) if path.exists() else None
        known, old = base_content(path, base) if base else (False, None)
        if not known:
            old = None
        if path == layout.config:
            if not known or old != new:
                touched.everything = f"{shown} changed (the config affects every prediction)"
            continue
        names, others = changed_keys(old, new)
        if others:
            keys = ", ".join(sorted(others))
            touched.everything = f"{shown} changed {keys} (affects every prediction)"
        for kind, name in sorted(names):
            touched.add((kind, name), f"whose definition changed in {shown}")
    return touched


def _story_blocks(doc: Any) -> Iterator[tuple[int | None, str]]:
    """(line, canonical content) of each story and rule block in a test file."""
    if not isinstance(doc, dict):
        return
    for key in ("stories", "rules"):
        section = doc.get(key)
        for item in section if isinstance(section, list) else ():
            if isinstance(item, dict):
                line = item.line if isinstance(item, LDict) else None
                yield line, f"{key}:{_canonical(plain(item))}"


ALL_STORIES = None  # no base to compare with: every story of the file changed


def changed_story_lines(path: Path, base: str | None) -> frozenset[int] | None:
    """Lines of the story blocks in test file `path` that are not in it at `base`."""
    known, old = base_content(path, base) if base else (False, None)
    if not known:
        return ALL_STORIES
    before = {block for _, block in _story_blocks(old)}
    return frozenset(line for line, block in _story_blocks(load_yaml(path))
                     if line is not None and block not in before)


def select(
    tests: Iterable[Story],
    changed_tests: dict[Path, frozenset[int] | None],
    touched: Touched,
    root: Path,
) -> list[Pick]:
    picks: list[Pick] = []
    for story in tests:
        if story.path in changed_tests:
            lines = changed_tests[story.path]
            if lines is ALL_STORIES or story.line in lines:
                shown = story.path.relative_to(root).as_posix()
                picks.append(Pick(story, f"the story changed in {shown}"))
                continue
        reason = touched.reason_for(story)
        if reason:
            picks.append(Pick(story, reason))
    return picks


def everything(tests: Iterable[Story], reason: str) -> list[Pick]:
    return [Pick(story, reason) for story in tests]

