"""A bot change whose `rasa train` takes as long as a test needs, at no CPU cost.

The supersede and rollback-during-training tests need a release that is really
training (a real `rasa train`, not a reused model) for a known time. A custom
component of the bot's own (`slow_training.py` at the bot's root, which Rasa
imports from the working directory) sleeps in `process_training_data` for the
`seconds` its config names, so the training lasts that long without a CPU
being busy, and a changed `seconds` is a changed config: never a reused model.
With a `gate` (a file path), it stops sleeping as soon as that file exists: a
test opens the gate once it has seen what it needed while the release trained.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from agent.journal import Journal, Release

MODULE = "slow_training.py"

SOURCE = '''\
"""Training sleeps `seconds`, or until the file `gate` exists: the agent's tests
need a training that lasts."""
import os
import time
from typing import Any, Dict, List, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False
)
class SlowTraining(GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"seconds": 30, "gate": ""}

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage,
               resource: Resource, execution_context: ExecutionContext) -> "SlowTraining":
        return cls(config)

    def __init__(self, config: Dict[Text, Any]) -> None:
        self.seconds = float(config["seconds"])
        self.gate = str(config["gate"])

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline and not (self.gate and os.path.exists(self.gate)):
            time.sleep(0.1)
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        return messages
'''

TOKENIZER = "  - name: WhitespaceTokenizer\n"


def make_training_slow(bot: Path, seconds: float, gate: Path | None = None) -> str:
    """Add the sleeping component to `bot` (after its tokenizer); the old config.
    `gate`: an absolute path whose file, once made, ends the sleep early."""
    (bot / MODULE).write_text(SOURCE, encoding="utf-8")
    config = bot / "config.yml"
    before = config.read_text(encoding="utf-8")
    assert TOKENIZER in before, before
    gated = f"\n    gate: {gate}" if gate is not None else ""
    config.write_text(before.replace(TOKENIZER, TOKENIZER + "  - name: slow_training.SlowTraining"
                                     f"\n    seconds: {seconds}{gated}\n"), encoding="utf-8")
    return before


def undo_slow_training(bot: Path, config: str) -> None:
    """Back to `config` (what `make_training_slow` returned), without the component."""
    (bot / MODULE).unlink(missing_ok=True)
    (bot / "config.yml").write_text(config, encoding="utf-8")


def training(journal: Callable[[], Journal], commit: str, timeout: float = 300) -> Release:
    """Wait until a release of `commit` runs its train step; that release.
    `journal` opens the agent's journal (each look opens and closes it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        opened = journal()
        try:
            for release in opened.releases_of_commit(commit):
                if any(s.name == "train" and s.status == "running"
                       for s in opened.steps(release.id)):
                    return release
        finally:
            opened.close()
        time.sleep(0.2)
    raise AssertionError(f"no release of {commit[:8]} started training")
