"""`agent run` and `agent once`: the ticks, the watch loop, signals and the pid file.

The daemon is the only long-lived process of the agent. It ticks, then sleeps
until the watcher wakes it (a push into the bare repo, `agent sync`, the poll
interval or a signal). SIGTERM and Ctrl-C let a switch in progress finish and
abandon a long step (training, tests), which the next start retries. The pid
file lets `agent sync` and `agent status` find the running daemon.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType

from agent.config import AgentConfig
from agent.notify import notifying, open_notifier
from agent.progress import Progress
from agent.runtime import Agent
from agent.secrets import public_url
from agent.steps import Abandoned
from agent.supersede import Guard
from agent.supervise import Supervisor
from agent.tick import TickResult, tick
from agent.watch import Watcher
from hooks.core.errors import FatalError
from hooks.core.interrupt import add_check, interrupt_if_waiting, remove_check


def pid_file(config: AgentConfig) -> Path:
    return config.work_dir / "agent.pid"


def daemon_running(config: AgentConfig) -> int | None:
    """The pid of the daemon that runs for this work_dir, or None (never this process)."""
    try:
        pid = int(pid_file(config).read_text(encoding="utf-8").split(":")[-1])
    except (FileNotFoundError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def print_result(result: TickResult) -> None:
    if result.outcome == "released":
        skipped = f"; skipped {len(result.skipped)} superseded" if result.skipped else ""
        if result.superseded:  # releases abandoned in their gates for a newer commit
            skipped += f"; superseded release(s) {', '.join(map(str, result.superseded))}"
        reason = f": {result.message}" if result.message else ""
        print(f"release {result.release_id}: {result.status}{reason}{skipped}")
    elif result.outcome == "idle":
        print(f"nothing new: {result.message}")
    else:
        print(f"{result.outcome}: {result.message}")


def run_once(config: AgentConfig, *, quiet: bool = False) -> int:
    """One tick; exit 1 when it failed, so cron and CI see a failed release."""
    agent = Agent.open(config, Progress(quiet=quiet))
    local = Path(config.repo) if config.is_local_repo else None
    guard = Guard(agent, local_repo=local, interval=float(config["poll_interval"]))
    try:
        with notifying(config, agent.journal, agent.progress.info,
                       daemon_pid=daemon_running(config)):
            result = tick(agent, guard)  # no thread: the guard looks between two gates
    finally:
        agent.close()
    print_result(result)
    return 1 if result.outcome == "error" or result.status == "failed" else 0


def run_daemon(config: AgentConfig) -> int:
    """Tick until SIGTERM/SIGINT; between ticks, wait for the watcher."""
    running = daemon_running(config)
    if running:
        raise FatalError(f"an agent already runs for {config.work_dir} (pid {running})")
    agent = Agent.open(config, Progress())
    local = Path(config.repo) if config.is_local_repo else None
    if local is not None and not (local / "HEAD").is_file():
        raise FatalError(f"{config.path}: repo: {local} is not a bare git repository")
    notifier = open_notifier(config, agent.journal, agent.progress.info)  # bad notify: refused
    watcher = Watcher(config.work_dir, local_repo=local, branch=config.branch,
                      poll_interval=float(config["poll_interval"]))

    def abandon_if_stopping() -> None:
        if agent.stop_requested and agent.in_long_step:
            raise Abandoned()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the main thread: it raises only while a
        # long step waits for its child (hooks/core/interrupt.py), never inside
        # a journal transaction; an in-process step ends first.
        agent.stop_requested = True
        watcher.wakeup.set("stop")
        interrupt_if_waiting()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watcher.start()
    guard = Guard(agent, local_repo=local, interval=float(config["poll_interval"]),
                  pushed=watcher.pushed)
    guard.start()  # a newer commit abandons a release in its gates (SIGUSR1)
    # Restarts a crashed server within seconds, not at the next tick (agent/supervise.py).
    supervisor = Supervisor(agent, interval=float(config["supervise.interval"]),
                            max_backoff=float(config["supervise.max_backoff"]))
    if config["supervise.enabled"]:
        supervisor.start()
    # The pid file first: from then on CLI commands leave delivery to the daemon.
    pid_file(config).write_text(f"{os.getpid()}\n", encoding="utf-8")
    if notifier is not None:  # on its own thread: a chat or forge being down never
        notifier.start()  # holds up a tick (agent/notify.py)
    how = "watching the bare repo" if local else f"polling every {config['poll_interval']} s"
    agent.progress.info(f"agent started: {public_url(config.repo)} branch {config.branch}, {how}")
    add_check(abandon_if_stopping)
    try:
        while not agent.stop_requested:
            try:
                result = tick(agent, guard)
            except FatalError as exc:  # e.g. a full disk: say so, keep serving, retry
                agent.progress.info(f"tick failed: {exc}")
                result = TickResult("error", message=str(exc))
            if result.outcome in {"released", "busy"}:  # errors were logged by the tick
                print_result(result)
            if agent.stop_requested:
                break
            if result.outcome == "released":
                continue  # more commits may have arrived while it ran
            reasons = watcher.wait()
            if reasons != ["poll"] and "stop" not in reasons:
                agent.progress.info(f"woken by {', '.join(reasons)}")
    finally:
        remove_check(abandon_if_stopping)
        supervisor.stop()
        if notifier is not None:
            notifier.stop()
        guard.stop()
        watcher.stop()
        agent.close()
        pid_file(config).unlink(missing_ok=True)
    agent.progress.info("agent stopped")
    return 0
