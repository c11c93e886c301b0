"""The one seam that runs external commands (`rasa`, `git`, `pytest`).

Everything that starts a subprocess goes through `run` (a command waited for)
or `spawn` (a server left running), so that output capture, timeouts,
environment, priority and the "command not found" message live in one place.
How a command runs at background priority (`background=True`) is in
hooks/core/priority.py.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hooks.core.child_env import child_env
from hooks.core.errors import FatalError
from hooks.core.interpreter import shebang_python
from hooks.core.interrupt import waiting_for_child
from hooks.core.pid_identity import ours, stat_fields
from hooks.core.priority import (
    NICENESS,
    die_with_parent,
    in_background,
    launch_argv,
    set_group_niceness,
)


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


RASA_ENV = "RASA_GITOPS_RASA"
RASA_PYTHON_ENV = "RASA_GITOPS_RASA_PYTHON"
NO_RASA = (
    "Rasa is not installed in this hook's environment. Add "
    "`additional_dependencies: [rasa==3.6.21]` (with `language_version: python3.10`) "
    f"to the hook, or set {RASA_ENV} to a rasa executable."
)


def rasa_command() -> list[str]:
    """THE way to find Rasa: $RASA_GITOPS_RASA, else the `rasa` beside this Python
    (the hook's or the agent's own environment, even when it is not on PATH),
    else `rasa` on PATH.

    Raises FatalError saying how to add Rasa when none is found. A configured
    command is taken as given: running it says "command not found" if it is wrong.
    """
    configured = os.environ.get(RASA_ENV)
    if configured:
        return shlex.split(configured)
    beside = Path(sys.executable).parent / "rasa"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("rasa")
    if found:
        return [found]
    raise FatalError(NO_RASA)


def rasa_python(command: Sequence[str] | None = None) -> str:
    """The interpreter behind the Rasa command (for code that must import Rasa):
    $RASA_GITOPS_RASA_PYTHON, else the command itself when it is a python, else
    the interpreter of its `#!` line."""
    configured = os.environ.get(RASA_PYTHON_ENV)
    if configured:
        return configured
    command = list(command) if command is not None else rasa_command()
    found = shutil.which(command[0])
    if found and "python" in Path(found).name:
        return found  # RASA_GITOPS_RASA="python -m rasa"
    interpreter = shebang_python(command[0])
    if interpreter:
        return interpreter
    raise FatalError(
        f"cannot find the Python interpreter behind `{' '.join(command)}`; install Rasa "
        f"(pip install rasa==3.6.21) or set {RASA_PYTHON_ENV} to its python."
    )


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stream: object | None = None,
    inherit_env: bool = True,
    background: bool | None = None,
) -> Completed:
    """Run a command, capture stdout and stderr together, never raise on rc != 0.

    `stream`, when given, is a callable that receives each output line as it
    arrives (long steps show progress through it). `inherit_env=False` starts
    from an empty environment instead of ours. `background=True` runs it at the
    lowest CPU and IO priority (None: as `background_priority` says, else normal).
    """
    argv = [str(part) for part in argv]
    if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        raise FatalError(
            f"command not found: {argv[0]}. Install it, or point RASA_GITOPS_RASA "
            "(for rasa) at the right executable."
        )
    # inherit_env=False: only what `env` gives (the bot's own action-code tests).
    full_env = child_env(env, inherit=inherit_env)
    say = stream if callable(stream) else None
    lowered = in_background(background)
    launch = launch_argv(argv, lowered, say)
    # In the background: a session of its own at the lowest CPU weight (see
    # set_group_niceness), killed with us.
    try:
        proc = subprocess.Popen(
            launch,
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=lowered,
            preexec_fn=die_with_parent() if lowered else None,
        )
    except OSError as exc:
        raise FatalError(f"cannot run {argv[0]}: {exc.strerror}") from None
    if lowered:
        set_group_niceness(proc.pid, NICENESS)
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if callable(stream):
                stream(line.rstrip("\n"))

    # A reader thread keeps the timeout honest even when the child never
    # closes its output.
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        with waiting_for_child():  # the one place SIGTERM or a newer commit abandons a step
            proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc, lowered)
        reader.join(timeout=5)
        raise FatalError(f"{shlex.join(argv)} timed out after {timeout:.0f} s") from None
    except BaseException:
        _kill(proc, lowered)
        raise
    reader.join()
    return Completed(tuple(argv), proc.returncode, "".join(lines))


def _kill(proc: subprocess.Popen[str], group: bool) -> None:
    """Kill a command and reap it; in its own session, its whole process group,
    so its own children (pytest-xdist's workers) die with it."""
    try:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except ProcessLookupError:
        pass  # the whole group is gone already
    proc.wait()


def run_rasa(args: Sequence[str], **kwargs: object) -> Completed:
    return run([*rasa_command(), *args], **kwargs)  # type: ignore[arg-type]


def git(args: Sequence[str], cwd: Path, **kwargs: object) -> Completed:
    return run(["git", *args], cwd=cwd, **kwargs)  # type: ignore[arg-type]


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    background: bool = False,
    stdin_text: str = "",
) -> int:
    """Start a long-running server (a Rasa or action server) detached from us.

    It runs in its own session, so it outlives the process that started it and
    a Ctrl-C on the agent's terminal doesn't reach it; its output goes to
    `log_file`. Returns the pid; `stop` ends it. A server runs at normal priority
    (even inside `background_priority`: a live server is what it protects);
    `background=True` is for helpers that must not compete with the live bot.
    `stdin_text` is written to its standard input, which is then closed: how a
    secret reaches it without a command line or an environment that shows it.
    """
    argv = [str(part) for part in argv]
    if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        raise FatalError(
            f"command not found: {argv[0]}. Install it, or point the configured "
            "command at the right executable."
        )
    full_env = child_env(env)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        try:
            proc = subprocess.Popen(
                launch_argv(argv, background, None), cwd=cwd, env=full_env, stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE if stdin_text else subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise FatalError(f"cannot run {argv[0]}: {exc.strerror}") from None
    if stdin_text:
        write_stdin(proc, stdin_text)
    if background:
        set_group_niceness(proc.pid, NICENESS)
    return proc.pid


def write_stdin(proc: subprocess.Popen[bytes], text: str) -> None:
    """Hand `text` to a started process's standard input and close it. A
    process that already exited has no reader: its exit is its caller's news."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(text.encode("utf-8"))
        proc.stdin.close()
    except BrokenPipeError:
        pass


def alive(pid: int, started: int | None = None) -> bool:
    """Whether a process runs (a zombie child we started counts as gone) and,
    given its recorded start time, is still that process (see `started_at`)."""
    if not ours(pid, started):
        return False
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A dead process its parent has not reaped yet: `agent stop` runs in another
    process than the daemon that started the servers, so it cannot reap them."""
    fields = stat_fields(pid)
    if fields is None:
        return False  # no /proc (not Linux): signal 0 is all we know
    return bool(fields) and fields[0].startswith("Z")


def stop(pid: int, *, timeout: float = 15.0, started: int | None = None) -> None:
    """SIGTERM the process group `spawn` made, then SIGKILL it after `timeout`.
    Given the recorded start time, a pid now held by another process (after a
    reboot) is left alone."""
    if not ours(pid, started):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.1)
