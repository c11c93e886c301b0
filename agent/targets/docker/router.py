"""The stable front door of a Docker action server: a tiny TCP router.

The Rasa server reads its action endpoint URL once, at start-up, so the URL
must not move when a release switches action servers. The router is a
container (host network) listening on the stable port. For each connection it
reads `/tmp/rasa-gitops-backends` (written by the agent through the Docker
API), and connects to the first backend that accepts; later lines are fallbacks.
Switching is one write of that file: connections in flight finish on the
server they started on. It runs with the python3 that every rasa-sdk image has.
"""

from __future__ import annotations

import io
import tarfile
import time
from typing import Any

from agent.targets.base import DeployError, LogSink
from agent.targets.docker.probe import PORT_IN_USE

BACKENDS_DIR = "/tmp"
BACKENDS_FILE = "rasa-gitops-backends"

ROUTER_CODE = r"""
import asyncio, sys
LISTEN = int(sys.argv[1]); STATE = sys.argv[2]

def backends():
    try:
        with open(STATE) as f:
            return [l.strip() for l in f if l.strip()]
    except OSError:
        return []

async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass

async def handle(client_r, client_w):
    found = backends()
    for _ in range(5):
        if found:
            break
        await asyncio.sleep(0.05)  # the agent is rewriting the file
        found = backends()
    for addr in found:
        host, _, port = addr.rpartition(":")
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
        except (OSError, asyncio.TimeoutError, ValueError):
            continue
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
        return
    client_w.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                   b"Connection: close\r\n\r\n")
    client_w.close()

async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", LISTEN, reuse_address=True)
    print("router listening on", LISTEN, flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def router_command(port: int) -> list[str]:
    return ["-c", ROUTER_CODE, str(port), f"{BACKENDS_DIR}/{BACKENDS_FILE}"]


def ensure_router(client: Any, name: str, image: str, port: int, labels: dict[str, str],
                  host: str, log: LogSink) -> Any:
    """The running router container `name`, started from `image` if it isn't running."""
    import docker.errors

    try:
        router = client.containers.get(name)
        if router.status == "running":
            return router
        router.remove(force=True)
    except docker.errors.NotFound:
        pass
    log(f"starting the router on port {port}")
    try:
        router = client.containers.run(
            image, entrypoint=["python3"], command=router_command(port), name=name,
            detach=True, network_mode="host", labels=labels,
            restart_policy={"Name": "unless-stopped"},
        )
    except docker.errors.DockerException as exc:
        detail = getattr(exc, "explanation", None) or exc
        raise DeployError(f"cannot start the router {name}: {detail}") from None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        router.reload()
        logs = router.logs().decode("utf-8", "replace")
        if "router listening" in logs:
            return router
        if router.status in ("exited", "dead", "restarting"):
            router.remove(force=True)
            if any(word in logs.lower() for word in PORT_IN_USE):
                raise DeployError(f"port {port} is already in use on {host}; free it or set "
                                  "another action server port")
            raise DeployError(f"the router {name} exited: {logs[-300:]}")
        time.sleep(0.2)
    raise DeployError(f"the router {name} did not start within 30 s")


def switch(router: Any, backends: list[str]) -> None:
    """Point the router at `backends` (host:port, first preferred)."""
    data = ("\n".join(backends) + "\n").encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo(BACKENDS_FILE)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        archive.addfile(info, io.BytesIO(data))
    if not router.put_archive(BACKENDS_DIR, out.getvalue()):
        raise DeployError(f"cannot switch the router {router.name}")


def read_backends(router: Any) -> list[str]:
    import docker.errors

    try:
        stream, _ = router.get_archive(f"{BACKENDS_DIR}/{BACKENDS_FILE}")
    except docker.errors.NotFound:
        return []
    raw = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        member = archive.extractfile(BACKENDS_FILE)
        text = member.read().decode() if member else ""
    return [line.strip() for line in text.splitlines() if line.strip()]
