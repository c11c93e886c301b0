"""Before-and-after NLU results: the comparison, its Markdown and JSON, the gate.

Everything here is pure: it takes the predictions of both sides and returns
data or text. The Markdown is meant to be posted as a PR or MR comment as is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hooks.nlu.metrics import Prediction, Scores, SideMetrics, side_metrics

MAX_EXAMPLES_PER_PAIR = 3


@dataclass(frozen=True)
class Side:
    label: str  # `abc1234 (merge base with main)`, `working tree`
    fingerprint: str
    cached: bool  # results came from the cache: nothing was trained
    predictions: tuple[Prediction, ...]


@dataclass(frozen=True)
class Delta:
    name: str
    before: float | None
    after: float | None

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


@dataclass(frozen=True)
class IntentRow:
    intent: str
    before: Scores | None
    after: Scores | None

    @property
    def f1_delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after.f1 - self.before.f1


@dataclass(frozen=True)
class ConfusedPair:
    truth: str
    predicted: str
    before: int
    after: int
    examples: tuple[str, ...]


@dataclass
class Comparison:
    mode: dict[str, Any]
    base: Side
    head: Side
    before: SideMetrics
    after: SideMetrics
    unchanged: bool  # both sides have the same NLU data and pipeline
    overall: list[Delta] = field(default_factory=list)
    intents: list[IntentRow] = field(default_factory=list)  # worst first
    confused_more: list[ConfusedPair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caveats a reviewer should read

    @property
    def changed_cells(self) -> set[tuple[str, str]]:
        cells = set(self.before.confusion) | set(self.after.confusion)
        before, after = self.before.confusion, self.after.confusion
        return {c for c in cells if before.get(c, 0) != after.get(c, 0)}


@dataclass(frozen=True)
class Thresholds:
    """Largest allowed drops, in F1 points (0.05 = five points); None: no limit."""

    max_macro_f1_drop: float | None = None
    max_intent_f1_drop: float | None = None


def _overall(before: SideMetrics, after: SideMetrics) -> list[Delta]:
    rows = [
        Delta("intent accuracy", before.accuracy, after.accuracy),
        Delta("intent macro F1", before.macro.f1, after.macro.f1),
        Delta("intent weighted F1", before.weighted.f1, after.weighted.f1),
        Delta("intent macro precision", before.macro.precision, after.macro.precision),
        Delta("intent macro recall", before.macro.recall, after.macro.recall),
    ]
    if before.entity_micro or after.entity_micro:
        def f1(scores: Scores | None) -> float | None:
            return scores.f1 if scores else None

        rows += [
            Delta("entity micro F1", f1(before.entity_micro), f1(after.entity_micro)),
            Delta("entity macro F1", f1(before.entity_macro), f1(after.entity_macro)),
            Delta("entity micro precision",
                  before.entity_micro.precision if before.entity_micro else None,
                  after.entity_micro.precision if after.entity_micro else None),
            Delta("entity micro recall",
                  before.entity_micro.recall if before.entity_micro else None,
                  after.entity_micro.recall if after.entity_micro else None),
        ]
    return rows


def _intent_rows(before: SideMetrics, after: SideMetrics) -> list[IntentRow]:
    names = sorted(set(before.intents) | set(after.intents))
    rows = [IntentRow(n, before.intents.get(n), after.intents.get(n)) for n in names]

    def worst_first(row: IntentRow) -> tuple[float, float, str]:
        delta = row.f1_delta
        after_f1 = row.after.f1 if row.after else 1.0
        return (delta if delta is not None else 0.0, after_f1, row.intent)

    return sorted(rows, key=worst_first)


def _confused_more(
    before: SideMetrics, after: SideMetrics, predictions: Sequence[Prediction]
) -> list[ConfusedPair]:
    pairs = []
    for (truth, predicted), count in after.confusion.items():
        was = before.confusion.get((truth, predicted), 0)
        if truth == predicted or count <= was:
            continue
        examples = tuple(
            str(p["text"]) for p in predictions
            if p["intent"] == truth and p["predicted"] == predicted
        )[:MAX_EXAMPLES_PER_PAIR]
        pairs.append(ConfusedPair(truth, predicted, was, count, examples))
    return sorted(pairs, key=lambda p: (-(p.after - p.before), p.truth, p.predicted))


def build(
    mode: dict[str, Any], base: Side, head: Side, *, unchanged: bool,
    notes: Sequence[str] = (),
) -> Comparison:
    before = side_metrics(base.predictions)
    after = side_metrics(head.predictions)
    return Comparison(
        mode=mode,
        base=base,
        head=head,
        before=before,
        after=after,
        unchanged=unchanged,
        overall=_overall(before, after),
        intents=_intent_rows(before, after),
        confused_more=_confused_more(before, after, head.predictions),
        notes=list(notes),
    )


# ----------------------------------------------------------------- gate


def gate(comparison: Comparison, thresholds: Thresholds) -> list[str]:
    """Why the change must not go on; empty when it may.

    Intents that exist on one side only (new or removed on purpose) have no
    F1 delta and never fail the gate.
    """
    failures = []
    if thresholds.max_macro_f1_drop is not None:
        drop = comparison.before.macro.f1 - comparison.after.macro.f1
        if drop > thresholds.max_macro_f1_drop + 1e-9:
            failures.append(
                f"intent macro F1 dropped by {drop:.3f} "
                f"({comparison.before.macro.f1:.3f} -> {comparison.after.macro.f1:.3f}); "
                f"allowed: {thresholds.max_macro_f1_drop:.3f}"
            )
    if thresholds.max_intent_f1_drop is not None:
        for row in comparison.intents:
            delta = row.f1_delta
            if delta is None or row.before is None or row.after is None:
                continue
            if not row.before.support or not row.after.support:
                continue
            if -delta > thresholds.max_intent_f1_drop + 1e-9:
                failures.append(
                    f"intent '{row.intent}' F1 dropped by {-delta:.3f} "
                    f"({row.before.f1:.3f} -> {row.after.f1:.3f}); "
                    f"allowed: {thresholds.max_intent_f1_drop:.3f}"
                )
    return failures


# ----------------------------------------------------------------- rendering


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _signed(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) < 0.0005:
        return "0.000"
    return f"{value:+.3f}"


def _delta_cell(value: float | None) -> str:
    text = _signed(value)
    if value is not None and value <= -0.0005:
        return f"**{text}** 🔻"
    return text


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def describe_mode(mode: dict[str, Any]) -> str:
    if mode["kind"] == "cv":
        return (f"{mode['folds']}-fold cross-validation, seed {mode['seed']}; "
                "each example is in the same fold on both sides")
    return (f"train/test split by `rasa data split nlu` (training fraction "
            f"{mode['training_fraction']}, seed {mode['seed']}), made once on the base "
            "and reused for the change")


def markdown(comparison: Comparison, failures: Sequence[str] | None = None) -> str:
    c = comparison
    out = [
        "## NLU comparison",
        "",
        f"**Before:** {c.base.label}{' (cached results)' if c.base.cached else ''}  ",
        f"**After:** {c.head.label}{' (cached results)' if c.head.cached else ''}  ",
        f"**Mode:** {describe_mode(c.mode)}  ",
        f"**Test examples:** {c.before.examples} before, {c.after.examples} after",
        "",
    ]
    if c.unchanged:
        out += ["NLU data and pipeline are unchanged, so every delta is zero.", ""]
    out += [f"> ⚠️ {_md_escape(note)}" for note in c.notes] + ([""] if c.notes else [])
    if failures is not None:
        if failures:
            out += ["### ❌ Gate failed", ""] + [f"- {_md_escape(f)}" for f in failures] + [""]
        else:
            out += ["### ✅ Gate passed", ""]
    out += ["### Overall", "", "| metric | before | after | delta |", "|---|---:|---:|---:|"]
    for row in c.overall:
        out.append(f"| {row.name} | {_num(row.before)} | {_num(row.after)} | "
                   f"{_delta_cell(row.delta)} |")
    out += [
        "",
        "### Per intent (worst first)",
        "",
        "| intent | support | precision | recall | F1 | F1 delta |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for intent in c.intents:
        b, a = intent.before, intent.after

        def pair(attr: str, b: Scores | None = b, a: Scores | None = a) -> str:
            return (f"{_num(getattr(b, attr) if b else None)} → "
                    f"{_num(getattr(a, attr) if a else None)}")

        support = f"{b.support if b else '—'} → {a.support if a else '—'}"
        out.append(f"| {_md_escape(intent.intent)} | {support} | {pair('precision')} | "
                   f"{pair('recall')} | {pair('f1')} | {_delta_cell(intent.f1_delta)} |")
    out += ["", "### Intents confused more often than before", ""]
    if not c.confused_more:
        out.append("None: no pair of intents is confused more often than before.")
    else:
        out += ["| true intent | predicted as | before | after | examples |",
                "|---|---|---:|---:|---|"]
        for p in c.confused_more:
            examples = "<br>".join(f"“{_md_escape(e)}”" for e in p.examples)
            out.append(f"| {_md_escape(p.truth)} | {_md_escape(p.predicted)} | {p.before} | "
                       f"{p.after} | {examples} |")
    out += ["", "<sub>Made by rasa-nlu-compare (rasa-gitops).</sub>", ""]
    return "\n".join(out)


def as_json(comparison: Comparison, failures: Sequence[str] | None = None) -> dict[str, Any]:
    c = comparison

    def scores(s: Scores | None) -> dict[str, Any] | None:
        return asdict(s) if s else None

    def side(metrics: SideMetrics, s: Side) -> dict[str, Any]:
        return {
            "label": s.label,
            "fingerprint": s.fingerprint,
            "cached": s.cached,
            "examples": metrics.examples,
            "intent": {
                "accuracy": metrics.accuracy,
                "macro_avg": scores(metrics.macro),
                "weighted_avg": scores(metrics.weighted),
                "per_intent": {k: asdict(v) for k, v in metrics.intents.items()},
            },
            "entity": {
                "micro_avg": scores(metrics.entity_micro),
                "macro_avg": scores(metrics.entity_macro),
                "per_entity": {k: asdict(v) for k, v in metrics.entities.items()},
            },
            "confusion": [
                {"truth": t, "predicted": p, "count": n}
                for (t, p), n in sorted(metrics.confusion.items())
            ],
        }

    return {
        "mode": c.mode,
        "unchanged": c.unchanged,
        "notes": list(c.notes),
        "before": side(c.before, c.base),
        "after": side(c.after, c.head),
        "overall": [
            {"metric": d.name, "before": d.before, "after": d.after, "delta": d.delta}
            for d in c.overall
        ],
        "intents": [
            {"intent": r.intent, "before": scores(r.before), "after": scores(r.after),
             "f1_delta": r.f1_delta}
            for r in c.intents
        ],
        "confused_more": [asdict(p) for p in c.confused_more],
        "changed_cells": [{"truth": t, "predicted": p} for t, p in sorted(c.changed_cells)],
        "gate": None if failures is None else {"passed": not failures, "failures": list(failures)},
    }


def json_text(comparison: Comparison, failures: Sequence[str] | None = None) -> str:
    return json.dumps(as_json(comparison, failures), indent=2, ensure_ascii=False) + "\n"
