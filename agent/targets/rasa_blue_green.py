"""Model target: blue/green Rasa servers behind the front proxy (HAProxy).

Rasa 3.6 loads a model on its event loop, so `PUT /model` on the live server
freezes every chat for the whole load (about a minute for a DIET/TED model).
Here each switch starts a new `rasa run` with the release's model in the idle
slot (blue or green) on a spare port, beside the live one: a process on this
host or a container of the release on a Docker host, as its SlotRunner does it
(agent/targets/rasa_slots.py). Only when
its `/status` reports the release's model_id and it answered a parse and the
warm-up messages does the front proxy on the stable port (model.url) send new
requests to it; the old server then drains its in-flight requests and stops.
A failed start, load or warm-up stops the new server and raises DeployError
naming why; the old one never stopped serving.

The served server gets the bot's own endpoints.yml and credentials.yml from the
release's checkout (agent/targets/rasa_config.py) and, of the agent's
environment, only the ${VAR} names those files use: its own secrets never do.

State in `state_dir`: `<slot>.json` for each server this target started (so a
crash never leaves one untracked), `live.json` for the one switched to last
(what a restart serves again). The truth about which slot serves is HAProxy's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from agent import faults
from agent.secrets import Secret
from agent.targets.base import DEAD, DeployError, Health, LogSink, ModelRef
from agent.targets.front_proxy import SLOTS, FrontProxy, Upstream
from agent.targets.probe import accepts, probe
from agent.targets.rasa_api import RasaApi, local_token, model_id_of
from agent.targets.rasa_config import ServerConfig, check_reachable, render_server_config
from agent.targets.rasa_slots import ProcessSlotRunner, SlotRunner, SlotServer

WARMUP_SENDER = "rasa-gitops-warmup"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class BlueGreenRasaTarget:
    name = "rasa_blue_green"

    def __init__(self, *, url: str, token: Secret | None, state_dir: Path,
                 action_endpoint: str, runner: SlotRunner | None = None,
                 rasa_argv: Sequence[str] = ("rasa",), load_timeout: float = 900.0,
                 drain_timeout: float = 30.0, warmup: Sequence[str] = ("hello",),
                 haproxy: str = "haproxy", agent_env: Mapping[str, str] | None = None) -> None:
        """`runner` runs the slots' servers; without one, `rasa_argv` processes on
        this host (ProcessSlotRunner)."""
        self.url = url.rstrip("/")
        # The variables the agent reads its own secrets from (name -> config
        # key): a bot's ${VAR} naming one is refused (rasa_config).
        self.agent_env = dict(agent_env or {})
        self.state_dir = state_dir
        self.runner: SlotRunner = runner or ProcessSlotRunner(rasa_argv, state_dir)
        self.action_endpoint = action_endpoint
        self.load_timeout = load_timeout
        self.drain_timeout = drain_timeout
        self.warmup = list(warmup) or ["hello"]
        self._token = token if token is not None else local_token(state_dir)
        self._api = RasaApi(self.url, self._token)  # through the proxy, as users reach it
        parts = urlsplit(self.url)
        self.proxy = FrontProxy(listen_host=parts.hostname or "127.0.0.1",
                                listen_port=parts.port or 5005,
                                state_dir=state_dir / "proxy", haproxy=haproxy)

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
        _write_atomically(path, server.to_json())

    def _serving(self, live: Upstream | None) -> SlotServer | None:
        """The record of the server HAProxy routes to, if that server still runs."""
        if live is None:
            return None
        server = self._read(self._record_file(live.slot))
        if (server is None or (server.host, server.port) != (live.host, live.port)
                or not self.runner.alive(server)):
            return None
        return server

    def _stop_slot(self, slot: str, log: LogSink) -> None:
        self.runner.stop(slot, self._read(self._record_file(slot)), log)
        self._record_file(slot).unlink(missing_ok=True)

    def _stop_unless_live(self, new: Upstream, log: LogSink) -> None:
        """After a failed switch: stop the new server if the old one still serves."""
        try:
            serving = self.proxy.live()
        except DeployError:
            return  # unknown: the next ensure_server reaps whatever isn't live
        if serving is not None and serving != new:
            self._stop_slot(new.slot, log)

    def _reap(self, live: Upstream | None, log: LogSink) -> None:
        """Stop what a crash left in the slot HAProxy doesn't route to."""
        for slot in SLOTS:
            if live is None or slot != live.slot:
                self._stop_slot(slot, log)

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

    def _warm(self, server: SlotServer, log: LogSink) -> None:
        """A parse and the warm-up messages, before any user reaches it: the first
        requests of a fresh Rasa process are slow (lazy imports, graph caches)."""
        api = self._direct(server)
        try:
            answer = api.request("POST", "/model/parse", self.load_timeout,
                                 json={"text": self.warmup[0]})
        except DeployError as exc:
            raise DeployError(f"warm-up failed: POST /model/parse: {exc}") from None
        if answer.status_code != 200:
            raise DeployError(f"warm-up failed: {api.explain(answer, 'POST /model/parse')}")
        sender = f"{WARMUP_SENDER}-{server.release_id}-{server.slot}"
        for message in self.warmup:
            try:
                api.talk(sender, message, timeout=self.load_timeout)
            except DeployError as exc:
                raise DeployError(f"warm-up failed: {message!r}: {exc}") from None
        log(f"the new Rasa server answered a parse and {len(self.warmup)} warm-up message(s)")
        self.runner.restore_priority(server, log)

    # ------------------------------------------------------------ protocol

    def upload(self, release_id: str, model: Path, log: LogSink,
               bot_dir: Path | None = None) -> ModelRef:
        # Shared path: the servers run on this host and read the agent's file.
        if not model.is_file():
            raise DeployError(f"model file {model} does not exist")
        return ModelRef(release_id, model_id_of(model), str(model.resolve()),
                        str(bot_dir) if bot_dir else "")

    def activate(self, ref: ModelRef, log: LogSink) -> None:
        # The bot's files are checked (a ${VAR} naming an agent secret, bad
        # YAML, unknown stores) before anything starts, the proxy included.
        self._render(ref, "config-check")
        self.proxy.ensure_running(log)
        live = self.proxy.live()
        self._reap(live, log)
        current = self._serving(live)
        slot = next(s for s in SLOTS if live is None or s != live.slot)
        config, digest = self._render(ref, f"config-{slot}")
        if (current is not None and current.model_id == ref.model_id
                and current.config_hash == digest):
            log(f"model {ref.model_id} is already live (slot {current.slot})")
            self._write(self.live_file, replace(current, release_id=ref.release_id,
                                                location=ref.location, bot_dir=ref.bot_dir))
            return
        server = self._start(ref, slot, config, digest, log)
        try:
            self._wait_loaded(server)
            log(f"the new Rasa server (slot {slot}) reports model_id {server.model_id}")
            self._warm(server, log)
        except DeployError:
            self._stop_slot(slot, log)
            raise
        faults.kill_point("rasa.warmed")
        upstream = Upstream(slot, server.host, server.port)
        try:
            old = self.proxy.switch(upstream, log)
        except DeployError:
            self._stop_unless_live(upstream, log)
            raise
        # From here the release IS live: what fails now is clean-up, logged and
        # left to the next activate/ensure_server to reap, never raised (a
        # failed activate makes switch.py undo a release that serves fine, and
        # stop the old server while it still drains).
        try:
            self._write(self.live_file, server)
        except OSError as exc:
            log(f"the new Rasa server serves, but {self.live_file} could not be written "
                f"({exc.strerror}): an agent restart would start the previous release")
        faults.kill_point("rasa.switched")
        if old is not None:
            self._retire(old, log)

    def _retire(self, old: Upstream, log: LogSink) -> None:
        """Drain and stop the server that served before a switch, best-effort."""
        try:
            self.proxy.drain(old, self.drain_timeout, log)
        except DeployError as exc:
            log(f"could not drain the old Rasa server (slot {old.slot}): {exc}; it takes no "
                f"new requests: stopping it after {self.drain_timeout:.0f} s "
                "(model.drain_timeout)")
            time.sleep(self.drain_timeout)
        try:
            self._stop_slot(old.slot, log)
        except OSError as exc:
            log(f"could not stop the old Rasa server (slot {old.slot}): {exc.strerror}; "
                "the next switch or agent start stops it")

    def serves(self, ref: ModelRef) -> bool:
        # What HAProxy routes to, by the record of the server there: its model
        # was confirmed loaded before the switch, and its config is the hash of
        # what it was started with (a config-only release is a switch too).
        current = self._serving(self.proxy.live())
        if current is None or current.model_id != ref.model_id:
            return False
        try:
            _, digest = self._render(ref, "config-check")
        except DeployError:
            return False  # a config that can't be served is not what serves
        return current.config_hash == digest

    def live_model_id(self) -> str | None:
        return self._api.model_id()

    def talk(self, sender: str, text: str, timeout: float = 120.0) -> list[str]:
        return self._api.talk(sender, text, timeout)

    def server_answers(self) -> bool:
        return self._api.answers()

    def ensure_server(self, log: LogSink) -> bool:
        started = self.proxy.ensure_running(log)
        live = self.proxy.live()
        self._reap(live, log)
        serving = self._serving(live)
        # Only a refused connection is death: a busy server (even one that
        # takes seconds to accept) keeps its slot, and no second one starts.
        if serving is not None and accepts(serving.host, serving.port) is False:
            log(f"the live Rasa server (slot {serving.slot}) runs but refuses "
                "connections: replacing it")
            self._stop_slot(serving.slot, log)
            serving = None
        if serving is not None:
            return started
        production = self._read(self.live_file)
        if production is None or not Path(production.location).is_file():
            return started  # no model was ever switched to: nothing to serve yet
        log(f"no live Rasa server behind the front proxy: starting release "
            f"{production.release_id}'s model")
        self.activate(ModelRef(production.release_id, production.model_id,
                               production.location, production.bot_dir), log)
        return True

    def health(self) -> list[Health]:
        production = self._read(self.live_file)
        if production is None and not self.proxy.pid_file.exists():
            return []  # nothing was ever switched to, or `agent stop` ran
        proxy = self.proxy.health()
        if production is None:
            return [proxy]
        where: Upstream | None = Upstream(production.slot, production.host, production.port)
        if proxy.state != DEAD:
            with contextlib.suppress(DeployError):  # HAProxy's truth, when it answers
                where = self.proxy.live()
        if where is None:
            return [proxy, Health("rasa server", DEAD, "the front proxy routes to no server")]
        record = self._read(self._record_file(where.slot))
        running = (record is not None and (record.host, record.port) == (where.host, where.port)
                   and self.runner.alive(record))
        server = probe("rasa server", where.host, where.port, process_alive=running)
        return [proxy, replace(server, detail=f"slot {where.slot}: {server.detail}")]

    def stop_all(self, log: LogSink) -> None:
        for slot in SLOTS:
            self._stop_slot(slot, log)
        self.proxy.stop(log)

    def secrets(self) -> list[str]:
        return [self._token.reveal()]
