"""The one error type hooks raise, and the exit-code handler every `main` shares.

A hook either finds problems (exit 1, listed), cannot run (FatalError: one
clean message, exit 1), is interrupted (130) or hits a bug (2, one line, no
traceback). Keeping the type and its handler together means there is one place
that decides what the user sees when a hook stops.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Main = Callable[[Sequence[str] | None], int]


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


def fatal_errors_to_exit_codes(prog: str) -> Callable[[Main], Main]:
    """FatalError -> its message and exit 1; Ctrl-C -> 130; anything else -> a
    one-line internal error (exit 2) instead of a traceback."""

    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def wrapped(argv: Sequence[str] | None = None) -> int:
            try:
                return main(argv)
            except FatalError as exc:
                print(f"{prog}: {exc}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            except Exception as exc:
                print(
                    f"{prog}: internal error: {type(exc).__name__}: {exc}. "
                    "Please report this with the file that caused it.",
                    file=sys.stderr,
                )
                return 2

        return wrapped

    return wrap
