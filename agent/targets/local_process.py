"""The embedded default action server target: `rasa run actions` as local processes.

Each release's action server starts from its own worktree on a fresh port,
beside the live one. Only when its `/health` answers and its `/actions` lists
every action the release needs does the forwarder on the stable port switch to
it; then the old process stops. A failed start leaves the live server serving.

State lives in `<state_dir>`: `live.json` (the live deployment), `upstream`
(what the forwarder forwards to) and `forwarder.pid`.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from agent import faults
from agent.owned import marker_env
from agent.targets.base import (
    ActionServerDeployment,
    ActionServerSpec,
    DeployError,
    Health,
    LogSink,
)
from agent.targets.pidfile import read_pid, write_atomically, write_pid
from agent.targets.probe import probe
from hooks.core.child_env import commit_environment, passed_env
from hooks.core.errors import FatalError
from hooks.core.pid_identity import started_at
from hooks.core.process import alive, spawn, stop

HTTP_TIMEOUT = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def list_actions(base_url: str) -> frozenset[str]:
    answer = requests.get(f"{base_url}/actions", timeout=HTTP_TIMEOUT)
    answer.raise_for_status()
    return frozenset(str(item["name"]) for item in answer.json())


class LocalActionServerTarget:
    name = "local"

    def __init__(self, *, state_dir: Path, rasa_argv: Sequence[str], host: str, port: int,
                 actions_module: str = "actions", start_timeout: float = 180.0,
                 env_names: Sequence[str] = ()) -> None:
        self.state_dir = state_dir
        self.env_names = tuple(env_names)  # action_server.env: what the bot's code gets
        self.rasa_argv = list(rasa_argv)
        self.host = host
        self.port = port
        self.actions_module = actions_module
        self.start_timeout = start_timeout

    # ------------------------------------------------------------- paths

    @property
    def url(self) -> str:
        """The webhook URL the Rasa server's action_endpoint points at (stable)."""
        return f"http://{self.host}:{self.port}/webhook"

    @property
    def _live_file(self) -> Path:
        return self.state_dir / "live.json"

    @property
    def _upstream_file(self) -> Path:
        return self.state_dir / "upstream"

    @property
    def _forwarder_pid_file(self) -> Path:
        return self.state_dir / "forwarder.pid"

    # ---------------------------------------------------------- forwarder

    def ensure_forwarder(self, log: LogSink) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        recorded = read_pid(self._forwarder_pid_file)
        if recorded and alive(*recorded) and port_open(self.host, self.port):
            return
        if port_open(self.host, self.port):
            raise DeployError(
                f"port {self.port} on {self.host} is taken by another program; the agent's "
                "action forwarder needs it. Free it or set action_server.port."
            )
        log(f"starting the action forwarder on {self.host}:{self.port}")
        pid = spawn(
            [sys.executable, "-m", "agent.targets.forwarder", "--listen",
             f"{self.host}:{self.port}", "--upstream-file", str(self._upstream_file)],
            cwd=self.state_dir, log_file=self.state_dir / "forwarder.log",
            env=marker_env(self.state_dir),  # `agent stop` finds it even unrecorded
        )
        # With its start time: after a reboot the pid may be another program's.
        write_pid(self._forwarder_pid_file, pid)
        deadline = time.monotonic() + 30
        while not port_open(self.host, self.port):
            if not alive(pid) or time.monotonic() > deadline:
                raise DeployError(f"the action forwarder did not start; see "
                                  f"{self.state_dir / 'forwarder.log'}")
            time.sleep(0.1)

    # ------------------------------------------------------------ protocol

    def deploy(self, spec: ActionServerSpec, log: LogSink) -> ActionServerDeployment:
        self.ensure_forwarder(log)
        port = free_port(self.host)
        upstream = f"http://{self.host}:{port}"
        log_file = self.state_dir / f"actions-{spec.release_id}.log"
        log(f"starting `rasa run actions` for release {spec.release_id} on port {port}")
        try:
            # The commit's action code: none of the agent's variables (secrets),
            # only the action_server.env names.
            with commit_environment(passed_env(self.env_names)):
                pid = spawn(
                    [*self.rasa_argv, "run", "actions", "--port", str(port), "--actions",
                     self.actions_module],
                    cwd=spec.worktree, log_file=log_file,
                    env={"PYTHONDONTWRITEBYTECODE": "1", **marker_env(self.state_dir)},
                )
        except FatalError as exc:
            raise DeployError(str(exc)) from None
        try:
            served = self._wait_healthy(pid, upstream, spec.required_actions, log_file)
        except DeployError:
            stop(pid)
            raise
        deployment = ActionServerDeployment(
            release_id=spec.release_id, url=self.url, served_actions=served,
            handle={"pid": str(pid), "started": str(started_at(pid) or 0), "upstream": upstream,
                    "worktree": str(spec.worktree), "log": str(log_file)},
        )
        self._switch(deployment, log)
        return deployment

    def _wait_healthy(self, pid: int, upstream: str, required: frozenset[str],
                      log_file: Path) -> frozenset[str]:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if not alive(pid):
                raise DeployError(
                    "the action server exited during start-up:\n" + _tail(log_file, 15)
                )
            try:
                health = requests.get(f"{upstream}/health", timeout=HTTP_TIMEOUT)
                if health.ok:
                    served = list_actions(upstream)
                    missing = sorted(required - served)
                    if missing:
                        raise DeployError(
                            "the new action server does not serve actions the domain "
                            f"lists: {', '.join(missing)} (it serves: "
                            f"{', '.join(sorted(served)) or 'nothing'})"
                        )
                    return served
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise DeployError(
                    f"the action server did not answer /health within "
                    f"{self.start_timeout:.0f} s:\n" + _tail(log_file, 15)
                )
            time.sleep(0.25)

    def _switch(self, deployment: ActionServerDeployment, log: LogSink) -> None:
        old = self._read_live()
        write_atomically(self._upstream_file, deployment.handle["upstream"] + "\n")
        faults.kill_point("actions.switched")
        write_atomically(self._live_file, json.dumps(_encode(deployment), indent=2))
        log(f"action forwarder now points at release {deployment.release_id} "
            f"({deployment.handle['upstream']})")
        if old is not None and old.handle.get("pid") != deployment.handle.get("pid"):
            # Give requests already forwarded to the old server time to finish.
            time.sleep(0.5)
            old_pid, old_started = _handle_pid(old.handle)
            if old_pid:
                stop(old_pid, started=old_started)
                log(f"stopped the action server of release {old.release_id} (pid {old_pid})")

    def _read_live(self) -> ActionServerDeployment | None:
        try:
            data = json.loads(self._live_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return _decode(data)

    def live(self) -> ActionServerDeployment | None:
        deployment = self._read_live()
        if deployment is None:
            return None
        pid, started = _handle_pid(deployment.handle)
        if not pid or not alive(pid, started):
            return None
        try:  # a crash mid-switch leaves the forwarder on another server than live.json
            forwarded = self._upstream_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if forwarded != deployment.handle.get("upstream"):
            return None
        try:
            served = list_actions(deployment.handle["upstream"])
        except (requests.RequestException, ValueError, KeyError):
            return None
        return ActionServerDeployment(deployment.release_id, deployment.url, served,
                                      deployment.handle)

    def served_actions(self) -> frozenset[str]:
        live = self.live()
        return live.served_actions if live else frozenset()

    def reactivate(self, deployment: ActionServerDeployment, log: LogSink) -> None:
        worktree = Path(deployment.handle.get("worktree", ""))
        if not worktree.is_dir():
            raise DeployError(f"the worktree of release {deployment.release_id} is gone "
                              f"({worktree}); it can't be started again")
        self.deploy(ActionServerSpec(deployment.release_id, "", worktree,
                                     deployment.served_actions), log)

    def stop_all(self, log: LogSink) -> None:
        """Stop the live action server and the forwarder (`agent stop`)."""
        live = self._read_live()
        if live is not None and live.handle.get("pid"):
            pid, started = _handle_pid(live.handle)
            stop(pid, started=started)
            log(f"stopped the action server of release {live.release_id}")
        recorded = read_pid(self._forwarder_pid_file)
        if recorded:
            stop(recorded[0], started=recorded[1])
            log("stopped the action forwarder")
        for path in (self._live_file, self._upstream_file, self._forwarder_pid_file):
            path.unlink(missing_ok=True)

    def health(self) -> list[Health]:
        found = []
        recorded = read_pid(self._forwarder_pid_file)
        if recorded:
            found.append(probe("forwarder", self.host, self.port,
                               process_alive=alive(*recorded), path=None))
        live = self._read_live()
        upstream = urlsplit(live.handle.get("upstream", "")) if live else None
        if live is not None and upstream is not None and upstream.port:
            pid, started = _handle_pid(live.handle)
            server = probe("action server", upstream.hostname or self.host, upstream.port,
                           process_alive=bool(pid) and alive(pid, started), path="/health")
            found.append(replace(server, detail=f"release {live.release_id}: {server.detail}"))
        return found

    def revive(self, log: LogSink) -> list[str]:
        recorded = read_pid(self._forwarder_pid_file)
        if recorded is None or (alive(*recorded) and port_open(self.host, self.port)):
            return []  # never started (nothing released yet), or it serves
        if alive(*recorded):  # runs but deaf: its port is free for a new one once it stops
            stop(recorded[0], timeout=5, started=recorded[1])
        self._forwarder_pid_file.unlink(missing_ok=True)
        self.ensure_forwarder(log)
        return [f"forwarder on {self.host}:{self.port}"]

    def secrets(self) -> list[str]:
        return []  # a local action server holds none


def _encode(deployment: ActionServerDeployment) -> dict[str, Any]:
    return {"release_id": deployment.release_id, "url": deployment.url,
            "served_actions": sorted(deployment.served_actions), "handle": deployment.handle}


def _decode(data: dict[str, Any]) -> ActionServerDeployment:
    return ActionServerDeployment(str(data["release_id"]), str(data["url"]),
                                  frozenset(data.get("served_actions", [])),
                                  dict(data.get("handle", {})))


def _handle_pid(handle: dict[str, str]) -> tuple[int, int]:
    """A deployment's (pid, start time); 0 for what it does not record."""
    return int(handle.get("pid", "0") or 0), int(handle.get("started", "0") or 0)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
