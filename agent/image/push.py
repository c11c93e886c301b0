"""Push an image to its registry and return the pushed digest.

Credentials come from the environment (passed in as values, never logged) or
from the Docker config the SDK reads itself. Failures are sorted into a few
kinds with a clear message each; only the transient kinds are retried, with a
bounded exponential backoff.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.retry import Backoff, retrying
from agent.secrets import Redactor
from agent.targets.base import LogSink

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TRANSIENT = ("unreachable", "server")  # the kinds worth another attempt


class PushError(Exception):
    """The image could not be pushed; `kind` is auth, unreachable, disk, server or other."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials({self.username}, ***)"

    __str__ = __repr__


@dataclass(frozen=True)
class Pushed:
    ref: str
    digest: str

    @property
    def by_digest(self) -> str:
        return f"{split_ref(self.ref)[0]}@{self.digest}"


def split_ref(ref: str) -> tuple[str, str]:
    """`registry/repo:tag` into (repository, tag); tag defaults to latest."""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def registry_of(repository: str) -> str:
    first = repository.split("/", 1)[0]
    if "/" in repository and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


# Status codes as words: neither a registry's port (127.0.0.1:34013) nor a commit sha in
# a tag or a URL (...0c7c...aa401a304) may read as a 401 or a 502.
AUTH_WORDS = re.compile(r"unauthorized|authentication required|denied|no basic auth credentials"
                        r"|(?<![\w.:/-])401(?!\w)|403 forbidden")
UNREACHABLE_WORDS = re.compile(r"connection refused|no such host|i/o timeout|timeout"
                               r"|connection reset|eof|dial tcp|server misbehaving"
                               r"|network is unreachable|(?<![\w.:/-])50[23](?!\w)")


def classify(message: str) -> str:
    text = message.lower()
    if AUTH_WORDS.search(text):
        return "auth"
    if "no space left" in text or "disk quota" in text:
        return "disk"
    if "500 internal server error" in text:
        return "server"
    if UNREACHABLE_WORDS.search(text):
        return "unreachable"
    return "other"


def _explain(kind: str, registry: str, raw: str, scrub: Redactor) -> str:
    raw = scrub(raw)
    if kind == "auth":
        return (f"registry {registry} refused the credentials (authentication failed); "
                f"check the registry user and password the agent is given ({raw})")
    if kind == "unreachable":
        return (f"registry {registry} is unreachable; check that it runs and that the "
                f"address is right ({raw})")
    if kind == "disk":
        return f"registry {registry} or the Docker host is out of disk space ({raw})"
    if kind == "server":
        # Docker passes on only the status; the reason is in the registry's own log.
        return (f"registry {registry} failed while storing the image (HTTP 500); a full disk "
                f"on the registry is the usual cause: check its free space and its log ({raw})")
    return f"push to {registry} failed: {raw}"


def push_image(
    client: Any,
    ref: str,
    log: LogSink,
    *,
    credentials: Credentials | None = None,
    attempts: int = 4,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Pushed:
    """Push `ref`; retry an unreachable or failing registry up to `attempts` times in all,
    waiting `backoff`, 2x, 4x ... seconds (at most 8x) between tries."""
    repository, tag = split_ref(ref)
    registry = registry_of(repository)
    auth = ({"username": credentials.username, "password": credentials.password}
            if credentials else None)
    scrub = Redactor([credentials.password] if credentials else [])
    tried = 0

    def once() -> Pushed:
        nonlocal tried
        tried += 1
        return _push_classified(client, repository, tag, auth, registry, scrub, log)

    try:
        return retrying(once, what=f"push to {registry}", log=log, sleep=sleep,
                        transient=_transient,
                        backoff=Backoff(attempts=attempts, first=backoff, cap=8 * backoff))
    except PushError as exc:
        raise PushError(exc.kind, f"{exc} (after {tried} attempt(s))") from None


def _transient(exc: Exception) -> str | None:
    return exc.kind if isinstance(exc, PushError) and exc.kind in TRANSIENT else None


def _push_classified(client: Any, repository: str, tag: str, auth: dict[str, str] | None,
                     registry: str, scrub: Redactor, log: LogSink) -> Pushed:
    """One push; every failure as a PushError of its kind (the password scrubbed)."""
    import docker.errors
    import requests

    try:
        return _push_once(client, repository, tag, auth, registry, scrub, log)
    except docker.errors.APIError as exc:
        raw = str(exc.explanation or exc)
        kind = classify(raw)
        raise PushError(kind, _explain(kind, registry, raw, scrub)) from None
    except requests.ConnectionError as exc:
        # The engine itself went away mid-push (dockerd restarting): worth another try.
        raise PushError("unreachable", f"the Docker engine went away during the push to "
                        f"{registry}: {scrub(str(exc))}") from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise PushError("other", _explain("other", registry, str(exc), scrub)) from None


def _push_once(client: Any, repository: str, tag: str, auth: dict[str, str] | None,
               registry: str, scrub: Redactor, log: LogSink) -> Pushed:
    log(f"pushing {repository}:{tag}")
    digest = ""
    stream = client.api.push(repository, tag=tag, auth_config=auth, stream=True, decode=True)
    for chunk in stream:
        if "error" in chunk:
            raw = str(chunk["error"])
            kind = classify(raw)
            raise PushError(kind, _explain(kind, registry, raw, scrub))
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
        status = chunk.get("status")
        if status and chunk.get("id") is None:
            log(str(status))
            found = DIGEST.search(str(status))
            if found and not digest:
                digest = found.group(0)
    if not digest:
        raise PushError("other", f"push to {registry} ended without a digest")
    log(f"pushed {repository}:{tag} as {digest}")
    return Pushed(f"{repository}:{tag}", digest)
