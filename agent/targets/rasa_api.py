"""Talking to one Rasa server's HTTP API: shared by the model targets.

Both the `PUT /model` target (rasa_http) and the blue/green target
(rasa_blue_green) read a model's id, keep a local auth token, call the API with
a few retries, explain its refusals and talk to the REST channel the same way;
this is that one way. The token travels as Rasa expects (`?token=`); every
error message built here is scrubbed of it. A server started with Rasa's
`--jwt-secret` gets instead a short-lived JWT signed with that secret
(`JwtAuth`), carrying the admin role its model endpoints require.
"""

from __future__ import annotations

import json
import os
import secrets
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import requests

from agent.secrets import Secret
from agent.targets.base import DeployError

STATUS_TIMEOUT = 10.0
CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF = 0.5  # seconds; doubled after each failed attempt
# The HMAC methods of Rasa's --jwt-method: the agent signs with the shared
# secret. RS*/ES* would need the private key of --jwt-secret's public key.
JWT_METHODS = ("HS256", "HS384", "HS512")
JWT_LIFETIME = 300  # seconds: one token per request; a leaked one soon expires
JWT_USER = "rasa-gitops-agent"


def model_id_of(model: Path) -> str:
    """The `model_id` Rasa reports in /status once this model is loaded."""
    try:
        with tarfile.open(model, "r:gz") as archive:
            member = archive.extractfile("metadata.json")
            if member is None:
                raise DeployError(f"{model}: not a Rasa model (no metadata.json)")
            return str(json.load(member)["model_id"])
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise DeployError(f"{model}: not a readable Rasa model ({type(exc).__name__})") from None


def local_token(state_dir: Path) -> Secret:
    """A managed server always gets token auth: make one and keep it 0600."""
    path = state_dir / "auth-token"
    if not path.is_file():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24))
    return Secret(path.read_text(encoding="utf-8").strip(), str(path))


class JwtAuth:
    """Rasa's JWT auth (`rasa run --jwt-secret S --jwt-method M`).

    Rasa 3.6 (rasa/server.py `requires_auth`) lets a token through to the model
    endpoints only with `{"user": {"username": ..., "role": "admin"}}` in its
    payload; any other role gets 403. Each request gets a fresh token with an
    `exp` claim and no `iat` (a clock a little ahead on the server would
    refuse an `iat` "in the future")."""

    def __init__(self, secret: Secret, method: str = "HS256") -> None:
        if method not in JWT_METHODS:
            raise DeployError(f"JWT method {method!r} is not one the agent signs with "
                              f"({', '.join(JWT_METHODS)})")
        self._secret = secret
        self.method = method

    def __repr__(self) -> str:
        return f"JwtAuth({self._secret.origin}, {self.method})"

    def header(self) -> dict[str, str]:
        payload = {"user": {"username": JWT_USER, "role": "admin"},
                   "exp": int(time.time()) + JWT_LIFETIME}
        signed = jwt.encode(payload, self._secret.reveal(), algorithm=self.method)
        return {"Authorization": f"Bearer {signed}"}


class RasaApi:
    """One Rasa server (or the proxy in front of one) at `url`."""

    def __init__(self, url: str, token: Secret | None, jwt_auth: JwtAuth | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.jwt_auth = jwt_auth

    def params(self) -> dict[str, str]:
        return {"token": self.token.reveal()} if self.token else {}

    def headers(self) -> dict[str, str]:
        return self.jwt_auth.header() if self.jwt_auth else {}

    def scrub(self, text: str) -> str:
        return text.replace(self.token.reveal(), "***") if self.token else text

    def request(self, method: str, path: str, timeout: float, *,
                attempts: int = CONNECT_ATTEMPTS, **kwargs: Any) -> requests.Response:
        # A fresh JWT each try (auth), the caller's own headers too.
        return request_with_retries(
            method, self.url, path, timeout, server="the Rasa server",
            auth=lambda: (self.params(), self.headers()), scrub=self.scrub,
            attempts=attempts, **kwargs)

    def explain(self, answer: requests.Response, what: str) -> DeployError:
        if answer.status_code == 401 and self.jwt_auth:
            return DeployError(f"{what}: the Rasa server refused the agent's JWT (401); check "
                               "that model.jwt_secret_env / model.jwt_secret_file and "
                               f"model.jwt_method ({self.jwt_auth.method}) match its "
                               "--jwt-secret and --jwt-method")
        if answer.status_code == 401:
            return DeployError(f"{what}: the Rasa server refused the auth token (401); check "
                               "model.auth_token_env / model.auth_token_file")
        if answer.status_code == 403:
            return DeployError(f"{what}: the token may not do this (403)")
        try:
            message = str(answer.json().get("message", ""))
        except ValueError:
            message = answer.text[:300]
        return DeployError(self.scrub(f"{what}: HTTP {answer.status_code}: {message}"))

    def model_id(self, *, attempts: int = CONNECT_ATTEMPTS) -> str | None:
        """`GET /status`'s model_id; None when the server has no model loaded."""
        answer = self.request("GET", "/status", STATUS_TIMEOUT, attempts=attempts)
        if answer.status_code == 409:  # Rasa's own "No agent loaded"
            return None
        if answer.status_code == 503:
            # Not Rasa's answer (it says 409 without a model) but HAProxy's: no
            # server behind the front proxy takes the request now (stopped, or
            # failing its checks while busy). That says nothing about a model, so
            # it is "does not answer", as a refused connection: read as "no
            # model", restore would start production's model beside a live
            # server that may well have it, and a new server still starting
            # (_wait_loaded) would count as one that failed to load.
            raise DeployError(f"no Rasa server answers behind {self.url} (HTTP 503: the "
                              "proxy in front has no server to send GET /status to)")
        if answer.status_code != 200:
            raise self.explain(answer, "GET /status")
        model_id = answer.json().get("model_id")
        return str(model_id) if model_id else None

    def answers(self) -> bool:
        """Whether a Rasa server answers `GET /` (a proxy's own 503 doesn't count)."""
        try:
            return requests.get(f"{self.url}/", timeout=STATUS_TIMEOUT).status_code < 500
        except requests.RequestException:
            return False

    def talk(self, sender: str, text: str, timeout: float = 120.0) -> list[str]:
        """One message through the REST channel; the bot's text replies."""
        try:
            answer = requests.post(f"{self.url}/webhooks/rest/webhook",
                                   json={"sender": sender, "message": text}, timeout=timeout)
        except requests.RequestException as exc:
            raise DeployError(f"REST channel: {type(exc).__name__}") from None
        if answer.status_code != 200:
            raise DeployError(f"REST channel: HTTP {answer.status_code}")
        return [str(item.get("text", "")) for item in answer.json() if "text" in item]


def request_with_retries(method: str, url: str, path: str, timeout: float, *, server: str,
                         auth: Callable[[], tuple[dict[str, str], dict[str, str]]],
                         scrub: Callable[[str], str], attempts: int = CONNECT_ATTEMPTS,
                         headers: dict[str, str] | None = None,
                         **kwargs: Any) -> requests.Response:
    """One HTTP request to `server` at `url`. A server that is restarting refuses
    connections for a moment: a few tries with a growing pause, then a clear
    failure (never an endless wait). `auth()` gives each try its (params,
    headers): a fresh JWT or access token. Errors are DeployErrors, `scrub`bed."""
    for attempt in range(1, attempts + 1):
        # A retried upload sends the whole file again, never the rest of a
        # stream an earlier try began: the server would keep a cut model.
        for _, stream, *_ in (kwargs.get("files") or {}).values():
            stream.seek(0)
        params, auth_headers = auth()
        try:
            return requests.request(method, f"{url}{path}", params=params,
                                    headers={**auth_headers, **(headers or {})},
                                    timeout=timeout, **kwargs)
        except requests.ConnectionError:
            if attempt == attempts:
                raise DeployError(f"{server} at {url} does not answer "
                                  f"({attempts} attempts)") from None
            time.sleep(CONNECT_BACKOFF * 2 ** (attempt - 1))
        except requests.Timeout:
            raise DeployError(f"{server} at {url} did not answer {method} {path} "
                              f"within {timeout:.0f} s") from None
        except requests.RequestException as exc:
            raise DeployError(scrub(f"{method} {path} failed: {exc}")) from None
    raise AssertionError("unreachable")
