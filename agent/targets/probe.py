"""How a target tells a dead server from a busy one (its `health()`).

Dead: the process is gone, or nothing accepts connections on its port (the
kernel refuses the connect). Busy: the port accepts the connection (the kernel
does that even while the server's event loop is stuck in a long request, and a
full accept backlog makes the connect time out rather than fail) but no answer
came in time. Only a dead server may be replaced: a busy one still holds its
port, and a second server there dies with "address already in use".
"""

from __future__ import annotations

import errno
import socket

import requests

from agent.targets.base import ALIVE, DEAD, SLOW, Health

CONNECT_TIMEOUT = 2.0
ANSWER_TIMEOUT = 3.0


def accepts(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> bool | None:
    """True: a connection was accepted; False: refused (nothing listens); None:
    no answer in time (a full backlog: something listens but is swamped)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except TimeoutError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH,
                         errno.ENETUNREACH, errno.EADDRNOTAVAIL):
            return False
        return None


def probe(part: str, host: str, port: int, *, process_alive: bool, path: str | None = "/",
          answer_timeout: float = ANSWER_TIMEOUT) -> Health:
    """A server's health: its process, its port, then (with `path`) one HTTP GET."""
    where = f"{host}:{port}"
    if not process_alive:
        return Health(part, DEAD, f"its process is gone ({where})")
    connected = accepts(host, port)
    if connected is False:
        return Health(part, DEAD, f"nothing accepts connections on {where}")
    if connected is None:
        return Health(part, SLOW, f"{where} did not accept a connection within "
                                  f"{CONNECT_TIMEOUT:.0f} s")
    if path is None:
        return Health(part, ALIVE, where)
    try:
        requests.get(f"http://{where}{path}", timeout=answer_timeout)
    except requests.ConnectionError as exc:
        if "refused" in str(exc).lower():
            return Health(part, DEAD, f"nothing accepts connections on {where}")
        return Health(part, SLOW, f"{where} accepted but did not answer GET {path}")
    except requests.RequestException:
        return Health(part, SLOW, f"{where} did not answer GET {path} within "
                                  f"{answer_timeout:.0f} s")
    return Health(part, ALIVE, where)
