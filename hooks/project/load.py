"""Find a Rasa project and load its config, domain and data, with line numbers.

This is the light path every hook shares: PyYAML only, no Rasa import. It turns
the files into plain records (`Ref`, `Example`, `Story`, ...) that remember the
file and line of each name, so checks can point at the exact place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooks.core.errors import FatalError, LocatedError
from hooks.core.yaml_lines import LDict, LList, line_of, load_yaml

CONFIG_NAMES = ("config.yml", "config.yaml")
DOMAIN_NAMES = ("domain.yml", "domain.yaml", "domain")
DEFAULT_MAX_HISTORY = 5
MEMOIZATION_POLICIES = ("MemoizationPolicy", "AugmentedMemoizationPolicy")
YAML_SUFFIXES = (".yml", ".yaml")

# `[text](entity)`, `[text](entity:synonym)`, `[text]{"entity": ...}` and
# `[text][{...}, {...}]`, as Rasa's entity markup reader accepts them.
ENTITY_MARKUP = re.compile(
    r"\[(?P<text>[^\]]+?)\]"
    r"(?:\((?P<entity>[^:)]+?)(?::(?P<value>[^)]+))?\)"
    r"|\{(?P<dict>[^}]+?)\}"
    r"|\[(?P<list>.*?)\])"
)
ENTITY_NAME_IN_JSON = re.compile(r'"entity"\s*:\s*"([^"]+)"')


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


# ---------------------------------------------------------------- finding


def _first_existing(folder: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        candidate = folder / name
        if candidate.exists():
            return candidate
    return None


def is_project_root(folder: Path) -> bool:
    return (
        _first_existing(folder, CONFIG_NAMES) is not None
        and _first_existing(folder, DOMAIN_NAMES) is not None
    )


def looks_like_root(folder: Path) -> bool:
    """A project missing its config or domain still marks its root, so that a
    commit that deletes one gets an error rather than a pass. A lone
    config.yml is too common outside Rasa to count; with a data/ folder it is."""
    has_config = _first_existing(folder, CONFIG_NAMES) is not None
    has_domain_file = _first_existing(folder, DOMAIN_NAMES[:2]) is not None
    return has_domain_file or (has_config and (folder / "data").is_dir())


def find_root_above(path: Path, stop: Path | None = None) -> Path | None:
    """The nearest folder at or above `path` that holds config and domain
    (or, failing that, one of them)."""
    current = path if path.is_dir() else path.parent
    current = current.resolve()
    stop = stop.resolve() if stop else None
    half: Path | None = None
    while True:
        if is_project_root(current):
            return current
        if half is None and looks_like_root(current):
            half = current
        if current == stop or current.parent == current:
            return half
        current = current.parent


def yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix in YAML_SUFFIXES else []
    if not path.is_dir():
        return []
    # Dangling symlinks are kept so that loading reports them, not skips them.
    return sorted(
        p for p in path.rglob("*")
        if p.suffix in YAML_SUFFIXES and (p.is_file() or p.is_symlink())
    )


def layout_for(
    root: Path,
    *,
    config: str | None = None,
    domain: str | None = None,
    data: Sequence[str] = ("data",),
    tests: Sequence[str] = ("tests",),
) -> Layout:
    """Describe the project at `root`; paths in args are relative to it."""
    root = root.resolve()
    if not root.is_dir():
        raise FatalError(
            f"{root}: project folder does not exist; pass --project with a bot folder."
        )
    config_path = root / config if config else _first_existing(root, CONFIG_NAMES)
    if config_path is None or not config_path.is_file():
        raise LocatedError(
            config_path or root / "config.yml", 0,
            "config file not found; create it (`rasa init` makes one) or pass --config.",
        )
    domain_path = root / domain if domain else _first_existing(root, DOMAIN_NAMES)
    if domain_path is None or not domain_path.exists():
        raise LocatedError(
            domain_path or root / "domain.yml", 0,
            "domain not found; create domain.yml or a domain/ folder, or pass --domain.",
        )
    domain_files = tuple(yaml_files(domain_path))
    if not domain_files:
        raise LocatedError(domain_path, 0, "domain folder holds no .yml files.")
    data_files = tuple(f for d in data for f in yaml_files(root / d))
    test_files = tuple(f for d in tests for f in yaml_files(root / d))
    return Layout(root, config_path, domain_files, data_files, test_files)


# ---------------------------------------------------------------- config


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


# ---------------------------------------------------------------- domain


def _names_with_lines(section: Any) -> Iterator[tuple[str, int, Any]]:
    """Yield (name, line, properties) for list-or-mapping domain sections."""
    if isinstance(section, LList):
        for index, item in enumerate(section):
            line = section.line_of(index)
            if isinstance(item, dict):
                for key, props in item.items():
                    yield str(key), line, props
            elif item is not None:
                yield str(item), line, None
    elif isinstance(section, LDict):
        for key, props in section.items():
            yield str(key), section.line_of(key), props


def _section(doc: LDict, key: str, path: Path, kind: type) -> Any:
    value = doc.get(key)
    if value is None:
        return kind()
    if kind is list and isinstance(value, dict) and key in {"intents", "entities", "actions"}:
        return value  # Rasa accepts a mapping here too
    if not isinstance(value, kind):
        expected = "a list" if kind is list else "a mapping"
        raise LocatedError(path, doc.line_of(key), f"'{key}' must be {expected}.")
    return value


def _empty_list(line: int) -> LList:
    empty = LList()
    empty.line, empty.item_lines = line, []
    return empty


def _add(target: dict[str, Ref], domain: Domain, ref: Ref) -> None:
    if ref.name in target:
        domain.duplicates.append((ref.name, target[ref.name], ref))
    else:
        target[ref.name] = ref


def load_domain(files: Iterable[Path]) -> Domain:
    domain = Domain(files=tuple(files))
    for path in domain.files:
        doc = load_yaml(path)
        if doc is None:
            continue
        if not isinstance(doc, LDict):
            raise LocatedError(path, line_of(doc, 1), "a domain file must be a YAML mapping.")
        if "version" in doc:
            domain.versions.append(VersionKey(path, doc.line_of("version"), str(doc["version"])))
        for name, line, props in _names_with_lines(_section(doc, "intents", path, list)):
            _add(domain.intents, domain, Ref(name, path, line))
            domain.intent_properties[name] = props if isinstance(props, dict) else {}
        for name, line, _ in _names_with_lines(_section(doc, "entities", path, list)):
            _add(domain.entities, domain, Ref(name, path, line))
        for name, line, _ in _names_with_lines(_section(doc, "actions", path, list)):
            _add(domain.actions, domain, Ref(name, path, line))
        responses = _section(doc, "responses", path, dict)
        for name in responses:
            _add(domain.responses, domain, Ref(str(name), path, responses.line_of(name)))
        slots = _section(doc, "slots", path, dict)
        for name, props in slots.items():
            ref = Ref(str(name), path, slots.line_of(name))
            found = props.get("mappings") if isinstance(props, dict) else None
            mappings = found if isinstance(found, LList) else _empty_list(ref.line)
            if ref.name in domain.slots:
                domain.duplicates.append((ref.name, domain.slots[ref.name].ref, ref))
                continue
            domain.slots[ref.name] = Slot(
                ref,
                tuple(m for m in mappings if isinstance(m, dict)),
                tuple(mappings.line_of(i) for i, m in enumerate(mappings) if isinstance(m, dict)),
            )
        forms = _section(doc, "forms", path, dict)
        for name, props in forms.items():
            ref = Ref(str(name), path, forms.line_of(name))
            required: list[Ref] = []
            slots_section = props.get("required_slots") if isinstance(props, dict) else None
            for slot_name, slot_line, _ in _names_with_lines(slots_section):
                required.append(Ref(slot_name, path, slot_line))
            if ref.name in domain.forms:
                domain.duplicates.append((ref.name, domain.forms[ref.name].ref, ref))
                continue
            domain.forms[ref.name] = Form(ref, tuple(required))
    return domain


# ---------------------------------------------------------------- data


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


def _block_examples(value: Any, key_line: int) -> Iterator[tuple[str, int]]:
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
        for raw, line in _block_examples(item.get("examples"), key_line):
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
            for name, slot_line, _ in _names_with_lines(step["slot_was_set"]):
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
