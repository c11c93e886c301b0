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

The warm standby (`model.standby`, agent/targets/rasa_standby.py): between
releases the idle slot holds a second server with the live model, which
HAProxy sends traffic to the moment the live one dies; the restart repair then
makes it the live slot. A release's new server needs the idle slot, so the
standby is stopped first, and the daemon starts a new one after the switch.

State in `state_dir` (agent/targets/rasa_slot_servers.py): `<slot>.json` for
each server, `live.json` for the one switched to last (what a restart serves
again). The truth about which slot serves is HAProxy's.
"""

from __future__ import annotations

import contextlib
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
from agent.targets.rasa_slots import ProcessSlotRunner, SlotRunner
from agent.targets.rasa_standby import StandbyServers, idle_slot


class BlueGreenRasaTarget(StandbyServers):
    name = "rasa_blue_green"

    def __init__(self, *, url: str, token: Secret | None, state_dir: Path,
                 action_endpoint: str, runner: SlotRunner | None = None,
                 rasa_argv: Sequence[str] = ("rasa",), load_timeout: float = 900.0,
                 drain_timeout: float = 30.0, warmup: Sequence[str] = ("hello",),
                 haproxy: str = "haproxy", agent_env: Mapping[str, str] | None = None,
                 standby: bool = False) -> None:
        """`runner` runs the slots' servers; without one, `rasa_argv` processes on
        this host (ProcessSlotRunner). `standby`: keep a warm standby server."""
        self.url = url.rstrip("/")
        token = token if token is not None else local_token(state_dir)
        parts = urlsplit(self.url)
        proxy = FrontProxy(listen_host=parts.hostname or "127.0.0.1",
                           listen_port=parts.port or 5005, state_dir=state_dir / "proxy",
                           haproxy=haproxy, standby=standby)
        super().__init__(state_dir=state_dir, proxy=proxy,
                         runner=runner or ProcessSlotRunner(rasa_argv, state_dir),
                         token=token, action_endpoint=action_endpoint,
                         load_timeout=load_timeout, warmup=warmup, agent_env=agent_env or {})
        self.drain_timeout = drain_timeout
        self._api = RasaApi(self.url, self._token)  # through the proxy, as users reach it

    # ------------------------------------------------------------- records

    def _stop_unless_live(self, new: Upstream, log: LogSink) -> None:
        """After a failed switch: stop the new server if the old one still serves."""
        try:
            serving = self.proxy.live()
        except DeployError:
            return  # unknown: the next ensure_server reaps whatever isn't live
        if serving is not None and serving != new:
            self._stop_slot(new.slot, log)

    def _reap(self, live: Upstream | None, log: LogSink) -> None:
        """Stop what a crash left in the slot HAProxy doesn't route to (but a
        standby of the live model, loading or armed)."""
        keep = self._fitting_standby(live)
        for slot in SLOTS:
            if (live is None or slot != live.slot) and (keep is None or slot != keep.slot):
                self._stop_slot(slot, log)

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
        self._take_over(log)  # a dead live server with an armed standby: the standby serves
        live = self.proxy.live()
        self._reap(live, log)
        current = self._serving(live)
        slot = idle_slot(live.slot) if live is not None else SLOTS[0]
        config, digest = self._render(ref, f"config-{slot}")
        if (current is not None and current.model_id == ref.model_id
                and current.config_hash == digest):
            log(f"model {ref.model_id} is already live (slot {current.slot})")
            self._write(self.live_file, replace(current, release_id=ref.release_id,
                                                location=ref.location, bot_dir=ref.bot_dir))
            return
        if live is not None:
            self._drop_standby(log)  # the idle slot is the new server's
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

    def _take_over(self, log: LogSink) -> bool:
        """The live server is dead and an armed standby runs (HAProxy already
        sends it the requests): make its slot the live one. Whether it did."""
        live, armed = self.proxy.routes()
        spare = self._armed(live, armed)
        if live is None or spare is None or self._serving(live) is not None:
            return False
        if accepts(spare.host, spare.port) is False:
            return False
        old = self.proxy.switch(Upstream(spare.slot, spare.host, spare.port), log)
        production = self._read(self.live_file)
        self._write(self.live_file, spare if production is None else replace(
            spare, release_id=production.release_id, location=production.location,
            bot_dir=production.bot_dir))
        log(f"the standby Rasa server (slot {spare.slot}, release {spare.release_id}) "
            f"took over from the dead one in slot {live.slot}")
        if old is not None:
            self._retire(old, log)
        return True

    def serves(self, ref: ModelRef) -> bool:
        # What HAProxy routes to, by the record of the server there: its model
        # was confirmed loaded before the switch, and its config is the hash of
        # what it was started with (a config-only release is a switch too).
        live, armed = self.proxy.routes()
        # While the live server is dead, its armed standby (same model and
        # config) is what answers.
        current = self._serving(live) or self._armed(live, armed)
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
        live, armed = self.proxy.routes()
        serving = self._serving(live)
        # Only a refused connection is death: a busy server (even one that
        # takes seconds to accept) keeps its slot, and no second one starts.
        if serving is not None and accepts(serving.host, serving.port) is False:
            log(f"the live Rasa server (slot {serving.slot}) runs but refuses "
                "connections: replacing it")
            self._stop_slot(serving.slot, log)
            serving = None
        if serving is None and self._take_over(log):
            return True
        repaired = self._disarm_stale(live, armed, log)
        self._reap(live, log)
        if serving is not None:
            return started or repaired
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
        armed = None
        if proxy.state != DEAD:
            with contextlib.suppress(DeployError):  # HAProxy's truth, when it answers
                where, armed = self.proxy.routes()
        if where is None:
            return [proxy, Health("rasa server", DEAD, "the front proxy routes to no server")]
        record = self._read(self._record_file(where.slot))
        running = (record is not None and (record.host, record.port) == (where.host, where.port)
                   and self.runner.alive(record))
        server = probe("rasa server", where.host, where.port, process_alive=running)
        found = [proxy, replace(server, detail=f"slot {where.slot}: {server.detail}")]
        return found + self._standby_health(where, armed)

    def stop_all(self, log: LogSink) -> None:
        for slot in SLOTS:  # the standby's slot included
            self._stop_slot(slot, log)
        self.proxy.stop(log)

    def secrets(self) -> list[str]:
        return [self._token.reveal()]
