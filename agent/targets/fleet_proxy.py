"""HAProxy in front of a Swarm fleet of Rasa replicas (agent/targets/docker/rasa_fleet.py).

The fleet's replicas listen with host networking on fixed ports: replica
slot `i` of a release on `base + i - 1`, where a release takes the port set
the live one doesn't (two sets, so an old and a new task of one slot can run
side by side during a start-first update). This proxy owns the stable port and
has a server entry for every port of both sets; which of them take requests
is decided by HAProxy's own checks, not by the agent, because Swarm, not the
agent, decides when a task starts and stops during its rolling update:

- A replica takes requests only while its `GET /status` answers 200: Rasa
  binds its port once it tried to load its model, and answers 409 there when
  that failed, so no user reaches a replica that still loads or has no model.
  Swarm's own health check ("/status reports THIS release's model_id") is what
  lets the update go on. The check carries the token, so the config is 0600.
- A stopping replica refuses new connections (Sanic closes its listener on
  SIGTERM and finishes what it accepted). `retry-on conn-failure` with
  `redispatch` sends a request that met a refused connect to another
  replica; `observe layer4` marks the port down at that first failure, before
  the next check would.
- `http-server-close`: each request opens its own server connection, so no
  request is sent on a kept-alive connection a stopping replica just closed
  (the one failure a retry could not safely repeat: a POST already sent).

Which replica a conversation's requests reach doesn't matter for its
tracker: the replicas share the bot's tracker store, and the shared lock
store makes one conversation's messages run one after the other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from agent.secrets import Secret
from agent.targets.base import DeployError, LogSink
from agent.targets.haproxy_config import global_section
from agent.targets.haproxy_process import HaproxyProcess, write_atomically

# A refused connection marks a replica down at once (observe layer4); a
# failed or slow /status three times in a row too (a busy replica answers
# within the check timeout; the others take its requests meanwhile).
CHECK = "check inter 1s fall 3 rise 1 observe layer4 error-limit 1 on-error mark-down"
SERVER_MAXCONN = 64


def render_fleet(*, socket_path: Path, listen_host: str, listen_port: int,
                 backends: Sequence[tuple[str, int]], token: str) -> str:
    servers = "".join(
        f"    server r{port}-{n} {bracketed(host)}:{port} maxconn {SERVER_MAXCONN} {CHECK}\n"
        for n, (host, port) in enumerate(backends))
    return (
        "# Written by the rasa-gitops agent for its Swarm fleet; edits are lost.\n"
        + global_section(socket_path)
        + "defaults\n"
        "    mode http\n"
        "    option http-server-close\n"
        "    timeout connect 2s\n"
        "    timeout client 15m\n"
        "    timeout server 15m\n"
        "    timeout http-request 60s\n"
        "    timeout queue 120s\n"
        "    timeout tunnel 24h\n"
        "    timeout client-fin 30s\n"
        "    retries 3\n"
        "    option redispatch 1\n"
        "    retry-on conn-failure\n"
        "frontend stable\n"
        f"    bind {listen_host}:{listen_port}\n"
        "    default_backend fleet\n"
        "backend fleet\n"
        "    balance roundrobin\n"
        f"    option httpchk GET /status?token={token}\n"
        "    http-check expect status 200\n"
        "    timeout check 5s\n"
        + servers
    )


def bracketed(host: str) -> str:
    """A host as it goes into a URL or a `server` line (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class FleetProxy(HaproxyProcess):
    """The stable port of a fleet: every replica port of both sets, on every host."""

    def __init__(self, *, listen_host: str, listen_port: int, state_dir: Path,
                 backends: Sequence[tuple[str, int]], token: Secret,
                 haproxy: str = "haproxy") -> None:
        super().__init__(listen_host=listen_host, listen_port=listen_port,
                         state_dir=state_dir, haproxy=haproxy)
        self._default_backends = list(backends)
        self._token = token

    @property
    def backends_file(self) -> Path:
        return self.state_dir / "backends.json"

    @property
    def backends(self) -> list[tuple[str, int]]:
        """The last ones the fleet named (its nodes can change), else the defaults."""
        try:
            named = json.loads(self.backends_file.read_text(encoding="utf-8"))
            return [(str(host), int(port)) for host, port in named]
        except (OSError, ValueError, TypeError):  # none yet, or not in our shape
            return self._default_backends

    def use_backends(self, backends: Sequence[tuple[str, int]], log: LogSink) -> None:
        """Remember the replicas' addresses (kept for the agent's restarts) and
        run with them."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.backends_file, mode=0o600,
                         text=json.dumps([[host, port] for host, port in backends]))
        self.ensure_running(log)

    def _config(self) -> str:
        return render_fleet(socket_path=self.socket_path, listen_host=self.listen_host,
                            listen_port=self.listen_port, backends=self.backends,
                            token=self._token.reveal())

    def _write_config(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.config_file, mode=0o600, text=self._config())

    def replicas_up(self) -> int:
        """How many replica entries pass HAProxy's checks now (its admin socket)."""
        return sum(1 for row in self.stat_rows()
                   if row.get("svname") not in ("FRONTEND", "BACKEND")
                   and row.get("status", "").startswith("UP"))

    def wait_for_replicas(self, count: int, timeout: float = 15.0) -> None:
        """Until `count` entries pass HAProxy's check: a replica that just came up
        takes requests only after its next check (every second)."""
        deadline = time.monotonic() + timeout
        while self.replicas_up() < count:
            if time.monotonic() > deadline:
                raise DeployError(f"HAProxy's check passed for {self.replicas_up()} of {count} "
                                  f"replica(s) within {timeout:.0f} s; see {self.log_file}")
            time.sleep(0.2)

    def ensure_running(self, log: LogSink) -> bool:
        """Start it, or start it again when its config changed (other ports,
        replicas or token): a running HAProxy keeps the config it started with."""
        if self.running():
            try:
                current = self.config_file.read_text(encoding="utf-8")
            except OSError:
                current = ""
            if current == self._config():
                return False
            log("the fleet's proxy config changed (ports, replicas, nodes or token): "
                "restarting it")
            self.stop(log)
        return super().ensure_running(log)
