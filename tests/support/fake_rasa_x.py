"""A small HTTP fake of Rasa X / Rasa Enterprise's model API, for the rasa_x target.

There is no installable Rasa X, so this follows only its documented API, and
answers exactly the documented codes:

- `POST /api/auth` `{"username", "password"}` -> 200 `{"access_token": ...}`, 401;
- `POST /api/projects/default/models`, multipart field `model` -> 201; 409 when a
  model of that name (the file name without `.tar.gz`) exists; 400 with reason
  `ModelVersionError` when told to refuse (`refuse_models`: the running Rasa
  can't load it);
- `GET /api/projects/default/models` -> 200, a list of `{"model", "hash", "tags", ...}`;
- `PUT /api/projects/default/models/{name}/tags/{tag}` -> 204; 404 unknown model;
- `GET /api/projects/default/models/tags/{tag}` -> 200 the file with `ETag` (its
  hash) and `filename`; 204 when `If-None-Match` is that ETag; 404 untagged;
- `GET /api/health` -> 200 without auth.

Every other path needs `?api_token=` or `Authorization: Bearer <access token>`,
else 401. Error bodies are Rasa X's JSON `{"reason", "message", "code"}`.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import secrets
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs, unquote, urlsplit

MODELS = "/api/projects/default/models"


@dataclass
class RasaXState:
    api_token: str
    users: dict[str, str] = field(default_factory=dict)  # username -> password
    models: dict[str, bytes] = field(default_factory=dict)  # name -> file
    tags: dict[str, str] = field(default_factory=dict)  # tag -> name
    access_tokens: set[str] = field(default_factory=set)
    refuse_models: bool = False  # answer uploads with 400 ModelVersionError
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, code
    lock: threading.Lock = field(default_factory=threading.Lock)

    def etag(self, name: str) -> str:
        return hashlib.md5(self.models[name]).hexdigest()

    def expire_tokens(self) -> None:
        """Every access token given so far now gets 401 (Rasa X's JWTs expire)."""
        self.access_tokens.clear()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: RasaXState


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.server.state.requests.append((self.command, urlsplit(self.path).path, code))
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if code != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if code != 204:
            self.wfile.write(body)

    def _error(self, code: int, reason: str, message: str) -> None:
        self._send(code, json.dumps({"version": "fake", "status": "failure", "reason": reason,
                                     "message": message, "code": code}).encode())

    def _authorized(self) -> bool:
        state = self.server.state
        query = parse_qs(urlsplit(self.path).query)
        if query.get("api_token") == [state.api_token]:
            return True
        bearer = self.headers.get("Authorization", "")
        return bearer.startswith("Bearer ") and bearer[7:] in state.access_tokens

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        state = self.server.state
        if path == "/api/health":
            return self._send(200, b"{}")
        if not self._authorized():
            return self._error(401, "NotAuthenticated", "Authorization header not present.")
        with state.lock:
            if path == MODELS:
                listing = [{"model": name, "hash": state.etag(name), "project": "default",
                            "tags": sorted(t for t, n in state.tags.items() if n == name)}
                           for name in state.models]
                return self._send(200, json.dumps(listing).encode())
            if path.startswith(f"{MODELS}/tags/"):
                name = state.tags.get(path.rsplit("/", 1)[-1])
                if name is None:
                    return self._error(404, "ModelNotFound", "No model with this tag.")
                etag = state.etag(name)
                if self.headers.get("If-None-Match") == etag:
                    return self._send(204, headers={"ETag": etag})
                return self._send(200, state.models[name], {
                    "ETag": etag, "filename": f"{name}.tar.gz"}, "application/gzip")
        self._error(404, "NotFound", f"no route {path}")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        state = self.server.state
        body = self._body()
        if path == "/api/auth":
            try:
                asked = json.loads(body)
                good = state.users.get(asked["username"]) == asked["password"]
            except (ValueError, KeyError, TypeError):
                good = False
            if not good:
                return self._error(401, "AuthenticationFailed", "Wrong username or password.")
            token = secrets.token_urlsafe(16)
            state.access_tokens.add(token)
            return self._send(200, json.dumps({"access_token": token}).encode())
        if not self._authorized():
            return self._error(401, "NotAuthenticated", "Authorization header not present.")
        if path != MODELS:
            return self._error(404, "NotFound", f"no route {path}")
        form = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode() + body)
        part = next((p for p in form.iter_parts()
                     if p.get_param("name", header="content-disposition") == "model"), None)
        filename = part.get_filename() if part is not None else None
        if part is None or not filename:
            return self._error(400, "UploadError", "No 'model' file in the request.")
        name = filename.removesuffix(".tar.gz")
        data = part.get_payload(decode=True)
        with state.lock:
            if name in state.models:
                return self._error(409, "ModelExists", f"A model named '{name}' exists.")
            if state.refuse_models:
                return self._error(400, "ModelVersionError", "Model version is not "
                                   "compatible with the running Rasa version.")
            state.models[name] = data if isinstance(data, bytes) else b""
        self._send(201, json.dumps({"model": name}).encode())

    def do_PUT(self) -> None:
        path = unquote(urlsplit(self.path).path)
        state = self.server.state
        self._body()
        if not self._authorized():
            return self._error(401, "NotAuthenticated", "Authorization header not present.")
        parts = path.removeprefix(f"{MODELS}/").split("/")
        if not path.startswith(f"{MODELS}/") or len(parts) != 3 or parts[1] != "tags":
            return self._error(404, "NotFound", f"no route {path}")
        name, _, tag = parts
        with state.lock:
            if name not in state.models:
                return self._error(404, "ModelNotFound", f"Model '{name}' not found.")
            state.tags[tag] = name  # a tag is on one model at a time
        self._send(204)


@contextmanager
def fake_rasa_x(state: RasaXState) -> Iterator[str]:
    """Serve `state` on a free loopback port; yields the base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
