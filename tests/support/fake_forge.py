"""A FAKE of three HTTP APIs the notifier talks to, because neither GitHub, GitLab
nor a Slack/Mattermost workspace can be installed here.

It follows ONLY their documented request shapes, and refuses anything else the
way the documentation says the real service does, recording why in `rejected`:
- an incoming webhook (Slack, Mattermost): POST `/hooks/<key>`, JSON with a
  string `text`; 200 `ok`, else 400 `invalid_payload` / 404 `no_service`;
- GitHub "create a commit status": POST `/repos/{owner}/{repo}/statuses/{sha}`,
  `Authorization: Bearer <token>`, JSON `state` in pending|success|failure|error,
  optional `target_url`, `description` (at most 140 characters), `context`;
  201 with the status, 401 without the token, 404 for another repository, 422
  for a bad field;
- GitLab "set the pipeline status of a commit": POST
  `/api/v4/projects/{id or url-encoded path}/statuses/{sha}`, `PRIVATE-TOKEN`,
  `state` in pending|running|success|failed|canceled, optional `name`,
  `target_url`, `description`; 201, 401, 404, 400 for a bad state.
`fail_next` makes the next requests answer a given status first (a chat or a
forge having a bad minute).
"""

from __future__ import annotations

import http.server
import json
import re
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

GITHUB_STATES = {"pending", "success", "failure", "error"}
GITLAB_STATES = {"pending", "running", "success", "failed", "canceled"}
SHA = r"[0-9a-f]{40}"


@dataclass
class Received:
    api: str  # webhook, github or gitlab
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Forge:
    webhook_key: str
    github_repo: str
    github_token: str
    gitlab_project: str  # as in the URL: an id, or the url-encoded path
    gitlab_token: str
    port: int = 0
    received: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def of(self, api: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.api == api]

    def answer(self, method: str, path: str, headers: dict[str, str],
               raw: bytes) -> tuple[int, Any]:
        with self.lock:
            if self.fail_next:
                return self.fail_next.pop(0), {"message": "injected failure"}
        if method != "POST":
            return self._reject(404, f"{method} {path}: only POST is documented")
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return self._reject(400, f"{path}: body is not JSON")
        if not isinstance(body, dict) or "json" not in headers.get("content-type", ""):
            return self._reject(400, f"{path}: a JSON object with Content-Type JSON")
        for api, check in (("webhook", self._webhook), ("github", self._github),
                           ("gitlab", self._gitlab)):
            result = check(path, headers, body)
            if result is not None:
                code, answer = result
                if code < 300:
                    with self.lock:
                        self.received.append(Received(api, path, headers, body))
                return code, answer
        return self._reject(404, f"{path}: no such API")

    def _reject(self, code: int, why: str) -> tuple[int, Any]:
        with self.lock:
            self.rejected.append(why)
        return code, {"message": why}

    def _webhook(self, path: str, headers: dict[str, str],
                 body: dict[str, Any]) -> tuple[int, Any] | None:
        if not path.startswith("/hooks/"):
            return None
        if path != f"/hooks/{self.webhook_key}":
            return self._reject(404, "webhook: no_service")
        if not isinstance(body.get("text"), str) or not body["text"]:
            return self._reject(400, "webhook: invalid_payload (no text)")
        return 200, "ok"

    def _github(self, path: str, headers: dict[str, str],
                body: dict[str, Any]) -> tuple[int, Any] | None:
        match = re.fullmatch(rf"/repos/([^/]+/[^/]+)/statuses/({SHA})", path)
        if not path.startswith("/repos/"):
            return None
        if headers.get("authorization") != f"Bearer {self.github_token}":
            return self._reject(401, "github: Requires authentication")
        if match is None or match.group(1) != self.github_repo:
            return self._reject(404, f"github: Not Found {path}")
        if body.get("state") not in GITHUB_STATES:
            return self._reject(422, f"github: state {body.get('state')!r}")
        if len(str(body.get("description", ""))) > 140:
            return self._reject(422, "github: description longer than 140 characters")
        if set(body) - {"state", "target_url", "description", "context"}:
            return self._reject(422, f"github: unknown fields {sorted(body)}")
        return 201, {"id": len(self.received) + 1, "context": body.get("context", "default"),
                     **body}

    def _gitlab(self, path: str, headers: dict[str, str],
                body: dict[str, Any]) -> tuple[int, Any] | None:
        if not path.startswith("/api/v4/projects/"):
            return None
        match = re.fullmatch(rf"/api/v4/projects/([^/]+)/statuses/({SHA})", path)
        if headers.get("private-token") != self.gitlab_token:
            return self._reject(401, "gitlab: 401 Unauthorized")
        if match is None or match.group(1) != self.gitlab_project:
            return self._reject(404, f"gitlab: 404 Project Not Found {path}")
        if body.get("state") not in GITLAB_STATES:
            return self._reject(400, f"gitlab: state {body.get('state')!r} is invalid")
        if set(body) - {"state", "ref", "name", "context", "target_url", "description",
                        "coverage", "pipeline_id"}:
            return self._reject(400, f"gitlab: unknown fields {sorted(body)}")
        return 201, {"id": len(self.received) + 1, "status": body["state"],
                     "name": body.get("name", "default")}


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    forge: Forge


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {key.lower(): value for key, value in self.headers.items()}
        code, answer = self.server.forge.answer(self.command, self.path, headers, raw)
        data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if isinstance(answer, str)
                         else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET = do_PUT = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def fake_forge(**settings: str) -> Iterator[Forge]:
    """Serve a Forge (webhook_key, github_repo, github_token, gitlab_project,
    gitlab_token) on a free port of 127.0.0.1 while the block runs."""
    forge = Forge(**settings)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.forge = forge
    forge.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield forge
    finally:
        server.shutdown()
        server.server_close()
