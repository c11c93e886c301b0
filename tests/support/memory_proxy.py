"""The front proxy in memory, for the blue/green target's fast unit tests.

It has `agent.targets.front_proxy.FrontProxy`'s interface (ensure_running,
live, switch, drain, stop, running) without HAProxy: `live` is the upstream
switched to last. A test makes one method raise DeployError, as HAProxy's
runtime API can fail, with `fail = {"drain"}`. What the target does with
the real HAProxy is tests/agent/targets/test_rasa_blue_green.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.targets.base import DeployError, LogSink
from agent.targets.front_proxy import Upstream


@dataclass
class MemoryProxy:
    upstream: Upstream | None = None
    up: bool = False
    fail: set[str] = field(default_factory=set)
    drained: list[Upstream] = field(default_factory=list)

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

    def switch(self, to: Upstream, log: LogSink) -> Upstream | None:
        self._call("switch")
        old, self.upstream = self.upstream, to
        return old

    def drain(self, old: Upstream, timeout: float, log: LogSink) -> None:
        self._call("drain")
        self.drained.append(old)

    def stop(self, log: LogSink) -> None:
        self.up, self.upstream = False, None

    def running(self) -> bool:
        return self.up
