"""Model target: a Rasa Open Source server's HTTP API.

A model is activated with `PUT /model {"model_file": PATH}` and confirmed by
`GET /status` reporting its `model_id`. The model file reaches the server by
a shared path (the agent's models folder on the same host).

With `manage_server`, the agent starts the Rasa server itself when nothing
answers at the URL: `rasa run --enable-api --auth-token ...` with an endpoints
file whose action endpoint is the action target's stable URL, and `--model`
pointing at a symlink the agent keeps on the production model, so a restarted
server comes back with what the journal says is live.

The token travels as Rasa expects (`?token=`); every error message built here
is scrubbed of it.
"""

from __future__ import annotations

import json
import os
import secrets
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from agent import faults
from agent.secrets import Secret
from agent.targets.base import DeployError, LogSink, ModelRef
from hooks.core.errors import FatalError
from hooks.core.process import alive, spawn, stop

STATUS_TIMEOUT = 10.0
CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF = 0.5  # seconds; doubled after each failed attempt


def model_id_of(model: Path) -> str:
    """The `model_id` Rasa reports in /status once this model is loaded."""
    try:
        with tarfile.open(model, "r:gz") as archive:
            member = archive.extractfile("metadata.json")
            if member is None:
                raise DeployError(f"{model}: not a Rasa model (no metadata.json)")
            return str(json.load(member)["model_id"])
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise DeployError(f"{model}: not a readable Rasa model ({type(exc).__name__})") from None


class RasaHttpModelTarget:
    name = "rasa_http"

    def __init__(self, *, url: str, token: Secret | None, state_dir: Path,
                 rasa_argv: Sequence[str], manage_server: bool, action_endpoint: str,
                 load_timeout: float = 900.0) -> None:
        self.url = url.rstrip("/")
        self.state_dir = state_dir
        self.rasa_argv = list(rasa_argv)
        self.manage_server = manage_server
        self.action_endpoint = action_endpoint
        self.load_timeout = load_timeout
        self._token = token if token is not None else (
            self._local_token() if manage_server else None
        )

    # -------------------------------------------------------------- helpers

    def _local_token(self) -> Secret:
        """A managed server always gets token auth: make one and keep it 0600."""
        path = self.state_dir / "auth-token"
        if not path.is_file():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24))
        return Secret(path.read_text(encoding="utf-8").strip(), str(path))

    def _params(self) -> dict[str, str]:
        return {"token": self._token.reveal()} if self._token else {}

    def _scrub(self, text: str) -> str:
        return text.replace(self._token.reveal(), "***") if self._token else text

    def _request(self, method: str, path: str, timeout: float, **kwargs: Any
                 ) -> requests.Response:
        # A server that is restarting refuses connections for a moment: a few
        # tries with a growing pause, then a clear failure (never an endless wait).
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                return requests.request(method, f"{self.url}{path}", params=self._params(),
                                        timeout=timeout, **kwargs)
            except requests.ConnectionError:
                if attempt == CONNECT_ATTEMPTS:
                    raise DeployError(f"the Rasa server at {self.url} does not answer "
                                      f"({CONNECT_ATTEMPTS} attempts)") from None
                time.sleep(CONNECT_BACKOFF * 2 ** (attempt - 1))
            except requests.Timeout:
                raise DeployError(f"the Rasa server at {self.url} did not answer {method} "
                                  f"{path} within {timeout:.0f} s") from None
            except requests.RequestException as exc:
                raise DeployError(self._scrub(f"{method} {path} failed: {exc}")) from None
        raise AssertionError("unreachable")

    def _explain(self, answer: requests.Response, what: str) -> DeployError:
        if answer.status_code == 401:
            return DeployError(f"{what}: the Rasa server refused the auth token (401); check "
                               "model.auth_token_env / model.auth_token_file")
        if answer.status_code == 403:
            return DeployError(f"{what}: the token may not do this (403)")
        try:
            message = str(answer.json().get("message", ""))
        except ValueError:
            message = answer.text[:300]
        return DeployError(self._scrub(f"{what}: HTTP {answer.status_code}: {message}"))

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

    def ensure_server(self, log: LogSink) -> bool:
        # A server someone else runs is theirs to start: the next request says
        # (with retries) whether it answers.
        if not self.manage_server or self.server_answers():
            return False
        self._start_server(log)
        return True

    def _start_server(self, log: LogSink) -> None:
        assert self._token is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        endpoints = self.state_dir / "endpoints.yml"
        endpoints.write_text(f'action_endpoint:\n  url: "{self.action_endpoint}"\n',
                             encoding="utf-8")
        credentials = self.state_dir / "credentials.yml"
        credentials.write_text("rest:\n", encoding="utf-8")
        parts = urlsplit(self.url)
        argv = [*self.rasa_argv, "run", "--enable-api", "--auth-token", self._token.reveal(),
                "--endpoints", str(endpoints), "--credentials", str(credentials),
                "--port", str(parts.port or 5005), "--interface", parts.hostname or "0.0.0.0"]
        if self.live_link.exists():
            argv += ["--model", str(self.live_link)]
            log(f"starting the Rasa server on {self.url} with the production model")
        else:
            empty = self.state_dir / "no-model"
            empty.mkdir(exist_ok=True)
            argv += ["--model", str(empty)]
            log(f"starting the Rasa server on {self.url} (no model yet)")
        try:
            pid = spawn(argv, cwd=self.state_dir, log_file=self.state_dir / "rasa-server.log")
        except FatalError as exc:
            raise DeployError(str(exc)) from None
        self._pid_file.write_text(f"{pid}\n", encoding="utf-8")
        deadline = time.monotonic() + self.load_timeout
        while not self.server_answers():
            if not alive(pid):
                raise DeployError(self._scrub(
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
        try:
            pid = int(self._pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return
        stop(pid, timeout=20)
        self._pid_file.unlink(missing_ok=True)
        log("stopped the Rasa server")

    # ------------------------------------------------------------- protocol

    def upload(self, release_id: str, model: Path, log: LogSink,
               bot_dir: Path | None = None) -> ModelRef:
        # bot_dir is ignored: this one server keeps the agent's own endpoints.
        # Shared path: the server runs on this host and reads the agent's file.
        if not model.is_file():
            raise DeployError(f"model file {model} does not exist")
        return ModelRef(release_id, model_id_of(model), str(model.resolve()))

    def activate(self, ref: ModelRef, log: LogSink) -> None:
        self.ensure_server(log)
        if self.live_model_id() == ref.model_id:
            log(f"model {ref.model_id} is already live")
        else:
            log(f"loading model of release {ref.release_id} (PUT /model)")
            answer = self._request("PUT", "/model", self.load_timeout,
                                   json={"model_file": ref.location})
            if answer.status_code != 204:
                raise self._explain(answer, "PUT /model")
            live = self.live_model_id()
            if live != ref.model_id:
                raise DeployError(f"after PUT /model the server reports model {live}, "
                                  f"not {ref.model_id}")
            log(f"GET /status confirms model_id {live}")
            faults.kill_point("model.loaded")
        tmp = self.live_link.with_name(".live-model.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(ref.location)
        os.replace(tmp, self.live_link)

    def live_model_id(self) -> str | None:
        answer = self._request("GET", "/status", STATUS_TIMEOUT)
        if answer.status_code == 409:  # "No agent loaded"
            return None
        if answer.status_code != 200:
            raise self._explain(answer, "GET /status")
        model_id = answer.json().get("model_id")
        return str(model_id) if model_id else None

    def talk(self, sender: str, text: str, timeout: float = 120.0) -> list[str]:
        """One message through the REST channel; the bot's text replies."""
        try:
            answer = requests.post(f"{self.url}/webhooks/rest/webhook",
                                   json={"sender": sender, "message": text}, timeout=timeout)
        except requests.RequestException as exc:
            raise DeployError(f"REST channel: {type(exc).__name__}") from None
        if answer.status_code != 200:
            raise DeployError(f"REST channel: HTTP {answer.status_code}")
        return [str(item.get("text", "")) for item in answer.json() if "text" in item]
