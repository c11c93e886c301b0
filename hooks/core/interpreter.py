"""Which Python runs a script: read from its `#!` line.

Shared by `process.rasa_python` (the hooks' code that must import Rasa) and the
agent's Rasa launcher (agent/targets/rasa_launch.py), which runs the `rasa`
script inside its own interpreter.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def shebang_python(program: str) -> str | None:
    """The interpreter a script's `#!` line names when it is a Python (through
    `/usr/bin/env python3` too), else None: not found, not a script, not Python."""
    found = shutil.which(program) or (program if Path(program).is_file() else None)
    if found is None:
        return None
    try:
        first = Path(found).read_bytes()[:256].split(b"\n", 1)[0].decode()
    except (OSError, UnicodeDecodeError):
        return None
    if not first.startswith("#!") or "python" not in first:
        return None
    words = first[2:].split()
    if Path(words[0]).name == "env" and len(words) > 1:
        return shutil.which(words[1])
    return words[0]
