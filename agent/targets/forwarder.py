"""A tiny HTTP forwarder on the action server's stable port.

The Rasa server reads its action endpoint URL once, at start-up. So that the
agent can switch action servers without restarting Rasa, the Rasa server calls
this forwarder, which passes each request to whichever action server the
upstream file names. Switching is an atomic rename of that file; a request in
flight finishes against the server it started on.

Run as `python -m agent.targets.forwarder --listen HOST:PORT --upstream-file F`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "host", "content-length"}


class Upstream:
    """The upstream base URL, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: tuple[float, str | None] = (-1.0, None)
        self._lock = threading.Lock()

    def get(self) -> str | None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        with self._lock:
            if self._cached[0] != mtime:
                text = self.path.read_text(encoding="utf-8").strip()
                self._cached = (mtime, text or None)
            return self._cached[1]


def make_handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return  # the action server logs its own requests

        def _forward(self) -> None:
            base = upstream.get()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if base is None:
                self._reply(503, b'{"error": "no live action server"}')
                return
            target = urlsplit(base)
            conn = http.client.HTTPConnection(target.hostname or "127.0.0.1",
                                              target.port or 80, timeout=300)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            except OSError as exc:
                self._reply(502, f'{{"error": "action server unreachable: {exc}"}}'.encode())
                return
            finally:
                conn.close()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _forward

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-forwarder")
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--upstream-file", required=True, type=Path)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), make_handler(
        Upstream(args.upstream_file)))
    server.daemon_threads = True
    print(f"forwarding {args.listen} to the server named in {args.upstream_file} "
          f"(pid {os.getpid()})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
