"""Load a Rasa project's config, domain and data, with line numbers.

This is the light path every hook shares: PyYAML only, no Rasa import. It turns
the files into plain records (`Example`, `Story`, ... from hooks.project.model)
that remember the file and line of each name, so checks can point at the
exact place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hooks.core.errors import LocatedError
from hooks.core.yaml_lines import LDict, LList, line_of, load_yaml
from hooks.project.domain import load_domain, names_with_lines
from hooks.project.model import Example, Layout, Project, Ref, Step, Story, VersionKey

# `[text](entity)`, `[text](entity:synonym)`, `[text]{"entity": ...}` and
# `[text][{...}, {...}]`, as Rasa's entity markup reader accepts them.
ENTITY_MARKUP = re.compile(
    r"\[(?P<text>[^\]]+?)\]"
    r"(?:\((?P<entity>[^:)]+?)(?::(?P<value>[^)]+))?\)"
    r"|\{(?P<dict>[^}]+?)\}"
    r"|\[(?P<list>.*?)\])"
)
ENTITY_NAME_IN_JSON = re.compile(r'"entity"\s*:\s*"([^"]+)"')


def strip_markup(text: str) -> tuple[str, tuple[str, ...]]:
    """Plain example text and the entity names its markup annotates."""
    entities: list[str] = []

    def keep_text(match: re.Match[str]) -> str:
        if match.group("entity"):
            entities.append(match.group("entity").strip())
        for blob in (match.group("dict"), match.group("list")):
            if blob:
                entities.extend(ENTITY_NAME_IN_JSON.findall(blob))
        return match.group("text")

    return ENTITY_MARKUP.sub(keep_text, text), tuple(entities)


def block_examples(value: Any, key_line: int) -> Iterator[tuple[str, int]]:
    """Examples of an `examples: |` block (or list), each with its line."""
    if isinstance(value, str):
        # A literal block starts on the line after `examples: |`.
        first = line_of(value, key_line)
        base = first + 1 if first == key_line else first
        for offset, raw in enumerate(value.splitlines()):
            stripped = raw.strip()
            if stripped.startswith("- "):
                yield stripped[2:].strip(), base + offset
            elif stripped == "-":
                yield "", base + offset
    elif isinstance(value, LList):
        for index, item in enumerate(value):
            text = item.get("text") if isinstance(item, dict) else item
            if isinstance(text, str):
                yield text.strip(), value.line_of(index)


def _nlu_examples(path: Path, section: Any) -> Iterator[Example]:
    if not isinstance(section, LList):
        raise LocatedError(path, line_of(section, 1), "'nlu' must be a list of intents.")
    for item in section:
        if not isinstance(item, LDict) or "intent" not in item:
            continue  # synonyms, regexes and lookups carry no intent
        full = str(item["intent"])
        key_line = item.line_of("examples")
        for raw, line in block_examples(item.get("examples"), key_line):
            text, entities = strip_markup(raw)
            yield Example(full.split("/")[0], full, text, entities, path, line)


def _step_entities(step: LDict) -> tuple[str, ...]:
    names: list[str] = []
    entities = step.get("entities")
    if isinstance(entities, list):
        for entity in entities:
            if isinstance(entity, dict):
                names.extend(str(k) for k in entity if k not in {"role", "group", "value"})
                if "entity" in entity:
                    names = [n for n in names if n != "entity"] + [str(entity["entity"])]
            elif entity is not None:
                names.append(str(entity))
    user = step.get("user")
    if isinstance(user, str):
        names.extend(strip_markup(user)[1])
    return tuple(names)


def _steps(path: Path, steps: Any) -> Iterator[Step]:
    if not isinstance(steps, LList):
        return
    for index, step in enumerate(steps):
        line = steps.line_of(index)
        if not isinstance(step, LDict):
            continue
        if "or" in step:
            yield from _steps(path, step["or"])
            continue
        if "intent" in step:
            yield Step("intent", str(step["intent"]), path, line, _step_entities(step))
        elif "user" in step:
            yield Step("user", None, path, line, _step_entities(step))
        if "action" in step:
            yield Step("action", str(step["action"]), path, line)
        if "bot" in step:
            yield Step("bot", None, path, line)
        if "active_loop" in step:
            loop = step["active_loop"]
            yield Step("active_loop", None if loop is None else str(loop), path, line)
        if "slot_was_set" in step:
            for name, slot_line, _ in names_with_lines(step["slot_was_set"]):
                yield Step("slot", name, path, slot_line)
        if "checkpoint" in step:
            yield Step("checkpoint", str(step["checkpoint"]), path, line)


def _stories(path: Path, doc: LDict, key: str, kind: str) -> Iterator[Story]:
    section = doc[key]
    if section is None:
        return
    if not isinstance(section, LList):
        raise LocatedError(path, doc.line_of(key), f"'{key}' must be a list.")
    label = "story" if key == "stories" else "rule"
    for index, item in enumerate(section):
        if not isinstance(item, LDict):
            raise LocatedError(path, section.line_of(index), f"each {label} must be a mapping.")
        name = item.get(label)
        steps = list(_steps(path, item.get("condition")))
        steps += list(_steps(path, item.get("steps")))
        yield Story(kind, str(name), path, item.line, tuple(steps))


def load_data(files: Iterable[Path], *, test_files: Iterable[Path] = ()) -> tuple[
    list[Example], dict[str, Ref], list[Story], list[VersionKey]
]:
    examples: list[Example] = []
    responses: dict[str, Ref] = {}
    stories: list[Story] = []
    versions: list[VersionKey] = []
    tests = set(test_files)
    for path in [*files, *tests]:
        doc = load_yaml(path)
        if not isinstance(doc, LDict):
            continue  # not a Rasa data file; Rasa's importer skips it too
        if "version" in doc:
            versions.append(VersionKey(path, doc.line_of("version"), str(doc["version"])))
        if "nlu" in doc and doc["nlu"] is not None:
            examples.extend(_nlu_examples(path, doc["nlu"]))
        if isinstance(doc.get("responses"), LDict):
            for name in doc["responses"]:
                responses[str(name)] = Ref(str(name), path, doc["responses"].line_of(name))
        for key in ("stories", "rules"):
            if key in doc:
                kind = "test" if path in tests else ("story" if key == "stories" else "rule")
                stories.extend(_stories(path, doc, key, kind))
    return examples, responses, stories, versions


def load_config(path: Path) -> dict[str, Any]:
    doc = load_yaml(path)
    if doc is None:
        return LDict()
    if not isinstance(doc, dict):
        raise LocatedError(path, line_of(doc, 1), "config must be a YAML mapping.")
    return doc


def load_project(layout: Layout, *, with_tests: bool = False) -> Project:
    config = load_config(layout.config)
    domain = load_domain(layout.domain)
    examples, responses, stories, versions = load_data(
        layout.data, test_files=layout.tests if with_tests else ()
    )
    return Project(layout, config, domain, examples, responses, stories, versions)
