"""The front proxy's HAProxy config: what agent/targets/front_proxy.py writes and
reads back.

One frontend on the stable port; one backend per slot (`blue`, `green`). Each
backend has the slot's own server `rasa` and, with a warm standby
(`model.standby`), a `standby` server marked `backup`: the OTHER slot's
server, holding the same model. HAProxy sends a backend's requests to its
backup only while its `rasa` server is down, so the standby takes traffic the
moment the live server dies, without the agent, and never while the live one
answers its checks. Only the live backend's standby entry is ever out of
maintenance.

Death, for HAProxy as for the agent (agent/targets/probe.py), is a refused
connection: the checks are plain TCP connects, never an HTTP request a busy
server answers late. A busy Rasa still accepts them: its kernel completes the
handshake whatever its event loop does, and `maxconn` keeps HAProxy's own
connections below Rasa's accept backlog (the rest queue in HAProxy), so a
check's 0.5 s connect fails only when nothing listens, or when the host itself
is starved: the one case where a live server could be taken for dead. A
check-made failover then hands its requests to the standby until the live one
answers a check again. `observe layer4` also marks the live server down at the
first connection a real request could not open, and `redispatch 1` retries
that request on the standby. A request the dead server had already accepted
is lost with it: its client gets a 502, as with any crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SLOTS = ("blue", "green")
SERVER = "rasa"  # each slot's own server in its backend
STANDBY = "standby"  # the backup entry: the other slot's server
NOWHERE = "127.0.0.1:1"  # a slot never started: HAProxy needs an address to start with
# Requests a slot's server gets at once; more wait in HAProxy's queue. Rasa
# answers one conversation's messages one by one anyway (its lock store).
SERVER_MAXCONN = 64
# A refused connect twice, 0.5 s apart (or one failed real request), is death;
# one accepted connect is life again.
CHECK = "check inter 500ms fall 2 rise 1"
OBSERVE = "observe layer4 error-limit 1 on-error mark-down"


@dataclass(frozen=True)
class Upstream:
    slot: str
    host: str
    port: int


@dataclass(frozen=True)
class Routes:
    """What the config says: the live slot's server, the other slot's last server
    (kept in maint), and the armed standby of the live backend."""

    live: Upstream | None = None
    other: Upstream | None = None
    standby: Upstream | None = None


def _server(name: str, addr: str, options: str, ready: bool) -> str:
    # maxconn: past it, requests wait in HAProxy's queue (timeout queue) instead
    # of overfilling Rasa's accept backlog, where a connect times out (a 503).
    return (f"    server {name} {addr} maxconn {SERVER_MAXCONN}{options}"
            f"{'' if ready else ' disabled'}\n")


def _backends(routes: Routes, standby: bool) -> str:
    out = []
    for slot in SLOTS:
        live = routes.live is not None and routes.live.slot == slot
        known = routes.live if live else (
            routes.other if routes.other and routes.other.slot == slot else None)
        addr = f"{known.host}:{known.port}" if known else NOWHERE
        text = f"backend {slot}\n"
        text += _server(SERVER, addr, f" {CHECK} {OBSERVE}" if standby else "", live)
        if standby:
            armed = routes.standby if live and routes.standby else None
            where = f"{armed.host}:{armed.port}" if armed else NOWHERE
            text += _server(STANDBY, where, f" {CHECK} backup", armed is not None)
        out.append(text)
    return "".join(out)


def global_section(socket_path: Path) -> str:
    """HAProxy's `global` section, the same for every proxy the agent runs."""
    return (
        "global\n"
        f'    stats socket "{socket_path}" mode 600 level admin\n'
        "    stats timeout 30s\n"
        # One thread is plenty for a bot's traffic and keeps a switch a single
        # step; noreuseport makes a taken port fail instead of sharing it.
        "    nbthread 1\n"
        "    noreuseport\n"
        "    maxconn 4096\n"
    )


def render(*, socket_path: Path, listen_host: str, listen_port: int, map_file: Path,
           routes: Routes, standby: bool) -> str:
    """The whole config; `standby`: with the backup entries and their checks."""
    return (
        "# Written by the rasa-gitops agent at every switch; edits are lost.\n"
        + global_section(socket_path)
        + "defaults\n"
        "    mode http\n"
        "    option http-keep-alive\n"
        "    timeout connect 5s\n"
        # Rasa may take a while for a reply (custom actions, a cold model).
        "    timeout client 15m\n"
        "    timeout server 15m\n"
        "    timeout http-request 60s\n"
        "    timeout http-keep-alive 60s\n"
        # A request queued behind a busy server (maxconn) waits this long.
        "    timeout queue 120s\n"
        # socket.io websockets live long after their upgrade.
        "    timeout tunnel 24h\n"
        "    timeout client-fin 30s\n"
        "    retries 3\n"
        + ("    option redispatch 1\n" if standby else "")
        + "frontend stable\n"
        f"    bind {listen_host}:{listen_port}\n"
        f'    use_backend %[str(live),map("{map_file}",blue)]\n'
        "    default_backend blue\n"
        + _backends(routes, standby)
    )


def _upstream(slot: str, addr: str) -> Upstream | None:
    host, _, port = addr.rpartition(":")
    if addr == NOWHERE or not port.isdigit():
        return None
    return Upstream(slot, host, int(port))


def _other(slot: str) -> str:
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]


def parse(text: str, routed: str) -> Routes:
    """The routes a config written by `render` holds, `routed` being the slot its
    map file names (read back when HAProxy starts again, so the stable port and
    the standby setting are those of the current agent config)."""
    found: dict[tuple[str, str], tuple[Upstream | None, bool]] = {}
    backend = ""
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["backend"] and len(words) > 1:
            backend = words[1]
        elif words[:1] == ["server"] and len(words) > 2 and backend in SLOTS:
            # A standby entry names the other slot's server.
            slot = backend if words[1] != STANDBY else _other(backend)
            found[(backend, words[1])] = (_upstream(slot, words[2]), "disabled" not in words)
    other = _other(routed)
    live, live_ready = found.get((routed, SERVER), (None, False))
    standby, standby_ready = found.get((routed, STANDBY), (None, False))
    old, _ = found.get((other, SERVER), (None, False))
    if not live_ready:
        return Routes(None, old)
    return Routes(live, old, standby if standby_ready else None)
