"""Talking to Rasa X / Rasa Enterprise's HTTP API: auth, requests, refusals.

Two ways to authenticate, as Rasa X documents them:
- an API token, sent as the `api_token` query parameter;
- a username and password, exchanged by `POST /api/auth` (JSON `{"username",
  "password"}`) for `{"access_token": ...}`, then sent as `Authorization: Bearer`.
  An access token expires: on a 401 the client logs in again, once, and repeats
  the request; a second 401 is a refusal.

The api token, the password and the access token never reach a log line or an
error: requests' own exceptions can carry the URL with `?api_token=`, so every
message built here goes through `scrub`, and `RasaXError` messages name the
config key to fix, never a value.
"""

from __future__ import annotations

from typing import Any

import requests

from agent.secrets import Secret
from agent.targets.base import DeployError
from agent.targets.rasa_api import request_with_retries

TIMEOUT = 30.0
TOKEN_KEY = "model.rasa_x_api_token_env / model.rasa_x_api_token_file"
PASSWORD_KEY = "model.rasa_x_username and model.rasa_x_password_env / _file"


class RasaXApi:
    """One Rasa X server at `url`, with exactly one of the two auth modes."""

    def __init__(self, url: str, *, api_token: Secret | None = None,
                 username: str | None = None, password: Secret | None = None) -> None:
        if (api_token is None) == (password is None or not username):
            raise ValueError("Rasa X needs an api token, or a username and a password")
        self.url = url.rstrip("/")
        self._api_token = api_token
        self._username = username or ""
        self._password = password
        self._access_token: str | None = None

    # ----------------------------------------------------------- secrets

    def secrets(self) -> list[str]:
        held = [self._api_token, self._password]
        return [s.reveal() for s in held if s is not None] + (
            [self._access_token] if self._access_token else [])

    def scrub(self, text: str) -> str:
        for secret in sorted(self.secrets(), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    # --------------------------------------------------------------- auth

    def _login(self) -> str:
        assert self._password is not None
        answer = self._send("POST", "/api/auth", TIMEOUT, auth=False, json={
            "username": self._username, "password": self._password.reveal()})
        if answer.status_code in (401, 403):
            raise DeployError(f"Rasa X at {self.url} refused the login of user "
                              f"{self._username!r} (HTTP {answer.status_code}): check "
                              f"{PASSWORD_KEY}")
        if answer.status_code != 200:
            raise self.explain(answer, "POST /api/auth")
        try:
            token = answer.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise DeployError(f"POST /api/auth at {self.url} answered 200 without an "
                              "access_token: is this Rasa X?") from None
        if not isinstance(token, str) or not token:
            raise DeployError(f"POST /api/auth at {self.url} gave an empty access_token")
        self._access_token = token
        return token

    def _auth(self) -> tuple[dict[str, str], dict[str, str]]:
        """(query parameters, headers) that authenticate one request."""
        if self._api_token is not None:
            return {"api_token": self._api_token.reveal()}, {}
        token = self._access_token or self._login()
        return {}, {"Authorization": f"Bearer {token}"}

    # ------------------------------------------------------------ requests

    def _send(self, method: str, path: str, timeout: float, *, auth: bool = True,
              **kwargs: Any) -> requests.Response:
        # Rasa X behind its nginx may refuse connections for a moment while it restarts.
        return request_with_retries(
            method, self.url, path, timeout, server="Rasa X",
            auth=self._auth if auth else lambda: ({}, {}), scrub=self.scrub, **kwargs)

    def request(self, method: str, path: str, timeout: float = TIMEOUT,
                **kwargs: Any) -> requests.Response:
        """One authenticated request; a 401 with a login re-authenticates once."""
        answer = self._send(method, path, timeout, **kwargs)
        if answer.status_code == 401 and self._password is not None:
            answer.close()
            self._access_token = None  # expired or revoked: log in again, once
            answer = self._send(method, path, timeout, **kwargs)
        if answer.status_code == 401:
            answer.close()
            raise DeployError(self.refused(f"{method} {path}"))
        return answer

    def refused(self, what: str) -> str:
        if self._api_token is not None:
            return (f"{what}: Rasa X at {self.url} refused the api token (HTTP 401): check "
                    f"{TOKEN_KEY}")
        return (f"{what}: Rasa X at {self.url} refused the access token of user "
                f"{self._username!r} even after a new login (HTTP 401): check the user's "
                "role")

    def explain(self, answer: requests.Response, what: str) -> DeployError:
        """Rasa X's own reason and message for a refusal (its error bodies are
        JSON with `reason` and `message`), scrubbed, with the HTTP code."""
        if answer.status_code == 403:
            return DeployError(f"{what}: the Rasa X user or token may not do this (HTTP 403); "
                               "give it a role that may manage models")
        try:
            body = answer.json()
            reason, message = str(body.get("reason", "")), str(body.get("message", ""))
        except (ValueError, AttributeError):
            reason, message = "", answer.text[:300]
        said = ": ".join(part for part in (reason, message) if part)
        return DeployError(self.scrub(f"{what}: HTTP {answer.status_code}"
                                      + (f": {said}" if said else "")))

    def answers(self) -> bool:
        """Whether Rasa X answers `GET /api/health` at all (no auth, no side effect)."""
        try:
            return requests.get(f"{self.url}/api/health", timeout=10.0).status_code < 500
        except requests.RequestException:
            return False
