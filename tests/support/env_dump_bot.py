"""A bot whose own code reports what it can see: the secrets test's spy.

The example bot (light config) plus a custom NLU component
(`components/env_dump.py`, in config.yml's pipeline) and action code that,
wherever they are imported (`rasa data validate`, `rasa train`, `rasa test`,
the Rasa server, `rasa run actions`, the action-code tests), write their
process's `os.environ`, `/proc/self/environ` and `/proc/self/cmdline` to a
file in the folder `$RGT_DUMP_DIR` names. That variable reaches them only
through the agent config's `pipeline.env` and `action_server.env`, so a dump
also proves those keys work.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.bots import deploy_repo

DUMP_VARIABLE = "RGT_DUMP_DIR"

DUMP_CODE = '''
import json as _json
import os as _os
import sys as _sys
import time as _time


def _dump_env(role):
    folder = _os.environ.get("RGT_DUMP_DIR")
    if not folder:
        return
    def read(name):
        try:
            with open(f"/proc/self/{name}", "rb") as f:
                return f.read().decode("utf-8", "replace").split("\\0")
        except OSError as exc:
            return [f"unreadable: {exc}"]
    record = {"role": role, "pid": _os.getpid(), "argv0": _sys.argv[:1],
              "environ": dict(_os.environ), "proc_environ": read("environ"),
              "cmdline": read("cmdline")}
    name = f"{role}-{_os.getpid()}-{_time.monotonic_ns()}.json"
    _os.makedirs(folder, exist_ok=True)  # in an action server's container: its own /tmp
    with open(_os.path.join(folder, name), "w", encoding="utf-8") as f:
        _json.dump(record, f)
'''

COMPONENT = DUMP_CODE + '''

_dump_env("component")

from typing import Any, Dict, List, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER],
                          is_trainable=False)
class EnvDump(GraphComponent):
    """Changes nothing; reports its process's environment when used."""

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage,
               resource: Resource, execution_context: ExecutionContext) -> "EnvDump":
        _dump_env("component-create")
        return cls()

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        return messages
'''

ACTION_TEST = DUMP_CODE + '''
_dump_env("action-test")
print("action tests: environment reported")
'''


def env_dump_repo(root: Path) -> tuple[Path, Path]:
    """(bare repo, source folder) of the spy bot, committed but not pushed."""
    bare, src = deploy_repo(root)
    add_spy(src)
    return bare, src


def add_spy(src: Path) -> None:
    """Make the example bot in `src` the spy bot (the Docker fault host's bot too)."""
    (src / "components").mkdir()
    (src / "components" / "__init__.py").write_text("", encoding="utf-8")
    (src / "components" / "env_dump.py").write_text(COMPONENT, encoding="utf-8")
    config = (src / "config.yml").read_text(encoding="utf-8")
    marker = "  - name: WhitespaceTokenizer\n"
    assert marker in config
    (src / "config.yml").write_text(
        config.replace(marker, marker + "  - name: components.env_dump.EnvDump\n"),
        encoding="utf-8")
    actions = src / "actions" / "actions.py"
    code = actions.read_text(encoding="utf-8")
    actions.write_text(code + "\n" + DUMP_CODE + '\n_dump_env("action-server")\n',
                       encoding="utf-8")
    (src / "action_test.py").write_text(ACTION_TEST, encoding="utf-8")
