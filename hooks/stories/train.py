"""THE way to train a Rasa model for a tree: the hook's model cache and the deploy
agent's train step both call `train_model`, so both train with the same flags,
the same files and Rasa's incremental cache in the same way."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from hooks.core.errors import FatalError
from hooks.core.process import Completed, run
from hooks.project.model import Layout

TRAIN_TIMEOUT_S = 3600.0
# Rasa's own default is 1000 MB; say it explicitly so the bound is documented.
RASA_TRAINING_CACHE_MB = 1000


class TrainingFailed(FatalError):
    """`rasa train` ended without a model; `done` holds what Rasa said."""

    def __init__(self, done: Completed) -> None:
        super().__init__(f"`rasa train` failed (exit {done.returncode}). "
                         f"Rasa said:\n{done.tail(25)}")
        self.done = done

    def last_line(self) -> str:
        return next((ln.strip() for ln in reversed(self.done.output.splitlines())
                     if ln.strip()), "")


def domain_arg(layout: Layout) -> Path:
    """The domain as Rasa wants it: the one file, or the folder of a split domain."""
    if len(layout.domain) == 1:
        return layout.domain[0]
    return Path(os.path.commonpath([str(p) for p in layout.domain]))


def train_model(
    rasa: Sequence[str],
    layout: Layout,
    *,
    out: Path,
    name: str,
    cache_dir: Path,
    data: Sequence[str] = ("data",),
    timeout: float = TRAIN_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
    background: bool = False,
) -> Path:
    """Train the tree at `layout` into `out/<name>.tar.gz` and return that path.

    `cache_dir` is Rasa's incremental training cache (RASA_CACHE_DIRECTORY): kept
    across trees, it retrains only the components whose inputs changed.
    `background=True` trains at the lowest CPU and IO priority (the deploy agent,
    beside a live bot); the hooks train at normal priority, for a waiting developer.
    Raises TrainingFailed when Rasa makes no model, FatalError on a timeout.
    """
    out.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        *rasa, "train",
        "--config", str(layout.config),
        "--domain", str(domain_arg(layout)),
        "--data", *data,
        "--out", str(out),
        "--fixed-model-name", name,
    ]
    env = {
        "RASA_CACHE_DIRECTORY": str(cache_dir),
        "RASA_MAX_CACHE_SIZE": str(RASA_TRAINING_CACHE_MB),
    }
    model = out / f"{name}.tar.gz"
    model.unlink(missing_ok=True)  # a model left by an earlier run is not this one
    done = run(argv, cwd=layout.root, env=env, timeout=timeout, stream=progress,
               background=background)
    if not done.ok or not model.is_file():
        raise TrainingFailed(done)
    return model
