"""Rasa's NLU file schema, checked natively.

Importing Rasa's pykwalify schema costs about 0.4 s, which would dominate the
common commit (a few NLU examples). The NLU schema is small, so it is
re-stated here; tests/hooks/test_rasa_validate_parity.py holds it to Rasa's verdicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hooks.core.problems import Problem
from hooks.core.yaml_lines import LDict, LList, line_of

_KINDS = ("intent", "synonym", "regex", "lookup")


def is_plain_nlu_file(tree: Any) -> bool:
    """True for files this module can check alone (NLU, no responses/stories)."""
    return (
        isinstance(tree, LDict)
        and "nlu" in tree
        and not {"responses", "stories", "rules"} & set(tree)
    )


def _problem(path: Path, line: int, message: str) -> Problem:
    return Problem("schema", message, path, line)


def _check_item(path: Path, item: Any, line: int) -> Iterator[Problem]:
    if not isinstance(item, LDict):
        yield _problem(path, line, "each `nlu:` entry must be a mapping with `intent:` "
                       "(or synonym/regex/lookup) and `examples:`.")
        return
    kinds = [k for k in _KINDS if k in item]
    if len(kinds) != 1:
        yield _problem(path, item.line, "an `nlu:` entry needs exactly one of "
                       "intent, synonym, regex or lookup.")
        return
    kind = kinds[0]
    allowed = {kind, "examples"} | ({"metadata"} if kind == "intent" else set())
    for key in item:
        if key not in allowed:
            yield _problem(path, item.line_of(key), f"key '{key}' is not allowed in an "
                           f"`{kind}:` entry; allowed: {', '.join(sorted(allowed))}.")
    name = item[kind]
    if not isinstance(name, str) or (kind == "intent" and not name):
        yield _problem(path, item.line_of(kind), f"`{kind}:` must be a non-empty string.")
    examples = item.get("examples")
    if "examples" not in item or isinstance(examples, str):
        return
    if kind == "intent" and isinstance(examples, LList):
        for index, example in enumerate(examples):
            text = example.get("text") if isinstance(example, LDict) else None
            extra = set(example) - {"text", "metadata"} if isinstance(example, LDict) else set()
            if not isinstance(text, str) or not text or extra:
                yield _problem(path, examples.line_of(index), "a listed example must be a "
                               "mapping with a non-empty `text:` (and optional `metadata:`).")
        return
    yield _problem(path, item.line_of("examples"), "`examples:` must be a block string "
                   "(`examples: |` then `- text` lines).")


def nlu_schema_problems(path: Path, tree: LDict) -> Iterator[Problem]:
    version = tree.get("version")
    if "version" in tree and (not isinstance(version, str) or not version):
        yield _problem(path, tree.line_of("version"),
                       'version must be a quoted string, e.g. version: "3.1".')
    section = tree.get("nlu")
    if section is None:
        return
    if not isinstance(section, LList):
        yield _problem(path, tree.line_of("nlu"), "`nlu:` must be a list of entries.")
        return
    for index, item in enumerate(section):
        yield from _check_item(path, item, section.line_of(index) or line_of(item))
