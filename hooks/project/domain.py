"""Load a Rasa domain (one file or a folder of them) with the line of each name.

Duplicates and `version:` keys are recorded, not rejected, so that checks can
report them with both places.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hooks.core.errors import LocatedError
from hooks.core.yaml_lines import LDict, LList, line_of, load_yaml
from hooks.project.model import Domain, Form, Ref, Slot, VersionKey


def names_with_lines(section: Any) -> Iterator[tuple[str, int, Any]]:
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
        for name, line, props in names_with_lines(_section(doc, "intents", path, list)):
            _add(domain.intents, domain, Ref(name, path, line))
            domain.intent_properties[name] = props if isinstance(props, dict) else {}
        for name, line, _ in names_with_lines(_section(doc, "entities", path, list)):
            _add(domain.entities, domain, Ref(name, path, line))
        for name, line, _ in names_with_lines(_section(doc, "actions", path, list)):
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
            for slot_name, slot_line, _ in names_with_lines(slots_section):
                required.append(Ref(slot_name, path, slot_line))
            if ref.name in domain.forms:
                domain.duplicates.append((ref.name, domain.forms[ref.name].ref, ref))
                continue
            domain.forms[ref.name] = Form(ref, tuple(required))
    return domain

