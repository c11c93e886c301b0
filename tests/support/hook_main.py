"""Call a hook's `main` in-process from a bot folder, as pre-commit would run it there."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


def call_main(
    main: Callable[[Sequence[str] | None], int], folder: Path, args: Sequence[str],
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str]:
    """(exit code, stdout + stderr) of `main(args)` run with `folder` as cwd."""
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        code = main(list(args))
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    return code, captured.out + captured.err
