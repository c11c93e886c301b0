"""Model target: Rasa X / Rasa Enterprise, through its documented model API.

- upload: `POST /api/projects/default/models`, the file in the multipart field
  `model`; Rasa X names the model after the file name without `.tar.gz`.
  201 uploaded; 409 a model of that name exists; 400 `ModelVersionError` when
  the Rasa it runs can't load the model.
- activate: `PUT /api/projects/default/models/{name}/tags/{tag}`; 204 tagged,
  404 no model of that name. Rasa X's `rasa-production` pulls the tagged model.
- live_model_id: `GET /api/projects/default/models/tags/{tag}`, whose `ETag` is
  the tagged model's hash and whose `filename` header is its file name. The
  body (the model) is never read: the request is streamed and closed. The last
  ETag goes back as `If-None-Match`, and Rasa X's 204 (not 304) says "unchanged".

The name of a model is `<model_id>-<sha256 of the file, 12 hex>`: `model_id` is
what Rasa draws at random when it trains the model (metadata.json), so the name
gives back the id the journal knows, and the digest makes it exact. A 409 is
therefore "already uploaded" (a release reusing an earlier model uploads the
same file), provided Rasa X lists a model of that name; else it is a refusal.

`talk` posts to the production Rasa's REST channel, which Rasa X's nginx
exposes at `/core/webhooks/rest/webhook` (model.rasa_x_rest_url to change it).
The agent runs no Rasa X: ensure_server and stop_all do nothing, health is [].
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import requests

from agent.secrets import Secret, public_url
from agent.targets.base import DeployError, Health, LogSink, ModelRef
from agent.targets.rasa_api import model_id_of
from agent.targets.rasa_x_api import RasaXApi

__all__ = ["RasaXModelTarget", "rasa_x_name"]

MODELS = "/api/projects/default/models"
UPLOAD_TIMEOUT = 600.0
_NAME = re.compile(r"^(?P<model_id>.+)-[0-9a-f]{12}$")


def rasa_x_name(model: Path) -> str:
    """The name this target uploads `model` under (see the module's docstring)."""
    digest = hashlib.sha256()
    with model.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return f"{model_id_of(model)}-{digest.hexdigest()[:12]}"


def _model_id(name: str) -> str:
    """The Rasa model_id in a name this target made; another name as it is."""
    found = _NAME.match(name)
    return found["model_id"] if found else name


class RasaXModelTarget:
    name = "rasa_x"

    def __init__(self, *, url: str, tag: str = "production", api_token: Secret | None = None,
                 username: str | None = None, password: Secret | None = None,
                 rest_url: str | None = None) -> None:
        self._api = RasaXApi(url, api_token=api_token, username=username, password=password)
        self.url = self._api.url
        self.tag = tag
        self.rest_url = rest_url or f"{self.url}/core/webhooks/rest/webhook"
        self._seen: tuple[str, str] | None = None  # (ETag, model name) of the last read

    # ------------------------------------------------------------- upload

    def upload(self, release_id: str, model: Path, log: LogSink,
               bot_dir: Path | None = None) -> ModelRef:
        # bot_dir is ignored: Rasa X's own deployment holds endpoints/credentials.
        if not model.is_file():
            raise DeployError(f"model file {model} does not exist")
        name = rasa_x_name(model)
        ref = ModelRef(release_id, _model_id(name), f"{self.url}{MODELS}/{name}")
        log(f"uploading model {name} to Rasa X (POST {MODELS})")
        with model.open("rb") as data:
            answer = self._api.request(
                "POST", MODELS, UPLOAD_TIMEOUT,
                files={"model": (f"{name}.tar.gz", data, "application/gzip")})
        code = answer.status_code
        if code == 201:
            log(f"Rasa X stored model {name}")
            return ref
        if code == 409:
            if name in self._model_names():
                log(f"Rasa X already has model {name} (same model_id and SHA-256): reused")
                return ref
            raise self._api.explain(answer, f"upload of {name}: Rasa X says the name exists "
                                    "(409) but lists no model of that name")
        if code == 400 and self._reason(answer) == "ModelVersionError":
            raise self._api.explain(answer, f"upload of {name}: the Rasa behind Rasa X can't "
                                    "load this model (400 ModelVersionError); train it with "
                                    "the Rasa version Rasa X runs, or upgrade Rasa X's Rasa")
        raise self._api.explain(answer, f"upload of {name}")

    @staticmethod
    def _reason(answer: requests.Response) -> str:
        try:
            return str(answer.json().get("reason", ""))
        except (ValueError, AttributeError):
            return ""

    def _model_names(self) -> set[str]:
        answer = self._api.request("GET", MODELS)
        if answer.status_code != 200:
            raise self._api.explain(answer, f"GET {MODELS}")
        try:
            return {str(item["model"]) for item in answer.json()}
        except (ValueError, KeyError, TypeError):
            raise DeployError(f"GET {MODELS}: not a list of models") from None

    # ----------------------------------------------------------- activate

    def activate(self, ref: ModelRef, log: LogSink) -> None:
        name = ref.location.rsplit("/", 1)[-1]
        if self.live_model_id() == ref.model_id:
            log(f"model {name} already carries the tag {self.tag!r}")
            return
        log(f"tagging model {name} {self.tag!r} (PUT {MODELS}/{name}/tags/{self.tag})")
        answer = self._api.request("PUT", f"{MODELS}/{name}/tags/{self.tag}")
        if answer.status_code == 404:
            raise self._api.explain(answer, f"tagging {name}: Rasa X has no model of that "
                                    "name (404); upload it first (was it deleted?)")
        if answer.status_code not in (200, 204):  # older Rasa X answered 200
            raise self._api.explain(answer, f"tagging {name} {self.tag!r}")
        live = self.live_model_id()
        if live != ref.model_id:
            raise DeployError(f"after tagging, Rasa X's {self.tag!r} is model {live}, not "
                              f"{ref.model_id}")
        log(f"Rasa X's tag {self.tag!r} is model {name}")

    # ----------------------------------------------------------- reading

    def tagged_model(self) -> str | None:
        """The name of the model the tag points at; None when no model has it."""
        headers = {"If-None-Match": self._seen[0]} if self._seen else {}
        path = f"{MODELS}/tags/{self.tag}"
        answer = self._api.request("GET", path, headers=headers, stream=True)
        with answer:  # the model itself is never read: closed unread
            if answer.status_code == 204 and self._seen:
                return self._seen[1]  # Rasa X's "unchanged" for a matching ETag
            if answer.status_code == 404:
                self._seen = None
                return None
            if answer.status_code != 200:
                raise self._api.explain(answer, f"GET {path}")
            filename = answer.headers.get("filename", "")
            etag = answer.headers.get("ETag", "")
        if not filename:
            raise DeployError(f"GET {path}: Rasa X sent no filename header")
        name = filename.removesuffix(".tar.gz")
        self._seen = (etag, name) if etag else None
        return name

    def live_model_id(self) -> str | None:
        name = self.tagged_model()
        return None if name is None else _model_id(name)

    def serves(self, ref: ModelRef) -> bool:
        # Rasa X's deployment holds the bot's config: the model is all that differs.
        return self.live_model_id() == ref.model_id

    def talk(self, sender: str, text: str, timeout: float = 120.0) -> list[str]:
        """One message to the production Rasa's REST channel; its text replies."""
        where = public_url(self.rest_url)  # a token in its query stays out of errors
        try:
            answer = requests.post(self.rest_url, json={"sender": sender, "message": text},
                                   timeout=timeout)
        except requests.RequestException as exc:
            raise DeployError(f"REST channel {where}: {type(exc).__name__}") from None
        if answer.status_code != 200:
            raise DeployError(f"REST channel {where}: HTTP {answer.status_code}")
        return [str(item.get("text", "")) for item in answer.json() if "text" in item]

    def server_answers(self) -> bool:
        return self._api.answers()

    # ---------------------------------------------- nothing to run here

    def ensure_server(self, log: LogSink) -> bool:
        return False  # Rasa X runs its own Rasa servers

    def stop_all(self, log: LogSink) -> None:
        pass

    def health(self) -> list[Health]:
        return []

    def secrets(self) -> list[str]:
        # The access token is made here (POST /api/auth), not read from the config.
        return self._api.secrets()
