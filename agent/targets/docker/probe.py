"""HTTP checks of an action server, run inside a container through the Docker API.

Running the check with the container's own python3 means it works the same
on the local engine, on a remote engine reached over SSH, and on a Swarm node,
without opening any port to the agent.
"""

from __future__ import annotations

import json
from typing import Any

PORT_IN_USE = ("address already in use", "errno 98")

PROBE_CODE = r"""
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        sys.stdout.write(str(r.status) + "\n" + r.read().decode("utf-8", "replace"))
except Exception as e:
    sys.stdout.write("000\n" + type(e).__name__ + ": " + str(e))
"""


def http_get(container: Any, url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET `url` from inside `container`; (status, body), status 0 if unreachable."""
    import docker.errors

    try:
        result = container.exec_run(["python3", "-c", PROBE_CODE, url, str(timeout)],
                                    user="", demux=False)
    except docker.errors.APIError as exc:
        return 0, str(exc.explanation or exc)
    output = (result.output or b"").decode("utf-8", "replace")
    status_text, _, body = output.partition("\n")
    try:
        return int(status_text.strip() or 0), body
    except ValueError:
        return 0, output


def parse_actions(body: str) -> frozenset[str] | None:
    """The action names of a `GET /actions` answer, or None if it isn't one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, list):
        return None
    return frozenset(str(item["name"]) for item in data
                     if isinstance(item, dict) and "name" in item)
