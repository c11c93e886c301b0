"""The daemon's watch over the servers it runs (`agent run`).

About once a second a thread asks each target for the `health()` of its
servers: the live Rasa server and HAProxy (or the single put_model server),
the live action server and its forwarder. Only DEAD (the process is gone, or
its port refuses connections) is restarted; SLOW (it accepts but answers late:
chat load while a release trains) is journaled once as `server.slow` and left
alone, since a second server on its port would die at bind. A dead server is
restarted through `switch.revive` as the journal's production has it, at once
the first time and then after 1, 2, 4, ... s (`supervise.max_backoff`) while it
keeps dying; staying up for a minute forgives its past crashes.

With a warm standby (`model.standby`, agent/targets/rasa_standby.py), each
round in which nothing is dead and no standby is armed also takes one short
step toward one (start it, look whether it loaded, warm and arm it), under the
deploy lock but never waiting for the load while holding it; a standby that
fails is journaled (`server.standby_failed`) and tried again with the same
backoff, one that is armed is journaled (`server.standby`).

Never at once with a switch: `switch.revive` only tries the lock every switch
and every deploy-lock holder of this process holds, then the deploy lock
(agent/deploy_lock.py), and the round is skipped while a release, promote,
rollback, restore or cleanup holds either.
The thread has its own journal connection (SQLite connections are per thread).
Every few minutes it also applies the log and journal bounds (agent/prune.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from agent import switch
from agent.journal import Journal
from agent.prune import prune
from agent.runtime import Agent
from agent.targets.base import ALIVE, DEAD, SLOW, Health
from agent.targets.rasa_standby import FAILED, READY, STANDBY_PART

PRUNE_EVERY = 600.0  # seconds
STABLE = 60.0  # seconds up after a restart that forgive the crashes before it
STANDBY_STEP = "warm standby step"  # the backoff of keep_standby, apart from STANDBY_PART's


@dataclass
class Backoff:
    """When a server that died may be restarted: at once, then after base,
    2 x base, 4 x base, ... up to `cap` seconds while it keeps dying; reset
    once it stayed up for `stable` seconds."""

    base: float = 1.0
    cap: float = 60.0
    stable: float = STABLE
    attempts: int = 0  # restarts since it was last stable
    due_at: float | None = None  # when the pending restart may start
    up_since: float | None = None

    def delay(self) -> float:
        return 0.0 if self.attempts == 0 else min(self.cap, self.base * 2 ** (self.attempts - 1))

    def dead(self, now: float) -> bool:
        """It is dead now: whether its restart may start now."""
        self.up_since = None
        if self.due_at is None:
            self.due_at = now + self.delay()
        return now >= self.due_at

    def restarting(self) -> None:
        self.attempts += 1
        self.due_at = None

    def alive(self, now: float) -> None:
        self.due_at = None
        if self.up_since is None:
            self.up_since = now
        elif now - self.up_since >= self.stable:
            self.attempts = 0


class Supervisor:
    def __init__(self, agent: Agent, *, interval: float = 1.0, max_backoff: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.agent = agent
        self.interval = interval
        self.max_backoff = max_backoff
        self.clock = clock
        self.backoffs: dict[str, Backoff] = {}
        self.slow: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ends the thread after its round (a restart in progress finishes first,
        up to `timeout`; the daemon then exits, and the next start reaps)."""
        self._stop.set()
        if self._thread.is_alive():  # never started when supervise.enabled is off
            self._thread.join(timeout)

    def _run(self) -> None:
        journal = Journal(self.agent.config.work_dir / "journal.sqlite")
        agent = replace(self.agent, journal=journal)
        next_prune = self.clock()
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.round(agent)
                    if self.clock() >= next_prune:
                        next_prune = self.clock() + PRUNE_EVERY
                        pruned = prune(agent)
                        if pruned:
                            agent.progress.info(f"bounds: {pruned}")
                except Exception as exc:  # one bad round must not end the watch
                    agent.progress.info(f"supervisor: {type(exc).__name__}: {exc}")
        finally:
            journal.close()

    def _backoff(self, environment: str, part: str) -> Backoff:
        return self.backoffs.setdefault(f"{environment}/{part}", Backoff(cap=self.max_backoff))

    def _note(self, agent: Agent, environment: str, seen: list[Health]) -> None:
        """Slow servers reported once per episode; live ones' backoff forgiven in time."""
        now = self.clock()
        for health in seen:
            key = f"{environment}/{health.part}"
            if health.state == ALIVE:
                self._backoff(environment, health.part).alive(now)
            if health.state == SLOW and key not in self.slow:
                self.slow.add(key)
                agent.journal.event("server.slow", None, environment,
                                    detail=f"{health.part}: {health.detail}")
                agent.progress.info(f"supervisor: {health.part} ({environment}) is slow "
                                    f"({health.detail}); busy is not dead: it is left alone")
            elif health.state != SLOW and key in self.slow:
                self.slow.discard(key)
                agent.progress.info(f"supervisor: {health.part} ({environment}) is "
                                    f"{health.state} again")

    def _dead(self, environment: str, seen: list[Health]) -> list[Health]:
        now = self.clock()
        due = [h for h in seen
               if h.state == DEAD and self._backoff(environment, h.part).dead(now)]
        for health in due:
            self._backoff(environment, health.part).restarting()
        return due

    def round(self, agent: Agent) -> list[str] | None:
        """One look at every environment's servers; what was restarted ([]: nothing
        was dead; None: a switch ran in an environment with a dead server)."""
        done: list[str] | None = []
        for environment in agent.config.environments:
            restarted = self._look(agent, environment.name)
            if restarted is None:
                done = None
            elif done is not None:
                done += restarted
        return done

    def _look(self, agent: Agent, environment: str) -> list[str] | None:
        place = agent.place(environment)
        model, action = place.model.health(), place.action_server.health()
        self._note(agent, environment, [*model, *action])
        if not any(h.state == DEAD for h in (*model, *action)):
            if not any(h.part == STANDBY_PART for h in model):
                self._keep_standby(agent, environment)
            return []

        def dead_now() -> tuple[list[Health], list[Health]]:
            # Asked again under the switch lock: a switch may just have ended.
            return (self._dead(environment, place.model.health()),
                    self._dead(environment, place.action_server.health()))

        return switch.revive(agent, environment, dead_now)

    def _keep_standby(self, agent: Agent, environment: str) -> None:
        """One step toward an armed warm standby, if the model target keeps one."""
        # Its own schedule: a failing standby must not delay a dead server's restart.
        backoff = self._backoff(environment, STANDBY_STEP)
        if backoff.due_at is not None and self.clock() < backoff.due_at:
            return
        step = switch.keep_standby(agent, environment)
        if step is None:
            return  # no standby kept, or a switch runs: it drops the standby anyway
        done, detail = step
        current = agent.journal.production_release(environment)
        release_id = current.id if current else None
        if done == READY:
            backoff.due_at = None
            agent.journal.event("server.standby", release_id, environment, detail=detail)
            agent.progress.info(f"supervisor: standby Rasa server ready: {detail}")
        elif done == FAILED:
            backoff.attempts += 1
            backoff.due_at = self.clock() + backoff.delay()
            agent.journal.event("server.standby_failed", release_id, environment,
                                detail=detail)
            agent.progress.info(f"supervisor: {detail}; next try in {backoff.delay():.0f} s")
