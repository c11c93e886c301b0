"""The front proxy in memory, for the blue/green target's fast unit tests.

It has `agent.targets.front_proxy.FrontProxy`'s interface (ensure_running,
live, routes, switch, set_standby, drain, stop, running, health) without
HAProxy: `live` is the upstream switched to last, `routes` adds the armed
standby. A test makes one method raise DeployError, as HAProxy's runtime API
can fail, with `fail = {"drain"}`. What the target does with
the real HAProxy is tests/agent/targets/test_rasa_blue_green.py's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from agent.targets.base import ALIVE, DEAD, DeployError, Health, LogSink
from agent.targets.front_proxy import Upstream


@dataclass
class MemoryProxy:
    upstream: Upstream | None = None
    up: bool = False
    fail: set[str] = field(default_factory=set)
    drained: list[Upstream] = field(default_factory=list)
    standby: bool = False  # FrontProxy(standby=...): whether it has backup entries
    armed: Upstream | None = None  # the standby armed behind the live slot

    def _call(self, method: str) -> None:
        if method in self.fail:
            raise DeployError(f"HAProxy runtime API: {method} failed (as the test asked)")

    def ensure_running(self, log: LogSink) -> bool:
        self._call("ensure_running")
        started, self.up = not self.up, True
        return started

    def live(self) -> Upstream | None:
        self._call("live")
        return self.upstream

    def routes(self) -> tuple[Upstream | None, Upstream | None]:
        self._call("live")
        return self.upstream, self.armed

    def has_standby_entries(self) -> bool:
        return self.standby

    def set_standby(self, standby: Upstream | None, log: LogSink) -> None:
        self._call("set_standby")
        if not self.standby or self.upstream is None:
            raise DeployError("no standby entry, or nothing live")
        self.armed = standby

    def switch(self, to: Upstream, log: LogSink) -> Upstream | None:
        self._call("switch")
        old, self.upstream, self.armed = self.upstream, to, None
        return old

    def drain(self, old: Upstream, timeout: float, log: LogSink) -> None:
        self._call("drain")
        self.drained.append(old)

    def stop(self, log: LogSink) -> None:
        self.up, self.upstream = False, None

    def running(self) -> bool:
        return self.up

    @property
    def pid_file(self) -> Path:
        return Path(os.devnull)  # "exists": the target asks its health

    def health(self) -> Health:
        return Health("front proxy", ALIVE if self.up else DEAD, "in memory")
