"""The fingerprint of what a Rasa model is trained from.

Two trees with the same config, domain and training data (by content, not by
timestamp) train the same model, so a model made for one can be reused for the
other. Test stories are deliberately not part of it: they never change a model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from hooks.core.yaml_lines import read_text
from hooks.project.model import Layout

# Bump when the way models are trained changes (flags, layout of the cache).
SCHEME = "rasa-gitops-model-v1"


def rasa_identity(rasa: Sequence[str]) -> str:
    """Which Rasa a command runs: `rasa==3.6.21` when its environment tells,
    else the command itself.

    The version, not the path, so that a rebuilt hook environment (a new
    path each time) keeps using the models of the same Rasa.
    """
    executable = shutil.which(rasa[0]) if rasa else None
    if executable:
        env = Path(os.path.realpath(executable)).parent.parent
        found = sorted(env.glob("lib/python3*/site-packages/rasa-*.dist-info"))
        if found:
            return "rasa==" + found[-1].name.removeprefix("rasa-").removesuffix(".dist-info")
    return " ".join(rasa)


def tree_fingerprint(layout: Layout, rasa: str) -> str:
    """A short hex digest of config + domain + data content and the Rasa used.

    Rasa is part of it because another Rasa version trains another (possibly
    incompatible) model from the same files.
    """
    digest = hashlib.sha256()
    digest.update(SCHEME.encode())
    digest.update(b"\0rasa\0" + rasa.encode())
    for label, paths in (
        ("config", (layout.config,)),
        ("domain", layout.domain),
        ("data", layout.data),
    ):
        for path in sorted(paths):
            relative = path.relative_to(layout.root).as_posix()
            digest.update(f"\0{label}\0{relative}\0".encode())
            digest.update(read_text(path).encode())
    return digest.hexdigest()[:24]


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]
