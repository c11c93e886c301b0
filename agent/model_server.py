"""The agent's model server: what Rasa's `endpoints.yml` `models: url` pulls from.

A standalone process (`python -m agent.model_server --host H --port P --tags DIR`),
started by the model_server target (agent/targets/model_server.py) and kept out
of the agent's own process so it keeps serving while the agent restarts. It
knows nothing of releases: `GET /models/<environment>` serves the model file
that `DIR/<environment>.json` (the environment's tag, written atomically by the
target) names, and moving that tag is how a promotion reaches the pullers.

It answers exactly what Rasa 3.6's pull client (rasa/core/agent.py
`_pull_model_and_fingerprint`) expects:
- 200 with the file, an `ETag` (Rasa keeps a 200 without one as fingerprint
  None and never loads it) and a `filename` header (the name Rasa saves it under,
  which must end in .tar.gz for Rasa to find the model in its download folder);
- 304 when `If-None-Match` (Rasa sends the ETag it last loaded) names the tag's;
- 404 for an environment without a tag (Rasa: "no model yet", it retries).
Auth: the token Rasa's EndpointConfig sends as the query parameter `token_name`
(default `token`), or `Authorization: Bearer`; missing 401, wrong 403, compared
in constant time. The token comes on standard input (one line), never argv/env.

Memory stays bounded whatever the file size and the number of pullers: each
request runs in its own thread and the file goes out with `socket.sendfile`
(the kernel copies from the page cache; where it can't, Python's fallback
sends it in small chunks).
Log lines name the method, the path and the status, never the query (the token).

Stdlib only, so it runs from any interpreter the agent has.
"""

from __future__ import annotations

import argparse
import hmac
import json
import re
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # agent/environments.py NAME, and safe
SOCKET_TIMEOUT = 120.0  # a stuck puller frees its thread after this long without progress


def tag_of(tags: Path, environment: str) -> dict[str, Any] | None:
    """The environment's tag ({path, etag, filename, model_id, ...}), or None."""
    if not ENVIRONMENT.match(environment):
        return None
    try:
        tag = json.loads((tags / f"{environment}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(tag, dict) or not all(isinstance(tag.get(key), str) and tag[key]
                                            for key in ("path", "etag", "filename")):
        return None
    return tag


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names `etag`: a list, weak or not, quoted or not
    (Rasa echoes the header value it got, quotes included)."""
    if not header:
        return False
    bare = etag.strip('"')
    for item in header.split(","):
        item = item.strip()
        if item == "*":
            return True
        if item.startswith("W/"):
            item = item[2:]
        if item.strip('"') == bare:
            return True
    return False


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # a fleet's pullers may all come at once

    def __init__(self, address: tuple[str, int], tags: Path, token: str,
                 token_name: str) -> None:
        super().__init__(address, ModelHandler)
        self.tags = tags
        self.token = token.encode()
        self.token_name = token_name


class ModelHandler(BaseHTTPRequestHandler):
    server: ModelServer
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    server_version = "rasa-gitops-model-server"
    sys_version = ""

    # ----------------------------------------------------------------- logging
    # The default lines carry the request line, and so the query: the token.

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(getattr(self, "path", "")).path
        status = code if isinstance(code, str) else int(code)
        self._log(f"{getattr(self, 'command', None) or '-'} {path} {status}")

    def log_error(self, format: str, *args: Any) -> None:
        # http.server's messages may quote the raw request line ("Bad request
        # syntax ('GET /models/x?token=...')"): the status line says enough.
        self._log("refused a malformed request")

    def _log(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        sys.stderr.write(f"{stamp} {self.client_address[0]} {text}\n")
        sys.stderr.flush()

    # ---------------------------------------------------------------- answers

    def _plain(self, status: HTTPStatus, text: str,
               headers: dict[str, str] | None = None) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self, query: str) -> bool:
        """Answers 401/403 itself when the request carries no or a wrong token."""
        given = parse_qs(query).get(self.server.token_name, [""])[-1]
        bearer = self.headers.get("Authorization", "")
        if not given and bearer.lower().startswith("bearer "):
            given = bearer[7:].strip()
        if not given:
            self._plain(HTTPStatus.UNAUTHORIZED, "a token is required",
                        {"WWW-Authenticate": "Bearer"})
            return False
        if not hmac.compare_digest(given.encode(), self.server.token):
            self._plain(HTTPStatus.FORBIDDEN, "wrong token")
            return False
        return True

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health":
            self._plain(HTTPStatus.OK, "ok")
            return
        if not url.path.startswith("/models/"):
            self._plain(HTTPStatus.NOT_FOUND, "not found; models are at /models/<environment>")
            return
        if not self._authorized(url.query):
            return
        environment = url.path[len("/models/"):]
        tag = tag_of(self.server.tags, environment)
        if tag is None:
            self._plain(HTTPStatus.NOT_FOUND, "no model is tagged for this environment")
            return
        etag = f'"{tag["etag"].strip(chr(34))}"'
        if etag_matches(self.headers.get("If-None-Match"), etag):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_model(Path(tag["path"]), etag, str(tag["filename"]))

    def _send_model(self, path: Path, etag: str, filename: str) -> None:
        try:
            model = open(path, "rb")  # noqa: SIM115 (closed below, after the headers)
        except OSError:
            self._log(f"the tagged model file is missing: {path}")
            self._plain(HTTPStatus.NOT_FOUND, "the tagged model file is missing")
            return
        with model:
            size = Path(path).stat().st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(size))
            self.send_header("ETag", etag)
            self.send_header("filename", filename)
            self.end_headers()
            if self.command == "HEAD":
                return
            try:
                self.request.sendfile(model)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                self.close_connection = True  # the puller gave up; Rasa retries later


def read_token(stream: Any) -> str:
    token = str(stream.readline()).strip()
    if not token:
        raise SystemExit("model server: no token on standard input")
    return token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.model_server",
                                     description="Serve each environment's tagged Rasa model.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tags", type=Path, required=True,
                        help="folder of <environment>.json tags")
    parser.add_argument("--token-name", default="token",
                        help="the query parameter the token comes in (Rasa's token_name)")
    args = parser.parse_args(argv)
    token = read_token(sys.stdin)  # never argv/env: those show in /proc to local users
    sys.stdin.close()
    server = ModelServer((args.host, args.port), args.tags, token, args.token_name)
    sys.stderr.write(f"model server on http://{args.host}:{server.server_port}, "
                     f"tags in {args.tags}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
