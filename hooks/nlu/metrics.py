"""Intent and entity metrics from pooled predictions, in pure Python.

Both sides are scored by this one function from the raw predictions the
runner returns, so a delta can only come from the models, never from two
report formats. Intent scores follow scikit-learn's classification report
(labels: every intent seen as truth or as prediction; a label never
predicted has precision 0). Entities are scored by exact span: an entity
counts as found when its type, start and end all match.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Prediction = Mapping[str, Any]


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class SideMetrics:
    examples: int
    accuracy: float
    macro: Scores
    weighted: Scores
    intents: dict[str, Scores]
    confusion: dict[tuple[str, str], int]  # (truth, predicted) -> count
    entity_micro: Scores | None = None
    entity_macro: Scores | None = None
    entities: dict[str, Scores] = field(default_factory=dict)


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _scores(tp: int, fp: int, fn: int) -> Scores:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return Scores(precision, recall, _f1(precision, recall), tp + fn)


def _average(per_label: Mapping[str, Scores], weighted: bool) -> Scores:
    total = sum(s.support for s in per_label.values())
    if not per_label:
        return Scores(0.0, 0.0, 0.0, 0)
    if weighted:
        if total == 0:
            return Scores(0.0, 0.0, 0.0, 0)
        weights = {k: s.support / total for k, s in per_label.items()}
    else:
        weights = {k: 1 / len(per_label) for k in per_label}
    return Scores(
        sum(weights[k] * s.precision for k, s in per_label.items()),
        sum(weights[k] * s.recall for k, s in per_label.items()),
        sum(weights[k] * s.f1 for k, s in per_label.items()),
        total,
    )


def intent_scores(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, Scores], float]:
    """Per-intent scores and accuracy from (truth, predicted) pairs."""
    labels = sorted({t for t, _ in pairs} | {p for _, p in pairs})
    per_label = {}
    for label in labels:
        tp = sum(1 for t, p in pairs if t == label and p == label)
        fp = sum(1 for t, p in pairs if t != label and p == label)
        fn = sum(1 for t, p in pairs if t == label and p != label)
        per_label[label] = _scores(tp, fp, fn)
    accuracy = sum(1 for t, p in pairs if t == p) / len(pairs) if pairs else 0.0
    return per_label, accuracy


def _span_set(spans: Iterable[Sequence[Any]]) -> Counter[tuple[str, Any, Any]]:
    return Counter((str(s[0]), s[1], s[2]) for s in spans)


def entity_scores(predictions: Sequence[Prediction]) -> dict[str, tuple[int, int, int]]:
    """Entity type -> (tp, fp, fn) over all examples, exact span match."""
    counts: dict[str, list[int]] = {}
    for prediction in predictions:
        gold = _span_set(prediction.get("entities") or [])
        found = _span_set(prediction.get("predicted_entities") or [])
        for span in gold | found:
            row = counts.setdefault(span[0], [0, 0, 0])
            hit = min(gold[span], found[span])
            row[0] += hit
            row[1] += found[span] - hit
            row[2] += gold[span] - hit
    return {name: (row[0], row[1], row[2]) for name, row in counts.items()}


def side_metrics(predictions: Sequence[Prediction]) -> SideMetrics:
    pairs = [(str(p["intent"]), str(p["predicted"])) for p in predictions]
    per_intent, accuracy = intent_scores(pairs)
    metrics = SideMetrics(
        examples=len(pairs),
        accuracy=accuracy,
        macro=_average(per_intent, weighted=False),
        weighted=_average(per_intent, weighted=True),
        intents=per_intent,
        confusion=dict(Counter(pairs)),
    )
    entity_counts = entity_scores(predictions)
    if entity_counts:
        metrics.entities = {name: _scores(*c) for name, c in sorted(entity_counts.items())}
        total = [sum(c[i] for c in entity_counts.values()) for i in range(3)]
        metrics.entity_micro = _scores(*total)
        metrics.entity_macro = _average(metrics.entities, weighted=False)
    return metrics
