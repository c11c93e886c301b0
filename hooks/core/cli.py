"""One top-level error handler for every hook's `main`."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence

from hooks.core.errors import FatalError

Main = Callable[[Sequence[str] | None], int]


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
