"""Models trained by the hooks, kept outside the working tree and bounded in size.

Layout of the cache folder (default `$XDG_CACHE_HOME/rasa-gitops`, else
`~/.cache/rasa-gitops`; `RASA_GITOPS_CACHE_DIR` or `--cache-dir` override it):

    models/<fingerprint>.tar.gz   one model per trained tree (see fingerprint.py)
    rasa-cache/                   Rasa's own incremental training cache
                                  (RASA_CACHE_DIRECTORY), shared by all bots
    results/<project>/            the last `rasa test` output of each bot
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hooks.core.errors import FatalError
from hooks.project.model import Layout
from hooks.stories.train import TrainingFailed, train_model

DEFAULT_MAX_MODELS_MB = 1024


def default_cache_dir() -> Path:
    configured = os.environ.get("RASA_GITOPS_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "rasa-gitops"


@dataclass(frozen=True)
class ModelCache:
    root: Path
    max_bytes: int = DEFAULT_MAX_MODELS_MB * 1024 * 1024

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def rasa_cache(self) -> Path:
        return self.root / "rasa-cache"

    def results_for(self, project_key: str) -> Path:
        return self.root / "results" / project_key

    def model_path(self, fingerprint: str) -> Path:
        return self.models / f"{fingerprint}.tar.gz"

    def find(self, fingerprint: str) -> Path | None:
        """The cached model for this fingerprint, marked as just used."""
        path = self.model_path(fingerprint)
        if not path.is_file():
            return None
        path.touch()  # pruning drops the least recently used first
        return path

    def store(self, trained: Path, fingerprint: str) -> Path:
        self.models.mkdir(parents=True, exist_ok=True)
        target = self.model_path(fingerprint)
        # Same filesystem (the staging folder is inside the cache), so the
        # replace is atomic and a concurrent reader never sees half a model.
        os.replace(trained, target)
        self.prune(keep=target)
        return target

    def prune(self, keep: Path | None = None) -> list[Path]:
        """Drop least recently used models until the total fits max_bytes."""
        if not self.models.is_dir():
            return []
        models = sorted(self.models.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in models)
        removed: list[Path] = []
        for path in models:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    def train(
        self,
        layout: Layout,
        fingerprint: str,
        rasa: Sequence[str],
        *,
        data: Sequence[str],
        progress: Callable[[str], None] | None = None,
    ) -> Path:
        """Train a model for this tree with Rasa's incremental cache, then keep it."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="train-", dir=self.root))
        try:
            try:
                trained = train_model(rasa, layout, out=staging, name=fingerprint,
                                      cache_dir=self.rasa_cache, data=data,
                                      progress=progress)
            except TrainingFailed as exc:
                raise FatalError(
                    f"`rasa train` failed (exit {exc.done.returncode}); no model, so no story "
                    f"was tested. Fix the training data and commit again. Rasa said:\n"
                    f"{exc.done.tail(25)}"
                ) from None
            return self.store(trained, fingerprint)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
