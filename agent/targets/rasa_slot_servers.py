"""The slots' Rasa servers of the blue/green target: their records, and how one
server is started, waited for until its model is loaded, and warmed.

BlueGreenRasaTarget (agent/targets/rasa_blue_green.py) builds on this: it
decides which slot serves, switches and keeps the warm standby. State in
`state_dir`: `<slot>.json` for each server started (so a crash never leaves
one untracked) and `live.json` for the one switched to last.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent import faults
from agent.secrets import Secret
from agent.targets.base import DeployError, LogSink, ModelRef
from agent.targets.pidfile import write_atomically
from agent.targets.rasa_api import RasaApi
from agent.targets.rasa_config import ServerConfig, check_reachable, render_server_config
from agent.targets.rasa_slots import SlotRunner, SlotServer

WARMUP_SENDER = "rasa-gitops-warmup"


class SlotServers:
    def __init__(self, *, state_dir: Path, runner: SlotRunner, token: Secret,
                 action_endpoint: str, load_timeout: float, warmup: Sequence[str],
                 agent_env: Mapping[str, str]) -> None:
        self.state_dir = state_dir
        self.runner = runner
        self.action_endpoint = action_endpoint
        self.load_timeout = load_timeout
        self.warmup = list(warmup) or ["hello"]
        # The variables the agent reads its own secrets from (name -> config
        # key): a bot's ${VAR} naming one is refused (rasa_config).
        self.agent_env = dict(agent_env)
        self._token = token

    # ------------------------------------------------------------- records

    def _record_file(self, slot: str) -> Path:
        return self.state_dir / f"{slot}.json"

    @property
    def live_file(self) -> Path:
        return self.state_dir / "live.json"

    def _read(self, path: Path) -> SlotServer | None:
        try:
            return SlotServer.from_json(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def _write(self, path: Path, server: SlotServer) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, server.to_json())

    def _stop_slot(self, slot: str, log: LogSink) -> None:
        self.runner.stop(slot, self._read(self._record_file(slot)), log)
        self._record_file(slot).unlink(missing_ok=True)

    # ------------------------------------------------------------- servers

    def _render(self, ref: ModelRef, folder: str) -> tuple[ServerConfig, str]:
        config = render_server_config(
            Path(ref.bot_dir) if ref.bot_dir else None, self.state_dir / folder,
            action_url=self.action_endpoint, default_tracker_db=self.runner.tracker_db(),
            agent_env=self.agent_env)
        digest = hashlib.sha256(config.endpoints.read_bytes()
                                + config.credentials.read_bytes()).hexdigest()
        return config, digest

    def _start(self, ref: ModelRef, slot: str, config: ServerConfig, digest: str,
               log: LogSink) -> SlotServer:
        check_reachable(config)
        started = self.runner.start(ref, slot, config, self._token, log)
        faults.kill_point("rasa.spawned")  # unrecorded: reaped by its mark (agent/owned.py)
        server = SlotServer(slot, started.host, started.port, ref.release_id, ref.model_id,
                            ref.location, ref.bot_dir, digest, started.handle)
        self._write(self._record_file(slot), server)
        faults.kill_point("rasa.started")
        return server

    def _direct(self, server: SlotServer) -> RasaApi:
        return RasaApi(f"http://{server.host}:{server.port}", self._token)

    def _wait_loaded(self, server: SlotServer) -> None:
        api = self._direct(server)
        deadline = time.monotonic() + self.load_timeout
        while True:
            if not self.runner.alive(server):
                raise DeployError(api.scrub(
                    f"the new Rasa server (slot {server.slot}) exited while loading the model "
                    f"of release {server.release_id}:\n{self.runner.log_tail(server)}"))
            try:
                # Rasa answers HTTP only once it tried to load its model.
                loaded = api.model_id(attempts=1)
            except DeployError:
                loaded = ""
            if loaded == server.model_id:
                return
            if loaded is None or loaded:
                raise DeployError(api.scrub(
                    f"the new Rasa server (slot {server.slot}) could not load the model of "
                    f"release {server.release_id} ({server.location}); it reports "
                    f"{loaded or 'no model'}:\n{self.runner.log_tail(server)}"))
            if time.monotonic() > deadline:
                raise DeployError(f"the new Rasa server (slot {server.slot}) did not load the "
                                  f"model within {self.load_timeout:.0f} s (model.load_timeout)")
            time.sleep(0.25)

    def _warm(self, server: SlotServer, log: LogSink, timeout: float | None = None) -> None:
        """A parse and the warm-up messages, before any user reaches it: the first
        requests of a fresh Rasa process are slow (lazy imports, graph caches).
        Each request waits up to `timeout` (default: model.load_timeout)."""
        timeout = self.load_timeout if timeout is None else timeout
        api = self._direct(server)
        try:
            answer = api.request("POST", "/model/parse", timeout,
                                 json={"text": self.warmup[0]})
        except DeployError as exc:
            raise DeployError(f"warm-up failed: POST /model/parse: {exc}") from None
        if answer.status_code != 200:
            raise DeployError(f"warm-up failed: {api.explain(answer, 'POST /model/parse')}")
        sender = f"{WARMUP_SENDER}-{server.release_id}-{server.slot}"
        for message in self.warmup:
            try:
                api.talk(sender, message, timeout=timeout)
            except DeployError as exc:
                raise DeployError(f"warm-up failed: {message!r}: {exc}") from None
        log(f"the new Rasa server answered a parse and {len(self.warmup)} warm-up message(s)")
        self.runner.restore_priority(server, log)
