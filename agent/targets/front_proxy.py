"""HAProxy as the front proxy on the stable port, switched and drained live.

Why HAProxy and not a Python proxy: it carries every HTTP path, websocket
upgrades (socket.io) and kept-alive connections, its runtime API switches and
drains without a reload, and Debian packages it. This module only writes its
config and talks to its admin socket.

Layout (the config: agent/targets/haproxy_config.py): one frontend on the
stable port; one backend per slot (`blue`, `green`), each with its server
`rasa` and, with a warm standby, a `backup` entry `standby`. Which backend takes requests is one
entry of a map file (`live -> blue|green`) that the frontend reads for every
request, so `set map` moves every NEW request at once, also those on kept-alive
client connections, and no request can go to both slots in between. The old
slot's server is then put in `drain` and, once its in-flight requests (scur)
are 0, in `maint`.

HAProxy runs in its own session, so it keeps serving while the agent restarts;
the config and the map file are rewritten at every switch, so a restarted
HAProxy routes to the live slot. The truth about what serves is HAProxy's
runtime state, read over its admin socket (mode 0600, in `state_dir`).
"""

from __future__ import annotations

import time
from pathlib import Path

from agent.targets.base import DeployError, LogSink
from agent.targets.haproxy_config import SERVER, STANDBY, Routes, parse, render
from agent.targets.haproxy_config import SLOTS as SLOTS
from agent.targets.haproxy_config import Upstream as Upstream
from agent.targets.haproxy_process import HaproxyProcess, write_atomically
from agent.targets.haproxy_process import free_port as free_port
from agent.targets.haproxy_process import port_taken as port_taken


class FrontProxy(HaproxyProcess):
    def __init__(self, *, listen_host: str, listen_port: int, state_dir: Path,
                 haproxy: str = "haproxy", standby: bool = False) -> None:
        """`standby`: each backend gets a backup entry for a warm standby
        (agent/targets/haproxy_config.py)."""
        super().__init__(listen_host=listen_host, listen_port=listen_port,
                         state_dir=state_dir, haproxy=haproxy)
        self.standby = standby

    @property
    def map_file(self) -> Path:
        return self.state_dir / "route.map"

    # ------------------------------------------------------------ config

    def _write_files(self, routes: Routes) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        live = routes.live.slot if routes.live else SLOTS[0]
        write_atomically(self.map_file, f"live {live}\n", mode=0o644)
        write_atomically(self.config_file, mode=0o644, text=render(
            socket_path=self.socket_path, listen_host=self.listen_host,
            listen_port=self.listen_port, map_file=self.map_file, routes=routes,
            standby=self.standby))

    def _written_routes(self) -> Routes:
        """The routes of the config last written (the live slot as last switched)."""
        if not self.config_file.is_file() or not self.map_file.is_file():
            return Routes()
        words = self.map_file.read_text(encoding="utf-8").split()
        routed = words[1] if len(words) > 1 and words[1] in SLOTS else SLOTS[0]
        return parse(self.config_file.read_text(encoding="utf-8"), routed)

    def _write_config(self) -> None:
        # The routes as last switched; the stable port and the standby setting
        # as configured now.
        self._write_files(self._written_routes())

    # ------------------------------------------------------- routing

    def _servers(self) -> dict[tuple[str, str], tuple[Upstream, str]]:
        """Each backend's servers ((slot, name) -> address, admin state), from
        `show servers state`; a standby entry's address is the other slot's."""
        found: dict[tuple[str, str], tuple[Upstream, str]] = {}
        for slot in SLOTS:
            lines = self._command(f"show servers state {slot}").splitlines()
            header = next((line[2:].split() for line in lines if line.startswith("# be_id")), [])
            for line in lines:
                if not line or line.startswith("#") or line[0].isalpha():
                    continue
                row = dict(zip(header, line.split(), strict=False))
                name = row.get("srv_name", "")
                if name not in (SERVER, STANDBY):
                    continue
                # srv_admin_state bit 0x01/0x02/0x20 = maint (forced, inherited, resolution),
                # 0x08 = drain forced.
                admin = int(row.get("srv_admin_state", "0"))
                state = "maint" if admin & 0x23 else ("drain" if admin & 0x08 else "ready")
                owner = slot if name == SERVER else next(s for s in SLOTS if s != slot)
                found[(slot, name)] = (Upstream(owner, row["srv_addr"], int(row["srv_port"])),
                                       state)
        return found

    def _routed_slot(self) -> str:
        answer = self._command(f"show map {self.map_file}")
        for line in answer.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "live" and parts[2] in SLOTS:
                return parts[2]
        return SLOTS[0]  # the frontend's default

    def routes(self) -> tuple[Upstream | None, Upstream | None]:
        """(the live slot's server, the standby armed behind it), from HAProxy;
        (None, None) when it does not run."""
        if not self.running():
            return None, None
        slot = self._routed_slot()
        servers = self._servers()
        server, standby = servers.get((slot, SERVER)), servers.get((slot, STANDBY))
        if server is None or server[1] == "maint":
            return None, None
        return server[0], (standby[0] if standby and standby[1] == "ready" else None)

    def live(self) -> Upstream | None:
        return self.routes()[0]

    def has_standby_entries(self) -> bool:
        """Whether the running HAProxy has the backup entries (see switch)."""
        return any(name == STANDBY for _, name in self._servers())

    def set_standby(self, standby: Upstream | None, log: LogSink) -> None:
        """Arm `standby` (the idle slot's server) as the live backend's backup, or
        disarm it (None). DeployError when nothing is live or HAProxy refuses."""
        if not self.standby or not self.has_standby_entries():
            raise DeployError("the running front proxy has no standby entries: it gets them "
                              "at its next start (model.standby on)")
        live, armed = self.routes()
        if live is None:
            raise DeployError("the front proxy routes to no server: no standby to arm")
        entry = f"{live.slot}/{STANDBY}"
        if standby is None:
            self._command(f"set server {entry} state maint")
        else:
            self._command(f"set server {entry} addr {standby.host} port {standby.port}")
            self._command(f"set server {entry} state ready")
        other = self._servers().get((standby.slot if standby else "", SERVER))
        self._write_files(Routes(live, other[0] if other else None, standby))
        if standby is not None:
            log(f"front proxy: standby {standby.slot} ({standby.host}:{standby.port}) takes "
                f"{live.slot}'s requests if it dies")
        elif armed is not None:
            log(f"front proxy: standby {armed.slot} ({armed.host}:{armed.port}) disarmed")

    def sessions(self, slot: str) -> int:
        """Requests a slot's server still owes an answer: in flight (scur) plus
        queued for it (qcur), from `show stat`."""
        for row in self.stat_rows():
            if row.get("pxname") == slot and row.get("svname") == SERVER:
                return int(row.get("scur") or 0) + int(row.get("qcur") or 0)
        return 0

    def switch(self, to: Upstream, log: LogSink) -> Upstream | None:
        if to.slot not in SLOTS:
            raise DeployError(f"front proxy: unknown slot {to.slot!r}")
        self.ensure_running(log)
        old = self.live()
        # A HAProxy started before model.standby was on has no backup entries
        # (they come with its next start, from the config rewritten below).
        backups = self.standby and self.has_standby_entries()
        self._command(f"set server {to.slot}/{SERVER} addr {to.host} port {to.port}")
        self._command(f"set server {to.slot}/{SERVER} state ready")
        if backups:  # no backup behind the new slot until one is armed for it
            self._command(f"set server {to.slot}/{STANDBY} state maint")
        # The one step that moves traffic: every request from now on, also on
        # kept-alive connections, is routed by this entry.
        self._command(f"set map {self.map_file} live {to.slot}")
        if old is not None and old.slot != to.slot:
            self._command(f"set server {old.slot}/{SERVER} state drain")
        if backups:
            other = next(s for s in SLOTS if s != to.slot)
            self._command(f"set server {other}/{STANDBY} state maint")
        self._write_files(Routes(to, old if old is not None and old.slot != to.slot else None))
        log(f"front proxy: new requests go to {to.slot} ({to.host}:{to.port})"
            + (f"; {old.slot} ({old.host}:{old.port}) drains" if old and old != to else ""))
        return old if old is not None and old.slot != to.slot else None

    def drain(self, old: Upstream, timeout: float, log: LogSink) -> None:
        deadline = time.monotonic() + timeout
        busy = self.sessions(old.slot)
        while busy and time.monotonic() < deadline:
            time.sleep(0.05)
            busy = self.sessions(old.slot)
        self._command(f"set server {old.slot}/{SERVER} state maint")
        if busy:
            # What still runs after the timeout (a websocket, a stuck request) is
            # cut, so the old server can stop; socket.io clients reconnect.
            self._command(f"shutdown sessions server {old.slot}/{SERVER}")
            log(f"front proxy: {busy} request(s) on {old.slot} still ran after "
                f"{timeout:.0f} s; cut them")
        else:
            log(f"front proxy: {old.slot} drained")
