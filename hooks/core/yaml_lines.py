"""A safe YAML loader that remembers where every value came from.

Rasa's own readers drop line numbers, so a hook built on them could only say
"somewhere in nlu.yml". This loader keeps the line of every mapping, key,
sequence item and scalar, refuses duplicate keys (Rasa silently keeps the
last one), and bounds aliases, nesting and file size so that a hostile file
cannot exhaust memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hooks.core.errors import LocatedError

try:  # libyaml parses about ten times faster; fall back when it is missing
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _BaseLoader = yaml.SafeLoader

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASES = 200
# Aliases may repeat a subtree: a few dozen of them nest into a billion nodes
# ("billion laughs") that any reader walking the data (Rasa's own loader, a
# JSON dump) expands. So the expanded size is bounded too, counted on the node
# graph in linear time.
MAX_EXPANDED_EXTRA_NODES = 100_000


class LStr(str):
    line: int


class LDict(dict):  # type: ignore[type-arg]
    """A mapping with the 1-based line of itself and of each key."""

    line: int
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LList(list):  # type: ignore[type-arg]
    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        if 0 <= index < len(self.item_lines):
            return self.item_lines[index]
        return self.line


def line_of(value: Any, default: int = 0) -> int:
    return int(getattr(value, "line", default))


class _LineLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    def __init__(self, stream: Any, path: Path) -> None:
        super().__init__(stream)
        self._path = path
        self._depth = 0
        self._aliases = 0

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # libyaml composes the node graph in C, so the limits live here: an
        # alias is a node constructed a second time, and depth is recursion.
        if node in self.constructed_objects:
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise LocatedError(
                    self._path,
                    node.start_mark.line + 1,
                    f"more than {MAX_ALIASES} YAML aliases; refusing a possible "
                    "alias bomb. Write the values out instead of using anchors.",
                )
            return self.constructed_objects[node]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise LocatedError(
                    self._path,
                    node.start_mark.line + 1,
                    f"YAML nested deeper than {MAX_DEPTH} levels; Rasa files never "
                    "need this. Flatten the structure.",
                )
            return super().construct_object(node, deep=deep)
        finally:
            self._depth -= 1

    def construct_yaml_map(self, node: yaml.MappingNode) -> Any:
        data = LDict()
        data.line = node.start_mark.line + 1
        data.key_lines = {}
        yield data
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise LocatedError(
                    self._path,
                    key_node.start_mark.line + 1,
                    "a mapping key must be a plain value, not a list or mapping.",
                ) from None
            if key in data:
                raise LocatedError(
                    self._path,
                    key_node.start_mark.line + 1,
                    f"duplicate key '{key}' (first on line {data.key_lines[key]}); "
                    "YAML keeps only the last one. Merge or rename them.",
                )
            data[key] = self.construct_object(value_node, deep=True)
            data.key_lines[key] = key_node.start_mark.line + 1

    def construct_yaml_seq(self, node: yaml.SequenceNode) -> Any:
        data = LList()
        data.line = node.start_mark.line + 1
        data.item_lines = [child.start_mark.line + 1 for child in node.value]
        yield data
        data.extend(self.construct_object(child, deep=True) for child in node.value)

    def construct_yaml_str(self, node: yaml.ScalarNode) -> Any:
        value = LStr(self.construct_scalar(node))
        value.line = node.start_mark.line + 1
        return value


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_yaml_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_yaml_seq)
_LineLoader.add_constructor("tag:yaml.org,2002:str", _LineLoader.construct_yaml_str)


def read_text(path: Path) -> str:
    """Read a project file as UTF-8, with errors that say what to do."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LocatedError(path, 0, f"cannot read file: {exc.strerror}.") from None
    if size > MAX_FILE_BYTES:
        raise LocatedError(
            path,
            0,
            f"file is {size // (1024 * 1024)} MiB, over the "
            f"{MAX_FILE_BYTES // (1024 * 1024)} MiB limit for Rasa data; split it.",
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LocatedError(path, 0, f"cannot read file: {exc.strerror}.") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LocatedError(
            path,
            line,
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); re-save the file as UTF-8.",
        ) from None


def _preflight(text: str, path: Path) -> None:
    """Bound nesting on the event stream first: libyaml's composer recurses in
    C and crashes the process on deep nesting instead of raising."""
    depth = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise LocatedError(
                    path,
                    event.start_mark.line + 1 if event.start_mark else 0,
                    f"YAML nested deeper than {MAX_DEPTH} levels; Rasa files never "
                    "need this. Flatten the structure.",
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(nodes once each, nodes with every alias expanded), without expanding."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack: list[yaml.Node] = [root]
    while stack:  # iterative post-order: nesting is bounded, but stay flat anyway
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        order.append(node)
        stack.extend(_children(node))
    for node in reversed(order):
        sizes[id(node)] = 1 + sum(sizes[id(child)] for child in _children(node))
    return len(order), sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_yaml(path: Path) -> Any:
    """Parse one YAML file into line-aware values, or raise LocatedError."""
    text = read_text(path)
    loader = _LineLoader(text, path)
    try:
        _preflight(text, path)
        node = loader.get_single_node()
        if node is None:
            return None
        distinct, expanded = _expanded_size(node)
        if expanded - distinct > MAX_EXPANDED_EXTRA_NODES:
            raise LocatedError(
                path,
                node.start_mark.line + 1,
                f"YAML aliases expand to {expanded} values from {distinct}; refusing a "
                "possible alias bomb (billion laughs). Write the values out instead of "
                "using anchors.",
            )
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "invalid YAML"
        raise LocatedError(path, line, f"YAML syntax error: {problem}.") from None
    except yaml.YAMLError as exc:
        raise LocatedError(path, 0, f"YAML error: {exc}.") from None
    except RecursionError:
        raise LocatedError(path, 0, "YAML nested too deeply; flatten it.") from None
    finally:
        loader.dispose()


def plain(value: Any) -> Any:
    """Line-aware values as plain dicts, lists and strings (for JSON and YAML dumps)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value
