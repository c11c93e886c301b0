"""The one error type that hooks turn into a clean message and exit 1."""

from __future__ import annotations

from pathlib import Path


class FatalError(Exception):
    """A problem the user must fix before any check can run."""


class LocatedError(FatalError):
    """A FatalError that points at a file and, where known, a line."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        return f"{where}: {self.message}"
