"""The NLU side of a project as rasa-nlu-compare sees it, and its folds.

An example's identity across the two sides is its text without entity markup:
the same utterance keeps its fold (or its train/test half) on both sides even
when a change gives it another intent, so the comparison measures the change,
not a reshuffle.

Fold files are written in a canonical order (intent, then text), so results
depend only on what the data says, not on how it is spread over files; that
is also what makes a side's fingerprint a sound cache key.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hooks.core.errors import FatalError, LocatedError
from hooks.core.yaml_lines import LDict, LList, line_of, load_yaml, plain

# Rasa's `examples: |` block reader, shared with the project loader.
from hooks.project.layout import layout_for
from hooks.project.load import block_examples, load_config, strip_markup

# The config keys that change what the NLU model learns.
NLU_CONFIG_KEYS = ("recipe", "language", "pipeline")
MIN_EXAMPLES_FOR_SPLIT = 2
# Rasa's NLU components with random initialisation, and the key that seeds each.
# (LogisticRegressionClassifier defaults to random_state 42; these default to None.)
SEEDED_COMPONENTS = {"DIETClassifier": "random_seed", "ResponseSelector": "random_seed"}


@dataclass(frozen=True)
class NluExample:
    intent: str  # as written, `faq/ask_name` included
    raw: str  # as written, with entity markup
    text: str  # markup stripped: the example's identity on both sides
    path: Path
    line: int


@dataclass(frozen=True)
class NluInputs:
    """Everything that decides what an NLU model learns."""

    root: Path
    config: dict[str, Any]  # only NLU_CONFIG_KEYS
    examples: tuple[NluExample, ...]
    extras: tuple[dict[str, Any], ...]  # synonyms, regexes and lookups, verbatim
    files: tuple[Path, ...]

    def signature(self) -> str:
        """A hash of the content only: equal signatures mean an unchanged NLU."""
        content = {
            "config": self.config,
            "examples": sorted((e.intent, e.raw) for e in self.examples),
            "extras": sorted(json.dumps(x, sort_keys=True) for x in self.extras),
        }
        return _sha(content)

    def intent_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for example in self.examples:
            counts[example.intent] += 1
        return dict(counts)

    def first_line_of(self, intent: str) -> tuple[Path, int]:
        for example in self.examples:
            if example.intent == intent:
                return example.path, example.line
        return self.root, 0


def _sha(content: Any) -> str:
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def read_nlu_file(path: Path) -> tuple[list[NluExample], list[dict[str, Any]]]:
    doc = load_yaml(path)
    if not isinstance(doc, LDict) or doc.get("nlu") is None:
        return [], []
    section = doc["nlu"]
    if not isinstance(section, LList):
        raise LocatedError(path, doc.line_of("nlu"), "'nlu' must be a list of intents.")
    examples: list[NluExample] = []
    extras: list[dict[str, Any]] = []
    for index, item in enumerate(section):
        if not isinstance(item, LDict):
            raise LocatedError(path, section.line_of(index), "each 'nlu' item must be a mapping.")
        if "intent" not in item:
            extras.append(plain(item))
            continue
        intent = str(item["intent"])
        for raw, line in block_examples(item.get("examples"), item.line_of("examples")):
            if not raw:
                continue
            text, _ = strip_markup(raw)
            examples.append(NluExample(intent, raw, text, path, line))
    return examples, extras


def load_nlu_inputs(
    root: Path, *, config: str | None = None, data: Sequence[str] = ("data",)
) -> NluInputs:
    layout = layout_for(root, config=config, data=data)
    raw_config = load_config(layout.config)
    nlu_config = {k: plain(raw_config[k]) for k in NLU_CONFIG_KEYS if k in raw_config}
    if not nlu_config.get("pipeline"):
        # Rasa would fill in its default pipeline; we cannot know which one a
        # future Rasa picks, so the comparison would not be reproducible.
        raise LocatedError(
            layout.config, line_of(raw_config, 1),
            "config has no 'pipeline'; write the NLU pipeline out so both sides train the same.",
        )
    examples: list[NluExample] = []
    extras: list[dict[str, Any]] = []
    files = []
    for path in layout.data:
        found, found_extras = read_nlu_file(path)
        if found or found_extras:
            files.append(path)
        examples.extend(found)
        extras.extend(found_extras)
    return NluInputs(layout.root, nlu_config, tuple(examples), tuple(extras), tuple(files))


def unseeded_components(inputs: NluInputs) -> list[str]:
    """Pipeline components that train from a random start without a fixed seed."""
    names = []
    for component in inputs.config.get("pipeline") or []:
        if not isinstance(component, dict):
            continue
        name = str(component.get("name", ""))
        if name in SEEDED_COMPONENTS and component.get(SEEDED_COMPONENTS[name]) is None:
            names.append(name)
    return names


# ---------------------------------------------------------------- folds


def _texts_by_intent(inputs: NluInputs) -> dict[str, list[str]]:
    by_intent: dict[str, list[str]] = defaultdict(list)
    for example in inputs.examples:
        if example.text not in by_intent[example.intent]:
            by_intent[example.intent].append(example.text)
    return by_intent


def _rank(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}\0{text}".encode()).hexdigest()


def cv_folds(
    inputs: NluInputs, folds: int, seed: int, *, reuse: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Text -> fold, stratified by intent, with a fixed seed.

    `reuse` is the other side's assignment: texts found there keep their fold,
    new texts go where their intent is thinnest, so both sides share folds.
    """
    reuse = reuse or {}
    by_intent = _texts_by_intent(inputs)
    assignment: dict[str, int] = {}
    for intent in sorted(by_intent):
        load = [0] * folds
        fresh = []
        for text in by_intent[intent]:
            if text in assignment:
                continue  # the same text under two intents: one fold for both
            if text in reuse:
                assignment[text] = reuse[text] % folds
                load[assignment[text]] += 1
            else:
                fresh.append(text)
        for text in sorted(fresh, key=lambda t: _rank(seed, t)):
            fold = min(range(folds), key=lambda f: (load[f], f))
            assignment[text] = fold
            load[fold] += 1
    return assignment


def split_halves(
    inputs: NluInputs, split: Mapping[str, int], training_fraction: float, seed: int
) -> dict[str, int]:
    """Text -> 0 (train) or 1 (test), keeping the split `rasa data split` made.

    `split` is that split (text -> 0 or 1). Texts it holds keep their half;
    texts it never saw fill each intent's test half up to its share, in
    seeded order.
    """
    by_intent = _texts_by_intent(inputs)
    assignment: dict[str, int] = {}
    for intent in sorted(by_intent):
        texts = [t for t in by_intent[intent] if t not in assignment]
        fresh = sorted((t for t in texts if t not in split), key=lambda t: _rank(seed, t))
        in_test = sum(1 for t in texts if split.get(t) == 1)
        want = round(len(texts) * (1 - training_fraction)) - in_test
        for text in texts:
            if text in split:
                assignment[text] = split[text]
        for index, text in enumerate(fresh):
            assignment[text] = 1 if index < want else 0
    return assignment


def check_enough_examples(inputs: NluInputs, needed: int, what: str, side: str) -> None:
    if not inputs.examples:
        files = ", ".join(str(f) for f in inputs.files) or "the data folder"
        raise FatalError(
            f"{side}: no NLU examples found in {files} under {inputs.root}; "
            "there is nothing to compare (add intents with examples, or check --data)."
        )
    counts = inputs.intent_counts()
    if len(counts) < 2:
        raise FatalError(
            f"{side}: only one intent ({next(iter(counts))}); an intent classifier needs at "
            "least two to be compared."
        )
    for intent, count in sorted(counts.items(), key=lambda kv: (kv[1], kv[0])):
        if count < needed:
            path, line = inputs.first_line_of(intent)
            raise LocatedError(
                path, line,
                f"{side}: intent '{intent}' has {count} example(s); {what} needs at least "
                f"{needed} per intent. Add examples or ask for fewer folds.",
            )


# ---------------------------------------------------------------- files


def nlu_yaml(examples: Sequence[NluExample], extras: Sequence[dict[str, Any]] = ()) -> str:
    """A Rasa 3 NLU file with these examples, grouped by intent, in canonical order."""
    by_intent: dict[str, list[NluExample]] = defaultdict(list)
    for example in sorted(examples, key=lambda e: (e.intent, e.text, e.raw)):
        by_intent[example.intent].append(example)
    parts = ['version: "3.1"\nnlu:\n']
    for intent, group in by_intent.items():
        # A literal block keeps entity markup and quotes exactly as written.
        lines = "".join(f"    - {e.raw}\n" for e in group)
        parts.append(f"- intent: {json.dumps(intent)}\n  examples: |\n{lines}")
    if extras:
        ordered = sorted(extras, key=lambda x: json.dumps(x, sort_keys=True))
        parts.append(yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True))
    return "".join(parts)


def partition_fingerprint(
    inputs: NluInputs, assignment: Mapping[str, int], mode: dict[str, Any], rasa_version: str
) -> str:
    """The cache key of one side's results: data, config, folds, mode and Rasa."""
    return _sha({
        "signature": inputs.signature(),
        "folds": sorted(assignment.items()),
        "mode": mode,
        "rasa": rasa_version,
    })
