"""Model target: a Rasa Open Source server's HTTP API.

A model is activated with `PUT /model {"model_file": PATH}` and confirmed by
`GET /status` reporting its `model_id`. The model file reaches the server by
a shared path (the agent's models folder on the same host), or, for a server
on another host (`model.ssh_host`), by SFTP into a folder there
(remote_models): `PUT /model` then names the remote copy, never a local path.

With `manage_server`, the agent starts the Rasa server itself when nothing
answers at the URL: `rasa run --enable-api` (its token on standard input, see
rasa_launch) with an endpoints file whose action endpoint is the action
target's stable URL, and `--model` pointing at a symlink the agent keeps on
the production model, so a restarted server comes back with what the journal says is live.

The token travels as Rasa expects (`?token=`), or a short-lived JWT signed with
the server's `--jwt-secret` does (rasa_api.JwtAuth); every error message built
here is scrubbed of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import requests

from agent import faults
from agent.owned import marker_env
from agent.secrets import Secret
from agent.targets.base import DeployError, Health, LogSink, ModelRef
from agent.targets.pidfile import read_pid, stop_recorded, write_pid
from agent.targets.probe import accepts, probe
from agent.targets.rasa_api import (
    STATUS_TIMEOUT,
    JwtAuth,
    RasaApi,
    local_token,
    model_id_of,
)
from agent.targets.rasa_launch import launch
from agent.targets.remote_models import RemoteModels
from hooks.core.child_env import commit_environment, passed_env
from hooks.core.errors import FatalError
from hooks.core.process import alive, spawn

__all__ = ["RasaHttpModelTarget"]


class RasaHttpModelTarget:
    name = "rasa_http"

    def __init__(self, *, url: str, token: Secret | None, state_dir: Path,
                 rasa_argv: Sequence[str], manage_server: bool, action_endpoint: str,
                 load_timeout: float = 900.0, env_names: Sequence[str] = (),
                 remote: RemoteModels | None = None, jwt_auth: JwtAuth | None = None) -> None:
        if remote is not None and manage_server:
            # The agent starts a Rasa server only on its own host.
            raise DeployError("a Rasa server on another host is not one the agent starts: "
                              "set model.manage_server to false")
        self.url = url.rstrip("/")
        self.env_names = tuple(env_names)  # pipeline.env: the custom components' variables
        self.state_dir = state_dir
        self.rasa_argv = list(rasa_argv)
        self.manage_server = manage_server
        self.action_endpoint = action_endpoint
        self.load_timeout = load_timeout
        self.remote = remote
        self._token = token if token is not None else (
            local_token(state_dir) if manage_server else None
        )
        self._api = RasaApi(self.url, self._token, jwt_auth)

    # --------------------------------------------------------------- server

    @property
    def _pid_file(self) -> Path:
        return self.state_dir / "rasa-server.pid"

    @property
    def live_link(self) -> Path:
        return self.state_dir / "live-model.tar.gz"

    def server_answers(self) -> bool:
        try:
            requests.get(f"{self.url}/", timeout=STATUS_TIMEOUT)
        except requests.RequestException:
            return False
        return True

    def _address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 5005

    def ensure_server(self, log: LogSink) -> bool:
        # Death is a gone process or a refused connection, never a slow answer:
        # a server busy with a long request (or chat load while a release
        # trains) still holds the port, and a second `rasa run` there would die
        # with "address already in use". A server someone else runs is theirs.
        if not self.manage_server:
            return False
        recorded = read_pid(self._pid_file)
        if recorded is not None and alive(*recorded):
            if accepts(*self._address()) is not False:
                return False
            log("the Rasa server runs but refuses connections: restarting it")
            self.stop_server(log)
        elif accepts(*self._address()) is not False:
            return False  # another server holds the port: it answers, or is busy
        self._start_server(log)
        return True

    def health(self) -> list[Health]:
        recorded = read_pid(self._pid_file)
        if not self.manage_server or recorded is None:
            return []  # not ours, or never started
        return [probe("rasa server", *self._address(), process_alive=alive(*recorded))]

    def _start_server(self, log: LogSink) -> None:
        assert self._token is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        endpoints = self.state_dir / "endpoints.yml"
        endpoints.write_text(f'action_endpoint:\n  url: "{self.action_endpoint}"\n',
                             encoding="utf-8")
        credentials = self.state_dir / "credentials.yml"
        credentials.write_text("rest:\n", encoding="utf-8")
        parts = urlsplit(self.url)
        args = ["run", "--enable-api", "--endpoints", str(endpoints),
                "--credentials", str(credentials),
                "--port", str(parts.port or 5005), "--interface", parts.hostname or "0.0.0.0"]
        if self.live_link.exists():
            args += ["--model", str(self.live_link)]
            log(f"starting the Rasa server on {self.url} with the production model")
        else:
            empty = self.state_dir / "no-model"
            empty.mkdir(exist_ok=True)
            args += ["--model", str(empty)]
            log(f"starting the Rasa server on {self.url} (no model yet)")
        # The token goes on its standard input, never on a command line (rasa_launch).
        start = launch(self.rasa_argv, args, self._token.reveal(), log)
        try:
            # It runs the commit's custom components: none of the agent's variables,
            # only the pipeline.env names.
            with commit_environment(passed_env(self.env_names)):
                pid = spawn(start.argv, cwd=self.state_dir, stdin_text=start.stdin,
                            log_file=self.state_dir / "rasa-server.log",
                            env=marker_env(self.state_dir))  # `agent stop` finds it
        except FatalError as exc:
            raise DeployError(str(exc)) from None
        # With its start time: after a reboot the pid may be another program's.
        write_pid(self._pid_file, pid)
        deadline = time.monotonic() + self.load_timeout
        while not self.server_answers():
            if not alive(pid):
                raise DeployError(self._api.scrub(
                    "the Rasa server exited during start-up; see "
                    f"{self.state_dir / 'rasa-server.log'}"))
            if time.monotonic() > deadline:
                raise DeployError(f"the Rasa server did not start within "
                                  f"{self.load_timeout:.0f} s")
            time.sleep(0.5)
        log(f"the Rasa server answers on {self.url}")

    def stop_all(self, log: LogSink) -> None:
        self.stop_server(log)

    def secrets(self) -> list[str]:
        # The token of a managed server is made here, not read from the config.
        return [self._token.reveal()] if self._token else []

    def stop_server(self, log: LogSink) -> None:
        if stop_recorded(self._pid_file, timeout=20):
            log("stopped the Rasa server")

    # ------------------------------------------------------------- protocol

    def upload(self, release_id: str, model: Path, log: LogSink,
               bot_dir: Path | None = None) -> ModelRef:
        # bot_dir is ignored: this one server keeps the agent's own endpoints.
        if not model.is_file():
            raise DeployError(f"model file {model} does not exist")
        model_id = model_id_of(model)
        if self.remote is not None:  # the server's own disk: a copy over SFTP
            return ModelRef(release_id, model_id, self.remote.put(release_id, model, log))
        # Shared path: the server runs on this host and reads the agent's file.
        return ModelRef(release_id, model_id, str(model.resolve()))

    def activate(self, ref: ModelRef, log: LogSink) -> None:
        self.ensure_server(log)
        if self.live_model_id() == ref.model_id:
            log(f"model {ref.model_id} is already live")
        else:
            log(f"loading model of release {ref.release_id} (PUT /model)")
            answer = self._api.request("PUT", "/model", self.load_timeout,
                                       json={"model_file": ref.location})
            if answer.status_code != 204:
                raise self._api.explain(answer, "PUT /model")
            live = self.live_model_id()
            if live != ref.model_id:
                raise DeployError(f"after PUT /model the server reports model {live}, "
                                  f"not {ref.model_id}")
            log(f"GET /status confirms model_id {live}")
            faults.kill_point("model.loaded")
        if self.remote is not None:
            try:
                self.remote.keep_newest(ref.location, log)
            except DeployError as exc:  # the switch is done; old files wait for the next
                log(f"old models on {self.remote.settings.host} not cleaned up: {exc}")
            return  # no restart link: the agent never starts a server over there
        tmp = self.live_link.with_name(".live-model.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(ref.location)
        os.replace(tmp, self.live_link)

    def live_model_id(self) -> str | None:
        return self._api.model_id()

    def serves(self, ref: ModelRef) -> bool:
        # One server with the agent's own endpoints: the model is all that differs.
        return self.live_model_id() == ref.model_id

    def talk(self, sender: str, text: str, timeout: float = 120.0) -> list[str]:
        """One message through the REST channel; the bot's text replies."""
        return self._api.talk(sender, text, timeout)
