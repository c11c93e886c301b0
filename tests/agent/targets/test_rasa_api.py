"""What a Rasa server's (or the front proxy's) answer to `GET /status` means.

Rasa 3.6 answers 409 "No agent loaded" when it has no model; HAProxy answers
503 itself when no server behind it takes the request. A 503 used to read as
"no model loaded", so `restore` would take a live server that has production's
model for one that drifted (found in review). Fast: the HTTP call is replaced.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from agent.targets import rasa_api
from agent.targets.base import DeployError
from agent.targets.rasa_api import RasaApi


def answering(monkeypatch: pytest.MonkeyPatch, status: int, body: bytes) -> None:
    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        answer = requests.Response()
        answer.status_code, answer._content = status, body
        return answer

    monkeypatch.setattr(rasa_api.requests, "request", request)


def test_rasa_without_a_model_is_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    answering(monkeypatch, 409, b'{"message": "No agent loaded"}')
    assert RasaApi("http://127.0.0.1:5005", None).model_id() is None


def test_the_proxys_503_is_a_server_that_does_not_answer_not_no_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    answering(monkeypatch, 503, b"<html><h1>503 Service Unavailable</h1></html>")
    with pytest.raises(DeployError, match=r"no Rasa server answers behind "
                       r"http://127.0.0.1:5005 \(HTTP 503: the proxy in front"):
        RasaApi("http://127.0.0.1:5005", None).model_id()


def test_a_loaded_model_is_its_id(monkeypatch: pytest.MonkeyPatch) -> None:
    answering(monkeypatch, 200, b'{"model_id": "abc123"}')
    assert RasaApi("http://127.0.0.1:5005", None).model_id() == "abc123"
