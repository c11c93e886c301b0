"""What the agent prints while it works.

On a terminal, a long step shows one live line (step, elapsed time, the last
output line) that rewrites itself. Anywhere else (systemd's journal, a pipe),
every line is printed plainly with a timestamp. Every line goes through the
redactor (agent/secrets.py) first, so a secret never reaches the screen, a log
or the journal.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from agent.journal import StepStatus
from agent.secrets import Redactor


class Progress:
    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None,
                 redact: Redactor | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.redact = redact or Redactor()
        self.quiet = quiet
        self._step: str | None = None
        self._started = 0.0
        self._live = False

    def _write(self, text: str) -> None:
        if self.quiet:
            return
        self.stream.write(text)
        self.stream.flush()

    def _clear_live(self) -> None:
        if self._live:
            self._write("\r\033[K")
            self._live = False

    def info(self, message: str) -> None:
        self._clear_live()
        stamp = time.strftime("%H:%M:%S")
        self._write(f"{stamp} {self.redact(message)}\n")

    def step_started(self, release_id: int, name: str) -> None:
        self._step = name
        self._started = time.monotonic()
        self.info(f"release {release_id}: {name} ...")

    def line(self, text: str) -> None:
        text = self.redact(text).rstrip()
        if not text.strip():
            return
        if self.tty and self._step:
            elapsed = int(time.monotonic() - self._started)
            width = shutil.get_terminal_size((100, 20)).columns
            head = f"  [{self._step} {elapsed // 60}:{elapsed % 60:02d}] "
            self._write("\r\033[K" + (head + text.strip())[: max(width - 1, 20)])
            self._live = True
        elif self._step:
            self._write(f"  {self._step}: {text}\n")
        else:
            self.info(text)

    def step_finished(self, release_id: int, name: str, status: StepStatus, duration: float,
                      summary: str) -> None:
        self._step = None
        self.info(f"release {release_id}: {name} {status} in {duration:.1f} s: {summary}")
