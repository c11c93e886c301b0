"""The one writer of the deploy agent's YAML config in tests.

Tests used to write the config as f-string YAML, each its own way, and made
variants by string surgery on that text. Here a config is keyword arguments:
top-level keys as values, blocks (pipeline, action_server, image, model, smoke,
nlu_gate, environments) as dicts. `like=` starts from another config file, so
a variant names only what it changes. The schema and its defaults live in
agent/config.py; this writer adds only `work_dir: work` (beside the file) when
no work_dir is given, and `model.serving: put_model` when none is given.

    agent_config(root / "agent.yml", repo=bare, rasa_command=rasa_bin,
                 pipeline={"test_stories": "tests/none_*.yml"},
                 model={"url": f"http://127.0.0.1:{port}"})
    agent_config(root / "agent-manual.yml", like=root / "agent.yml",
                 environments={"production": {"promote": "manual"}})
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import yaml

DEFAULT_NAME = "agent.yml"
# A second environment's own ports, apart from the defaults production takes
# (agent/environments.py refuses two environments on one port).
STAGING_PLACE = {"action_server": {"port": 5155}, "model": {"url": "http://127.0.0.1:5105"}}


def _plain(value: Any) -> Any:
    """Paths become strings, recursively, so the YAML holds only plain scalars."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _merge(base: dict[str, Any], keys: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `keys` laid over it; dicts merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in keys.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def agent_config_data(*, like: Path | None = None, **keys: Any) -> dict[str, Any]:
    """The config as a dict: `like`'s content (or `work_dir: work`) with `keys` over it."""
    base: dict[str, Any] = {}
    if like is not None:
        base = yaml.safe_load(Path(like).read_text(encoding="utf-8")) or {}
    data = _merge(base, _plain(keys))
    data.setdefault("work_dir", "work")
    # The agent's default is blue/green serving: a new Rasa process per switch
    # (15 s or more each, even with a light model). Tests that aren't about
    # serving use the one-server path; blue/green has its own tests, which ask
    # for it (model={"serving": "blue_green"}).
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    # (model_server mode has no serving of its own: its pullers load the models.)
    if model.get("target") != "model_server":
        data["model"] = {"serving": "put_model", **model}
    if "repo" not in data:
        raise ValueError("an agent config needs repo=... (agent/config.py requires it)")
    return data


def agent_config(path: Path, *, like: Path | None = None, **keys: Any) -> Path:
    """Write an agent config to `path` (a folder gets `agent.yml`); returns the file.

    `keys` are the config's keys (`repo=`, `branch=`, `rasa_command=`, ...) and
    blocks as dicts (`model={"manage_server": False}`); `like` is a config file
    to start from. Paths may be given as `Path`.
    """
    target = Path(path)
    if target.is_dir():
        target = target / DEFAULT_NAME
    data = agent_config_data(like=like, **keys)
    target.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False),
                      encoding="utf-8")
    return target
