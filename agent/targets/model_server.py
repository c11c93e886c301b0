"""Model target: Rasa servers that pull their model from the agent's model server.

Each Rasa server (a "puller", `model.pullers`) has `endpoints.yml` `models: url:
http://<agent>:<port>/models/<environment>`; the agent runs the model server
(agent/model_server.py, a process of its own that outlives agent restarts) and
decides what that URL serves by the environment's tag, a small JSON file it
writes atomically. So:
- `upload` leaves the model file where it is (the agent's models folder, kept
  while a release is production or rollback-able): the tag names that path;
- `activate` moves the tag, starts the server if it doesn't run, then waits
  until every known puller's `GET /status` reports the release's `model_id`,
  within `wait_time_between_pulls` plus a margin for download and load (Rasa
  stops answering while it loads a pulled model). A puller that doesn't is named;
  the tag goes back to what it served before, so the refusal changes nothing.
- what serves is the tag's model; `serves` also asks every puller.

The server is one for all environments (`<work_dir>/model-server`); each
environment's target owns only its tag. Its token reaches the child on standard
input, never argv or environment; pullers get it in their endpoints.yml.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

import agent
from agent.owned import marker_env
from agent.secrets import Secret
from agent.targets.base import DeployError, Health, LogSink, ModelRef
from agent.targets.pidfile import read_pid, stop_recorded, write_atomically, write_pid
from agent.targets.probe import ANSWER_TIMEOUT, accepts, probe
from agent.targets.rasa_api import RasaApi, model_id_of
from hooks.core.errors import FatalError
from hooks.core.process import alive, spawn

__all__ = ["ModelServerTarget", "Puller"]

START_TIMEOUT = 15.0  # the server is a few lines of stdlib Python
POLL = 1.0  # seconds between two rounds of GET /status on the pullers
SERVER_NAME = "rasa-gitops-model-server"  # agent/model_server.py's Server header


@dataclass(frozen=True)
class Puller:
    """A Rasa server that pulls the environment's model (`model.pullers`)."""

    name: str
    url: str  # its HTTP API: GET /status, the REST channel


class ModelServerTarget:
    name = "model_server"

    def __init__(self, *, environment: str, server_dir: Path, host: str, port: int,
                 token: Secret, token_name: str, pullers: list[Puller],
                 rasa_token: Secret | None, wait_time: float, margin: float) -> None:
        self.environment = environment
        self.server_dir = server_dir
        self.host, self.port = host, port
        self._token = token
        self.token_name = token_name
        self.pullers = pullers
        self._apis = {p.name: RasaApi(p.url, rasa_token) for p in pullers}
        self.wait_time, self.margin = wait_time, margin

    # ------------------------------------------------------------- the server

    @property
    def _pid_file(self) -> Path:
        return self.server_dir / "model-server.pid"

    @property
    def tag_file(self) -> Path:
        return self.server_dir / "tags" / f"{self.environment}.json"

    @property
    def _connect_host(self) -> str:
        return "127.0.0.1" if self.host in ("", "0.0.0.0") else (
            "::1" if self.host == "::" else self.host)

    @property
    def model_url(self) -> str:
        """What a puller's endpoints.yml `models: url` names (token aside)."""
        return f"http://{self._connect_host}:{self.port}/models/{self.environment}"

    def server_answers(self) -> bool:
        """Whether the agent's model server (not any program) answers on the port."""
        try:
            answer = requests.get(f"http://{self._connect_host}:{self.port}/health",
                                  timeout=ANSWER_TIMEOUT)
        except requests.RequestException:
            return False
        return answer.status_code == 200 and answer.headers.get(
            "Server", "").startswith(SERVER_NAME)

    def ensure_server(self, log: LogSink) -> bool:
        # As rasa_http: only a gone process or a refused port counts as dead; a
        # busy server (20 pullers downloading) still owns its port.
        recorded = read_pid(self._pid_file)
        where = (self._connect_host, self.port)
        if recorded is not None and alive(*recorded):
            if accepts(*where) is not False:
                return False
            log("the model server runs but refuses connections: restarting it")
            self.stop_all(log)
        elif accepts(*where) is not False:
            if self.server_answers():
                return False  # ours, its pid file lost (a crash right after the start)
            raise DeployError(f"port {self.port} is taken by another program, not the "
                              f"agent's model server; free it or set model.server_port")
        self._start(log)
        return True

    def _start(self, log: LogSink) -> None:
        (self.server_dir / "tags").mkdir(parents=True, exist_ok=True)
        # `python -m` with the agent's own interpreter and source, wherever it is installed.
        source = str(Path(agent.__file__).resolve().parent.parent)
        argv = [sys.executable, "-m", "agent.model_server", "--host", self.host,
                "--port", str(self.port), "--tags", str(self.server_dir / "tags"),
                "--token-name", self.token_name]
        log_file = self.server_dir / "model-server.log"
        try:
            # The token on standard input: never the command line or environment.
            pid = spawn(argv, cwd=self.server_dir, log_file=log_file,
                        stdin_text=self._token.reveal() + "\n",
                        env={**marker_env(self.server_dir), "PYTHONPATH": source})
        except FatalError as exc:
            raise DeployError(str(exc)) from None
        write_pid(self._pid_file, pid)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server_answers():
            if not alive(pid) or time.monotonic() > deadline:
                raise DeployError(f"the model server did not start on port {self.port}; "
                                  f"see {log_file}")
            time.sleep(0.2)
        log(f"the model server answers on http://{self._connect_host}:{self.port}")

    def stop_all(self, log: LogSink) -> None:
        if stop_recorded(self._pid_file, timeout=10):
            log("stopped the model server")

    def health(self) -> list[Health]:
        recorded = read_pid(self._pid_file)
        if recorded is None:
            return []  # never started
        return [probe("model server", self._connect_host, self.port,
                      process_alive=alive(*recorded), path="/health")]

    def secrets(self) -> list[str]:
        return [self._token.reveal()]

    # -------------------------------------------------------------- the tag

    def _tag(self) -> dict[str, str] | None:
        try:
            tag = json.loads(self.tag_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DeployError(f"{self.tag_file}: unreadable tag ({type(exc).__name__})") from None
        return tag if isinstance(tag, dict) else None

    def _write_tag(self, tag: dict[str, str] | None) -> None:
        if tag is None:
            self.tag_file.unlink(missing_ok=True)
            return
        self.tag_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.tag_file, json.dumps(tag, indent=1) + "\n")

    # ------------------------------------------------------------- protocol

    def upload(self, release_id: str, model: Path, log: LogSink,
               bot_dir: Path | None = None) -> ModelRef:
        # bot_dir is ignored: the pullers run with their own endpoints/credentials.
        if not model.is_file():
            raise DeployError(f"model file {model} does not exist")
        return ModelRef(release_id, model_id_of(model), str(model.resolve()))

    def activate(self, ref: ModelRef, log: LogSink) -> None:
        if not Path(ref.location).is_file():
            raise DeployError(f"model file {ref.location} does not exist")
        name = Path(ref.location).name
        previous = self._tag()
        self._write_tag({
            "path": ref.location, "etag": ref.model_id, "model_id": ref.model_id,
            # Rasa saves the download under this name and looks for *.tar.gz there.
            "filename": name if name.endswith(".tar.gz") else f"{ref.model_id}.tar.gz",
            "release_id": ref.release_id})
        try:
            self.ensure_server(log)
        except DeployError:
            self._write_tag(previous)
            raise
        log(f"{self.model_url} serves release {ref.release_id}'s model {ref.model_id}")
        if not self.pullers:
            log("no model.pullers known: nobody to confirm the pickup")
            return
        missing = self._await_pullers(ref.model_id, log)
        if missing:
            self._write_tag(previous)
            back = previous.get("model_id") if previous else None
            raise DeployError(
                f"model {ref.model_id} was not picked up within {self.wait_time + self.margin:.0f}"
                f" s (wait_time_between_pulls {self.wait_time:g} + margin {self.margin:g}) by: "
                f"{'; '.join(missing)}; the {self.environment} tag is back on "
                f"{back or 'nothing'}")

    def _await_pullers(self, model_id: str, log: LogSink) -> list[str]:
        """Each puller that did not report `model_id` in time, with what it said."""
        waiting = {p.name: "no answer yet" for p in self.pullers}
        deadline = time.monotonic() + self.wait_time + self.margin
        while True:
            for name in list(waiting):
                try:
                    live = self._puller_model(name)
                except DeployError as exc:
                    waiting[name] = str(exc)  # busy loading, or unreachable
                    continue
                if live == model_id:
                    del waiting[name]
                    log(f"{name} reports model {model_id}")
                else:
                    waiting[name] = f"reports model {live or 'none'}"
            if not waiting or time.monotonic() > deadline:
                return [f"{name}: {said}" for name, said in waiting.items()]
            time.sleep(POLL)

    def _puller_model(self, name: str) -> str | None:
        # One attempt: the wait above is the retry. RasaApi scrubs its token
        # from every message.
        return self._apis[name].model_id(attempts=1)

    def live_model_id(self) -> str | None:
        if not self.server_answers():
            # restore() then starts it again (ensure_server), as a dead Rasa server.
            raise DeployError(f"the model server on port {self.port} does not answer")
        tag = self._tag()
        return str(tag["model_id"]) if tag and tag.get("model_id") else None

    def serves(self, ref: ModelRef) -> bool:
        if self.live_model_id() != ref.model_id:
            return False
        for puller in self.pullers:
            try:
                live = self._puller_model(puller.name)
            except DeployError as exc:
                raise DeployError(f"{puller.name}: {exc}") from None
            if live != ref.model_id:
                return False
        return True

    def talk(self, sender: str, text: str, timeout: float = 120.0) -> list[str]:
        """One message through the first puller's REST channel (the smoke test)."""
        if not self.pullers:
            raise DeployError("model.pullers names no Rasa server to talk to")
        return self._apis[self.pullers[0].name].talk(sender, text, timeout)
