"""What a check finds, and how findings are scoped, graded and printed."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    check: str
    message: str
    path: Path
    line: int
    # Every file whose change could have caused this; the finding is in scope
    # when any of them is among the changed files.
    involves: frozenset[Path] = frozenset()
    severity: str = ERROR

    def files(self) -> frozenset[Path]:
        return self.involves | {self.path}

    def render(self, base: Path | None = None) -> str:
        where = display_path(self.path, base)
        if self.line:
            where = f"{where}:{self.line}"
        tag = self.check if self.severity == ERROR else f"{self.check}, warn-only"
        return f"{where}: [{tag}] {self.message}"


def display_path(path: Path, base: Path | None = None) -> str:
    base = base or Path.cwd()
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return str(path)


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked_files: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def render(self, base: Path | None = None) -> str:
        """One line per problem, grouped by file, then a summary line."""
        lines: list[str] = []
        ordered = sorted(self.problems, key=lambda p: (str(p.path), p.line, p.check, p.message))
        current: Path | None = None
        for problem in ordered:
            if problem.path != current:
                if current is not None:
                    lines.append("")
                current = problem.path
            lines.append(problem.render(base))
        lines.extend(self.notes)
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        files = len({p.path for p in self.problems})
        if not self.problems:
            return f"rasa-validate: no problems ({self.checked_files} files checked)"
        return (
            f"rasa-validate: {len(self.errors)} error(s), {len(self.warnings)} warn-only "
            f"in {files} file(s)"
        )


def scoped(problems: Iterable[Problem], changed: frozenset[Path] | None) -> list[Problem]:
    """Keep findings that involve a changed file (all of them when None)."""
    if changed is None:
        return list(problems)
    return [p for p in problems if p.files() & changed]


def graded(
    problems: Iterable[Problem], warn_only: frozenset[str], skipped: frozenset[str]
) -> list[Problem]:
    out: list[Problem] = []
    for problem in problems:
        if problem.check in skipped:
            continue
        if problem.check in warn_only and problem.severity == ERROR:
            problem = Problem(
                problem.check, problem.message, problem.path, problem.line,
                problem.involves, WARNING,
            )
        out.append(problem)
    return out
