"""How a blue/green slot's Rasa server runs: the SlotRunner interface, its record,
and the runner for local `rasa run` processes.

BlueGreenRasaTarget (agent/targets/rasa_blue_green.py) decides what serves and
when to switch; a SlotRunner only starts, watches, re-prioritises and stops one
slot's server. Two exist: ProcessSlotRunner here (a process on the agent's
host) and ContainerSlotRunner (agent/targets/docker/rasa_slots.py: a container
of the release on a Docker host). The target touches a server only through
this interface and the `handle` the runner put in its record.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.owned import marked, marker_env, stop_processes
from agent.secrets import Secret
from agent.targets.base import DeployError, LogSink, ModelRef
from agent.targets.front_proxy import free_port
from agent.targets.rasa_config import ServerConfig
from agent.targets.rasa_launch import launch
from hooks.core.child_env import QUIET_RASA_ENV, minimal_env, passed_env
from hooks.core.pid_identity import started_at
from hooks.core.priority import set_group_niceness
from hooks.core.process import alive, stop, write_stdin

LOCAL_HOST = "127.0.0.1"
STOP_TIMEOUT = 20.0
# A new server loads its model (a minute of CPU for DIET/TED) at a lower CPU
# priority than the live one, so the live one's replies keep their pace; it is
# put back to the agent's own priority once warmed, before it takes traffic.
LOADING_NICENESS = 10


@dataclass(frozen=True)
class Started:
    """What a runner tells the target about a server it just started."""

    host: str  # where HAProxy and the agent reach it
    port: int
    # The runner's own identification of the server, kept in the slot's record
    # and handed back to it: {"pid", "started"} or {"container", "image"}.
    handle: dict[str, str]


@dataclass(frozen=True)
class SlotServer:
    """The record of one slot's server (`<slot>.json`, `live.json`)."""

    slot: str
    host: str
    port: int
    release_id: str
    model_id: str
    location: str
    bot_dir: str
    config_hash: str  # of its endpoints.yml + credentials.yml: a changed bot config restarts
    handle: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SlotServer:
        """Raises ValueError/TypeError/KeyError for what is not a record."""
        data: dict[str, Any] = json.loads(text)
        if "handle" not in data:
            # Written before runners (session 4 and earlier): a local process,
            # its pid and /proc start time (0 = not kept yet) at the top level.
            data["handle"] = {"pid": str(int(data.pop("pid"))),
                              "started": str(int(data.pop("started", 0)))}
            data.setdefault("host", LOCAL_HOST)
        data["handle"] = {str(k): str(v) for k, v in data["handle"].items()}
        return cls(**data)


class SlotRunner(Protocol):
    """Everything BlueGreenRasaTarget does to a slot's Rasa server."""

    def tracker_db(self) -> Path:
        """The agent's default tracker store (SQLite) as the servers open it: one
        file both slots share, which outlives every switch."""

    def start(self, ref: ModelRef, slot: str, config: ServerConfig, token: Secret,
              log: LogSink) -> Started:
        """Start `rasa run --enable-api` with `ref`'s model and `config` at a low CPU
        priority, without waiting for it to load. DeployError if it can't start."""

    def alive(self, server: SlotServer) -> bool:
        """Whether the server the record names still runs."""

    def log_tail(self, server: SlotServer) -> str:
        """The last lines of the server's output (for an error message)."""

    def restore_priority(self, server: SlotServer, log: LogSink) -> None:
        """Back to the live server's priority: called once it is warmed."""

    def stop(self, slot: str, server: SlotServer | None, log: LogSink) -> None:
        """Stop the slot's server; with no record, whatever a crash left there."""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _identity(server: SlotServer) -> tuple[int, int]:
    """(pid, start time) of a process record; (0, 0) for another runner's."""
    try:
        return int(server.handle["pid"]), int(server.handle.get("started", "0"))
    except (KeyError, ValueError):
        return 0, 0


class ProcessSlotRunner:
    """`rasa run` as a process of its own session on the agent's host, on a free
    loopback port, its output in `state_dir/rasa-<slot>.log`."""

    def __init__(self, rasa_argv: Sequence[str], state_dir: Path,
                 env_names: Sequence[str] = ()) -> None:
        self.rasa_argv = list(rasa_argv)
        self.state_dir = state_dir
        self.env_names = tuple(env_names)  # pipeline.env: the custom components' variables

    def tracker_db(self) -> Path:
        return self.state_dir / "tracker.db"

    def _log_file(self, slot: str) -> Path:
        return self.state_dir / f"rasa-{slot}.log"

    def start(self, ref: ModelRef, slot: str, config: ServerConfig, token: Secret,
              log: LogSink) -> Started:
        port = free_port(LOCAL_HOST)
        nice = shutil.which("nice")
        prefix = [nice, "-n", str(LOADING_NICENESS)] if nice else []
        # The token goes on its standard input, never on a command line (rasa_launch).
        start = launch(self.rasa_argv, [
            "run", "--enable-api", "--endpoints", str(config.endpoints),
            "--credentials", str(config.credentials),
            "--port", str(port), "--interface", LOCAL_HOST, "--model", ref.location],
            token.reveal(), log)
        argv = [*prefix, *start.argv]
        # The basics a Rasa process needs (hooks.core.child_env), the bot's ${VAR}s
        # and the pipeline.env names.
        # The mark lets `agent stop` find it even if a crash left it unrecorded.
        env = minimal_env({**passed_env(self.env_names), **server_env(config, os.environ),
                           **marker_env(self._mark(slot))})
        if ref.bot_dir:
            # Rasa imports a bot's custom components (`components.MyTokenizer`) by
            # module name: the release's own tree comes first on the path.
            env["PYTHONPATH"] = os.pathsep.join(
                part for part in (ref.bot_dir, env.get("PYTHONPATH", "")) if part)
        log(f"starting a Rasa server for release {ref.release_id} in slot {slot} "
            f"(port {port}; tracker store: {config.tracker_store}, lock store: "
            f"{config.lock_store})")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # A fresh log per start, appended to (O_APPEND), so the agent's log
        # bound (agent/prune.py) can trim it while the server writes. The last
        # server's log is kept as `.previous`: after a crash, a new server (the
        # next standby) starts in the dead one's slot, and its log says why it died.
        previous = self._log_file(slot)
        if previous.exists():
            previous.replace(previous.with_name(previous.name + ".previous"))
        with open(self._log_file(slot), "ab") as out:
            try:
                # Its own session, as every server the agent starts: it outlives
                # the agent. Not hooks.core.process.spawn: that passes the
                # agent's whole environment, and this one gets only `env`.
                proc = subprocess.Popen(argv, cwd=self.state_dir, env=env, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
                                        start_new_session=True)
            except OSError as exc:
                raise DeployError(f"cannot run {argv[len(prefix)]}: {exc.strerror}") from None
        write_stdin(proc, start.stdin)
        # Its own session: under autogroup scheduling only the session's weight
        # keeps the load from slowing the live server (hooks.core.process).
        set_group_niceness(proc.pid, LOADING_NICENESS)
        return Started(LOCAL_HOST, port, {"pid": str(proc.pid),
                                          "started": str(started_at(proc.pid) or 0)})

    def alive(self, server: SlotServer) -> bool:
        pid, started = _identity(server)
        return pid > 0 and alive(pid, started)

    def log_tail(self, server: SlotServer) -> str:
        return _tail(self._log_file(server.slot))

    def restore_priority(self, server: SlotServer, log: LogSink) -> None:
        """Every thread of the process, and its session, back to the agent's own
        priority (see LOADING_NICENESS)."""
        pid, _ = _identity(server)
        own = os.getpriority(os.PRIO_PROCESS, 0)
        # Back to the default session weight: lowering a niceness that is not
        # negative needs no privilege for a session (autogroup).
        set_group_niceness(pid, 0)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.setpriority(os.PRIO_PROCESS, int(task.name), own)
        except PermissionError:  # raising a thread's priority needs CAP_SYS_NICE
            log(f"the new Rasa server keeps nice {LOADING_NICENESS} (this user may not raise "
                "a priority); it still runs ahead of training (nice 19)")
        except (FileNotFoundError, ProcessLookupError):
            pass  # no /proc (not Linux) or the thread ended: nothing to restore

    def _mark(self, slot: str) -> Path:
        return self.state_dir / f"slot-{slot}"

    def stop(self, slot: str, server: SlotServer | None, log: LogSink) -> None:
        if server is None:
            # A crash between the start and the record: found by its mark.
            left = marked(self._mark(slot))
            if left:
                log(f"stopping the unrecorded Rasa server in slot {slot} "
                    f"(pid {', '.join(str(p.pid) for p in left)})")
                stop_processes(left, log, STOP_TIMEOUT)
            return
        pid, started = _identity(server)
        if pid > 0 and alive(pid, started):
            stop(pid, timeout=STOP_TIMEOUT, started=started)
            log(f"stopped the Rasa server in slot {slot} (release {server.release_id}, "
                f"pid {pid})")


def server_env(config: ServerConfig, source: Mapping[str, str]) -> dict[str, str]:
    """The bot's ${VAR}s from `source` and Rasa's quiet settings: never the agent's
    other variables (its secrets). A container's whole environment (the image
    brings the rest)."""
    env = {name: source[name] for name in sorted(config.env_names) if name in source}
    env.update(QUIET_RASA_ENV)
    return env
