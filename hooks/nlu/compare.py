"""The engine of rasa-nlu-compare: train and test both sides on the same folds.

Rasa's CI/CD guide asks for a comparison whenever NLU data or the pipeline
changes, and notes that `rasa test nlu` gives no verdict. `compare` trains and
tests both sides on the same folds (or the same `rasa data split`);
`write_report` writes the Markdown for the PR, a JSON twin and a PNG heat map.

The hook and the deploy agent's NLU gate share it through pure calls:
`compare(base_tree, head_tree, options)` and `gate(comparison, thresholds)`.

Training runs in Rasa's own Python (`hooks/nlu/runner.py`), one process for
everything that is not cached: each side's results are cached by the
fingerprint of its NLU data, pipeline, folds and Rasa version, so an
unchanged base is never retrained.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooks.core.errors import FatalError
from hooks.core.process import rasa_python, run, run_rasa
from hooks.nlu import data as nlu_data
from hooks.nlu.data import NluExample, NluInputs
from hooks.nlu.heatmap import MISSING as HEATMAP_MISSING
from hooks.nlu.heatmap import draw as draw_heatmap
from hooks.nlu.heatmap import matplotlib_available
from hooks.nlu.metrics import Prediction
from hooks.nlu.report import Comparison, Side, build, json_text, markdown

RUNNER = Path(__file__).with_name("runner.py")
REPORT_MD = "nlu_comparison.md"
REPORT_JSON = "nlu_comparison.json"
HEATMAP_PNG = "nlu_confusion_heatmap.png"
DEFAULT_OUT = Path("results") / "nlu-compare"
DEFAULT_CACHE = Path(".rasa") / "nlu-compare"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    folds: int = 5
    split: bool = False  # the train/test split approach instead of cross-validation
    training_fraction: float = 0.8
    seed: int = 42
    config: str | None = None  # relative to each tree, as in the project
    data: tuple[str, ...] = ("data",)
    cache_dir: Path | None = None  # default: <head_tree>/.rasa/nlu-compare
    base_label: str = "base"
    head_label: str = "working tree"

    @property
    def mode(self) -> dict[str, Any]:
        if self.split:
            return {"kind": "split", "training_fraction": self.training_fraction,
                    "seed": self.seed}
        return {"kind": "cv", "folds": self.folds, "seed": self.seed}


def rasa_version(python: str) -> str:
    done = run([python, str(RUNNER), "--version"])
    if not done.ok:
        raise FatalError(f"{python} cannot import Rasa:\n{done.tail(10)}")
    return done.output.strip().splitlines()[-1]


# ----------------------------------------------------------------- the comparison


def _load(tree: Path, options: Options, label: str) -> NluInputs:
    try:
        return nlu_data.load_nlu_inputs(tree, config=options.config, data=options.data)
    except FatalError as exc:
        text = str(exc).replace(str(tree.resolve()) + os.sep, "")
        raise FatalError(f"{label}: {text}") from None


def nlu_changed(base_tree: Path, head_tree: Path, options: Options) -> bool:
    """Whether NLU data or the NLU pipeline differ (PyYAML only, no Rasa)."""
    base = _load(base_tree, options, options.base_label)
    head = _load(head_tree, options, options.head_label)
    return base.signature() != head.signature()


def _check(inputs: NluInputs, options: Options, label: str) -> None:
    if options.split:
        nlu_data.check_enough_examples(
            inputs, nlu_data.MIN_EXAMPLES_FOR_SPLIT, "a train/test split", label
        )
    else:
        if options.folds < 2:
            raise FatalError(f"--folds must be at least 2, not {options.folds}.")
        nlu_data.check_enough_examples(
            inputs, options.folds, f"{options.folds}-fold cross-validation", label
        )


def _digest(content: Any) -> str:
    blob = json.dumps(content, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content), encoding="utf-8")
    partial.replace(path)  # a killed run never leaves half a cache entry


def _rasa_split(base: NluInputs, options: Options, version: str, cache: Path) -> dict[str, int]:
    """The base's train/test split, made once by `rasa data split nlu` and kept."""
    key = _digest([base.signature(), options.training_fraction, options.seed, version])
    cached = cache / f"split-{key}.json"
    if cached.is_file():
        return {str(k): int(v) for k, v in json.loads(cached.read_text("utf-8")).items()}
    with tempfile.TemporaryDirectory(prefix="nlu-split-") as tmp:
        source = Path(tmp) / "nlu.yml"
        source.write_text(nlu_data.nlu_yaml(base.examples, base.extras), encoding="utf-8")
        out = Path(tmp) / "split"
        done = run_rasa(
            ["data", "split", "nlu", "--nlu", str(source), "--out", str(out),
             "--training-fraction", str(options.training_fraction),
             "--random-seed", str(options.seed)],
            cwd=Path(tmp),
        )
        if not done.ok:
            raise FatalError(f"`rasa data split nlu` failed on the base:\n{done.tail(15)}")
        split: dict[str, int] = {}
        for half, pattern in ((0, "train*.yml"), (1, "test*.yml")):
            for path in sorted(out.glob(pattern)):
                for example in nlu_data.read_nlu_file(path)[0]:
                    split[example.text] = half
    if 1 not in split.values():
        raise FatalError("`rasa data split nlu` put no example in the test set; "
                         "lower --training-fraction or add examples.")
    _write_json(cached, split)
    return split


def _runs(
    side: str, inputs: NluInputs, assignment: dict[str, int], options: Options, folder: Path
) -> list[dict[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yml"
    config.write_text(json.dumps(inputs.config), encoding="utf-8")  # JSON is YAML
    parts = [1] if options.split else list(range(options.folds))
    runs = []
    for part in parts:
        def in_test(e: NluExample, part: int = part) -> bool:
            return assignment[e.text] == part

        test = [e for e in inputs.examples if in_test(e)]
        train = [e for e in inputs.examples if not in_test(e)]
        if not test or not train:
            continue
        name = f"{side}-{'split' if options.split else f'fold{part}'}"
        (folder / f"{name}-train.yml").write_text(
            nlu_data.nlu_yaml(train, inputs.extras), encoding="utf-8")
        (folder / f"{name}-test.yml").write_text(nlu_data.nlu_yaml(test), encoding="utf-8")
        runs.append({"id": name, "config": str(config),
                     "train": str(folder / f"{name}-train.yml"),
                     "test": str(folder / f"{name}-test.yml")})
    return runs


def _train_and_test(
    pending: dict[str, tuple[NluInputs, dict[str, int]]], options: Options, python: str,
    log: Log,
) -> dict[str, list[Prediction]]:
    """Every side that is not cached, in one Rasa process."""
    with tempfile.TemporaryDirectory(prefix="nlu-compare-") as tmp:
        workdir = Path(tmp)
        runs: dict[str, list[dict[str, str]]] = {}
        for side, (inputs, assignment) in pending.items():
            runs[side] = _runs(side, inputs, assignment, options, workdir / side)
        job = {"workdir": str(workdir), "runs": [r for rs in runs.values() for r in rs]}
        (workdir / "job.json").write_text(json.dumps(job), encoding="utf-8")
        log(f"training and testing {len(job['runs'])} NLU model(s) for "
            f"{' and '.join(pending)} with {python}")
        # Rasa's training cache would only store fold models we throw away.
        done = run([python, str(RUNNER), str(workdir / "job.json"), str(workdir / "out.json")],
                   cwd=workdir, env={"RASA_MAX_CACHE_SIZE": "0"})
        if not done.ok or not (workdir / "out.json").is_file():
            raise FatalError(f"Rasa could not train or test the NLU model:\n{done.tail(20)}")
        result = json.loads((workdir / "out.json").read_text("utf-8"))
    by_id = {r["id"]: r["predictions"] for r in result["runs"]}
    return {side: [p for r in rs for p in by_id[r["id"]]] for side, rs in runs.items()}


def compare(
    base_tree: Path, head_tree: Path, options: Options | None = None, *, log: Log | None = None
) -> Comparison:
    """Compare the NLU model of `base_tree` with that of `head_tree` (bot folders).

    Raises FatalError on bad input (unparsable data, too few examples, no NLU
    data, Rasa failing); never returns an empty comparison.
    """
    options = options or Options()
    say: Log = log or (lambda _: None)
    base = _load(base_tree, options, options.base_label)
    head = _load(head_tree, options, options.head_label)
    _check(base, options, options.base_label)
    _check(head, options, options.head_label)
    cache = options.cache_dir or (head_tree / DEFAULT_CACHE)
    python = rasa_python()
    version = rasa_version(python)

    if options.split:
        split = _rasa_split(base, options, version, cache)
        base_parts = nlu_data.split_halves(base, split, options.training_fraction, options.seed)
        head_parts = nlu_data.split_halves(head, split, options.training_fraction, options.seed)
    else:
        base_parts = nlu_data.cv_folds(base, options.folds, options.seed)
        head_parts = nlu_data.cv_folds(head, options.folds, options.seed, reuse=base_parts)

    sides = {"base": (base, base_parts), "head": (head, head_parts)}
    prints = {
        name: nlu_data.partition_fingerprint(inputs, parts, options.mode, version)
        for name, (inputs, parts) in sides.items()
    }
    found: dict[str, list[Prediction]] = {}
    for name, fingerprint in prints.items():
        entry = cache / f"results-{fingerprint}.json"
        if entry.is_file():
            found[name] = json.loads(entry.read_text("utf-8"))
    cached = {name: name in found for name in sides}
    if prints["head"] == prints["base"] and "base" in found:
        found["head"] = found["base"]
    pending = {name: sides[name] for name in sides if name not in found}
    if pending and prints["head"] == prints["base"]:
        pending.pop("head", None)  # the same model twice: train it once
    if pending:
        computed = _train_and_test(pending, options, python, say)
        for name, predictions in computed.items():
            _write_json(cache / f"results-{prints[name]}.json", predictions)
            found[name] = predictions
        found.setdefault("head", found["base"])
    for name, predictions in found.items():
        if not predictions:
            raise FatalError(f"{name}: Rasa returned no test predictions; nothing to compare.")
    mode = {**options.mode, "rasa": version}
    return build(
        mode,
        Side(options.base_label, prints["base"], cached["base"], tuple(found["base"])),
        Side(options.head_label, prints["head"], cached["head"], tuple(found["head"])),
        unchanged=base.signature() == head.signature(),
        notes=_notes(base, head, options),
    )


def _notes(base: NluInputs, head: NluInputs, options: Options) -> list[str]:
    notes = []
    sides = [(head, options.head_label)]
    if base.config != head.config:
        notes.append("the NLU pipeline itself changed (recipe, language or pipeline).")
        sides.insert(0, (base, options.base_label))
    for inputs, label in sides:
        unseeded = nlu_data.unseeded_components(inputs)
        if unseeded:
            notes.append(f"{label}: {', '.join(unseeded)} has no fixed random_seed, so part "
                         "of any delta is training noise; set one in config.yml.")
    return notes


def write_report(
    comparison: Comparison, out: Path, failures: Sequence[str] | None = None, *,
    heatmap: bool = True,
) -> tuple[list[Path], str | None]:
    """Write Markdown, JSON and (when matplotlib is there) the PNG into `out`.

    Returns the written files and, when the heat map was skipped, why.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = [out / REPORT_MD, out / REPORT_JSON]
    written[0].write_text(markdown(comparison, failures), encoding="utf-8")
    written[1].write_text(json_text(comparison, failures), encoding="utf-8")
    if not heatmap:
        return written, None
    if not matplotlib_available():
        return written, HEATMAP_MISSING
    written.append(draw_heatmap(comparison, out / HEATMAP_PNG))
    return written, None
