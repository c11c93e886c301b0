"""A tiny threaded HTTP server that says its own name: the upstream of the front
proxy's tests and bench, so they measure HAProxy, not Rasa.

Every GET/POST answers 200 with the server's name (HTTP/1.1, keep-alive).
`/slow?seconds=S` answers after S seconds (a request in flight during a
switch). A request with `Upgrade: websocket` gets `101 Switching Protocols`,
then the connection echoes bytes (enough to show an upgrade passes through).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    name = ""

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client (or the proxy) closing a kept-alive connection is normal here


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without this, delayed ACKs add 40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self._tunnel()
            return
        parts = urlsplit(self.path)
        if parts.path == "/slow":
            time.sleep(float(parse_qs(parts.query).get("seconds", ["1"])[0]))
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _tunnel(self) -> None:
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        # HAProxy checks the handshake, as a browser would (RFC 6455 4.2.2).
        key = self.headers.get("Sec-WebSocket-Key", "") + WEBSOCKET_GUID
        self.send_header("Sec-WebSocket-Accept",
                         base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
        self.end_headers()
        self.wfile.flush()
        while data := self.connection.recv(4096):
            self.connection.sendall(self.server.name.encode() + b":" + data)
        self.close_connection = True

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: thousands of requests per test


@contextmanager
def tiny_server(name: str, host: str = "127.0.0.1") -> Iterator[int]:
    """Serve `name` on a free port of `host` while the block runs; yields the port."""
    server = _Server((host, 0), _Handler)
    server.name = name
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
