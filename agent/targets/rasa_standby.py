"""The warm standby of the blue/green target (`model.standby`).

A Rasa server needs its model loaded before it answers (tens of seconds, a
minute for DIET/TED), so a live server that dies can't be replaced within
seconds by a new one. A standby can: between releases the idle slot holds a
second `rasa run` with the live model and bot config, loaded and warmed, which
HAProxy declares as the live backend's `backup` (agent/targets/haproxy_config.py)
and sends requests to the moment the live one fails its connects. The restart
repair then makes the standby's slot the live one (`_take_over`), and the next
`keep_standby` starts a new standby in the freed slot.

`keep_standby` is one short step, called by the daemon's supervisor about once
a second under the deploy lock (agent/supervise.py): it starts a standby
without waiting for it, looks whether it loaded, and warms and arms it once it
has; the load runs while no lock is held. A release needs the idle slot for its
new server: `activate` stops the standby first (`_drop_standby`), and the
daemon starts one of the new model after the switch. Which server serves is
always one: the live slot's, or (only while that one is dead) the standby.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from agent.secrets import Secret
from agent.targets.base import DeployError, Health, LogSink, ModelRef
from agent.targets.front_proxy import SLOTS, FrontProxy, Upstream
from agent.targets.probe import probe
from agent.targets.rasa_slot_servers import SlotServers
from agent.targets.rasa_slots import SlotRunner, SlotServer

STANDBY_PART = "rasa standby"  # its Health.part
PEEK_TIMEOUT = 0.5  # one look whether a loading standby answers, in a supervisor round
WARM_TIMEOUT = 30.0  # seconds each warm-up request of a loaded standby may take
# What keep_standby did: nothing to do (or still loading), a standby was
# started, one is ready and armed, or one failed (the supervisor backs off).
NOTHING, STARTED, READY, FAILED = "", "started", "ready", "failed"


def idle_slot(live: str) -> str:
    return SLOTS[1] if live == SLOTS[0] else SLOTS[0]


class StandbyServers(SlotServers):
    def __init__(self, *, state_dir: Path, proxy: FrontProxy, runner: SlotRunner,
                 token: Secret, action_endpoint: str, load_timeout: float,
                 warmup: Sequence[str], agent_env: Mapping[str, str]) -> None:
        super().__init__(state_dir=state_dir, runner=runner, token=token,
                         action_endpoint=action_endpoint, load_timeout=load_timeout,
                         warmup=warmup, agent_env=agent_env)
        self.proxy = proxy
        self.standby = proxy.standby

    def _fitting_standby(self, live: Upstream | None) -> SlotServer | None:
        """The idle slot's server if it may stand by: it runs, with the model and
        bot config of the live slot's server (loading, loaded or armed)."""
        if not self.standby or live is None:
            return None
        # The live slot's record (alive or not: its standby takes over when it
        # died), else live.json (a live server that refused connections was
        # stopped, its record gone).
        live_server = self._read(self._record_file(live.slot)) or self._read(self.live_file)
        spare = self._read(self._record_file(idle_slot(live.slot)))
        if live_server is None or spare is None or not self.runner.alive(spare):
            return None
        if (spare.model_id, spare.config_hash) != (live_server.model_id,
                                                   live_server.config_hash):
            return None
        return spare

    def _armed(self, live: Upstream | None, armed: Upstream | None) -> SlotServer | None:
        """The fitting standby, if HAProxy has it armed behind `live`."""
        spare = self._fitting_standby(live)
        if spare is None or armed is None or (spare.host, spare.port) != (armed.host,
                                                                          armed.port):
            return None
        return spare

    def _drop_standby(self, log: LogSink) -> None:
        """Free the idle slot (a release's new server goes there): disarm, then stop."""
        if self.standby:
            with contextlib.suppress(DeployError):  # no live slot: nothing is armed
                self.proxy.set_standby(None, log)
        live = self.proxy.live()
        if live is not None:
            self._stop_slot(idle_slot(live.slot), log)

    def _disarm_stale(self, live: Upstream | None, armed: Upstream | None,
                      log: LogSink) -> bool:
        """An armed standby that died or no longer fits is disarmed; whether one was."""
        if armed is None or self._armed(live, armed) is not None:
            return False
        self.proxy.set_standby(None, log)
        return True

    def _standby_health(self, live: Upstream, armed: Upstream | None) -> list[Health]:
        """The armed standby's health ([] when none is armed)."""
        if armed is None:
            return []
        record = self._read(self._record_file(armed.slot))
        running = (record is not None and (record.host, record.port) == (armed.host, armed.port)
                   and self.runner.alive(record))
        found = probe(STANDBY_PART, armed.host, armed.port, process_alive=running)
        return [replace(found, detail=f"slot {armed.slot}, behind {live.slot}: {found.detail}")]

    # ------------------------------------------------------------- the step

    def keep_standby(self, log: LogSink) -> tuple[str, str]:
        """One step toward an armed standby: (what was done, detail)."""
        if not self.standby or not self.proxy.running() or not self.proxy.has_standby_entries():
            return NOTHING, ""  # an older HAProxy: it gets the entries at its next start
        live, armed = self.proxy.routes()
        serving = self._serving(live)
        if live is None or serving is None:
            return NOTHING, ""  # nothing serves: the restart repair's work first
        spare = self._fitting_standby(live)
        if armed is not None:
            if spare is not None and (spare.host, spare.port) == (armed.host, armed.port):
                return NOTHING, ""
            self.proxy.set_standby(None, log)
        idle = idle_slot(live.slot)
        if spare is None:
            return self._start_standby(serving, idle, log)
        return self._arm_when_loaded(spare, log)

    def _serving(self, live: Upstream | None) -> SlotServer | None:
        """The record of the server HAProxy routes to, if that server still runs."""
        if live is None:
            return None
        server = self._read(self._record_file(live.slot))
        if (server is None or (server.host, server.port) != (live.host, live.port)
                or not self.runner.alive(server)):
            return None
        return server

    def _start_standby(self, serving: SlotServer, idle: str, log: LogSink) -> tuple[str, str]:
        left = self._read(self._record_file(idle))
        self._stop_slot(idle, log)
        if left is not None and (left.model_id, left.config_hash) == (serving.model_id,
                                                                      serving.config_hash):
            # Ours, and it exited before it was armed: reported, and the
            # supervisor waits (backoff) before the next try.
            return FAILED, self._direct(left).scrub(
                f"the standby Rasa server (slot {idle}) exited:\n{self.runner.log_tail(left)}")
        ref = ModelRef(serving.release_id, serving.model_id, serving.location, serving.bot_dir)
        if not Path(ref.location).is_file():
            return FAILED, f"the live model's file {ref.location} is gone: no standby"
        config, digest = self._render(ref, f"config-{idle}")
        if digest != serving.config_hash:
            return FAILED, ("the bot config renders differently now than when the live "
                            "server started (an environment variable changed?): no standby")
        log(f"starting a standby Rasa server in slot {idle} (release {ref.release_id})")
        self._start(ref, idle, config, digest, log)
        return STARTED, f"slot {idle}, release {ref.release_id}"

    def _arm_when_loaded(self, spare: SlotServer, log: LogSink) -> tuple[str, str]:
        try:
            answer = self._direct(spare).request("GET", "/status", PEEK_TIMEOUT, attempts=1)
        except DeployError:
            answer = None  # still loading: Rasa answers only once its model is loaded
        if answer is None or answer.status_code != 200:
            since = time.time() - self._record_file(spare.slot).stat().st_mtime
            if answer is None and since < self.load_timeout:
                return NOTHING, ""
            tail = self.runner.log_tail(spare)
            self._stop_slot(spare.slot, log)
            why = ("did not load its model within model.load_timeout" if answer is None
                   else f"answers /status with HTTP {answer.status_code}")
            return FAILED, self._direct(spare).scrub(
                f"the standby Rasa server (slot {spare.slot}) {why}:\n{tail}")
        try:
            status = answer.json()
            loaded = status.get("model_id") if isinstance(status, dict) else str(status)
        except ValueError:
            loaded = "something that is not JSON"
        try:
            if loaded != spare.model_id:
                raise DeployError(f"it reports model {loaded or 'none'}, not {spare.model_id}")
            # Loaded already; the warm-up runs under the deploy lock (keep_standby):
            # bounded, so a release or rollback waits for it at most this long.
            self._warm(spare, log, timeout=min(self.load_timeout, WARM_TIMEOUT))
            self.proxy.set_standby(Upstream(spare.slot, spare.host, spare.port), log)
        except DeployError as exc:
            self._stop_slot(spare.slot, log)
            return FAILED, self._direct(spare).scrub(
                f"the standby Rasa server (slot {spare.slot}): {exc}")
        return READY, (f"slot {spare.slot} ({spare.host}:{spare.port}), release "
                       f"{spare.release_id}, model {spare.model_id}")
