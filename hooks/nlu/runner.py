"""Train and test NLU models for rasa-nlu-compare, inside Rasa's own Python.

This file runs as a script in the interpreter that has Rasa (the one behind
the `rasa` command), never imported by the hooks: it needs TensorFlow, which
the hooks must not load. It imports nothing from `hooks`, so it works in any
environment that has Rasa 3.x.

One process trains and tests every fold of one side in turn. That is what
`rasa test nlu --cross-validation` does too, but with folds we made (Rasa's
own fold split is unseeded, so two runs never share folds).

    python runner.py JOB.json RESULT.json   # train + test each run of a job
    python runner.py --version              # print Rasa's version
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any


def _quiet() -> None:
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)
    for name in ("rasa", "tensorflow", "absl", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _spans(entities: Any) -> list[list[Any]]:
    spans = []
    for entity in entities or []:
        if isinstance(entity, dict) and "entity" in entity:
            spans.append([str(entity["entity"]), entity.get("start"), entity.get("end")])
    return sorted(spans, key=lambda s: (s[1] or 0, s[2] or 0, s[0]))


async def _predict(model: str, test_file: str) -> list[dict[str, Any]]:
    from rasa.core.agent import Agent
    from rasa.core.channels.channel import UserMessage
    from rasa.nlu.classifiers import fallback_classifier
    from rasa.nlu.test import PRETRAINED_EXTRACTORS, _remove_entities_of_extractors
    from rasa.shared.nlu.training_data.loading import load_data

    processor = Agent.load(model).processor
    test_data = load_data(test_file)
    predictions = []
    for example in test_data.nlu_examples:
        text = example.get("text")
        result = await processor.parse_message(
            UserMessage(text=text), only_output_properties=False
        )
        _remove_entities_of_extractors(result, PRETRAINED_EXTRACTORS)
        if fallback_classifier.is_fallback_classifier_prediction(result):
            # Score what the classifier thought, as `rasa test nlu` does.
            result = fallback_classifier.undo_fallback_prediction(result)
        intent = result.get("intent") or {}
        predictions.append({
            "text": text,
            "intent": example.get("intent") or "",
            "predicted": intent.get("name") or "",
            "confidence": float(intent.get("confidence") or 0.0),
            "entities": _spans(example.get("entities")),
            "predicted_entities": _spans(result.get("entities")),
        })
    return predictions


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    import rasa.model_training
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.ERROR)

    results = []
    workdir = Path(job["workdir"])
    for run in job["runs"]:
        model = rasa.model_training.train_nlu(
            run["config"], run["train"], str(workdir / "models"), fixed_model_name=run["id"]
        )
        if not model:
            raise SystemExit(f"training failed for {run['id']} ({run['train']})")
        predictions = asyncio.run(_predict(model, run["test"]))
        Path(model).unlink(missing_ok=True)  # models are not kept; results are
        results.append({"id": run["id"], "predictions": predictions})
    return {"rasa_version": rasa_version(), "runs": results}


def rasa_version() -> str:
    from importlib.metadata import version

    return version("rasa")


def main(argv: list[str]) -> int:
    if argv == ["--version"]:
        print(rasa_version())
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    _quiet()
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    # Rasa keeps its training cache in ./.rasa; keep it inside the job's folder.
    os.chdir(job["workdir"])
    result = run_job(job)
    Path(argv[1]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
