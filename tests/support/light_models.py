"""Two variants of the example bot, trained once per test run with the light config.

The blue/green tests switch between two models and must tell which one
answers: each variant greets with its own text. Light components (no
TensorFlow) keep each training near 10 s and each server start short; the
DIET/TED stall is the integrator's latency test, not these mechanics.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tests.support.bots import LIGHT_CONFIG, copy_bot
from tests.support.paths import COFFEEBOT

GREETINGS = {"one": "Hi from model one!", "two": "Hi from model two!"}
DEFAULT_GREETING = "Hi! Coffee, or opening hours?"  # examples/coffeebot/domain.yml


@functools.cache
def light_coffeebots(rasa: str) -> dict[str, tuple[Path, Path]]:
    """{variant: (bot folder, model file)}, trained once per process with `rasa`."""
    root = Path(tempfile.mkdtemp(prefix="light-coffeebots-"))
    atexit.register(shutil.rmtree, root, True)
    built: dict[str, tuple[Path, Path]] = {}
    for variant, greeting in GREETINGS.items():
        bot = copy_bot(COFFEEBOT, root / variant)
        (bot / "config.yml").write_text(LIGHT_CONFIG, encoding="utf-8")
        domain = bot / "domain.yml"
        text = domain.read_text(encoding="utf-8")
        assert DEFAULT_GREETING in text
        domain.write_text(text.replace(DEFAULT_GREETING, greeting), encoding="utf-8")
        done = subprocess.run(
            [rasa, "train", "--fixed-model-name", variant, "--out", "models"],
            cwd=bot, env={**os.environ, "RASA_TELEMETRY_ENABLED": "false"},
            capture_output=True, text=True, timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        built[variant] = (bot, bot / "models" / f"{variant}.tar.gz")
    return built


def corrupt_copy(model: Path, dest: Path) -> Path:
    """A model file whose metadata names a new model_id but holds nothing else."""
    with tarfile.open(model, "r:gz") as archive:
        member = archive.extractfile("metadata.json")
        assert member is not None
        metadata = json.load(member)
    metadata["model_id"] = "corrupt-model"
    (dest / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    path = dest / "corrupt.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        archive.add(dest / "metadata.json", arcname="metadata.json")
    return path
