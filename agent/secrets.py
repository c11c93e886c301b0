"""Secrets and the redactor, kept together because they guard the same promise.

A secret (a registry password, a Rasa auth token) must never reach a log, the
journal, an error, a child's environment or a command line. The config names
one by `<name>_env` or `<name>_file`, never inline, and `read_secret` reads it
into a `Secret`, which prints as its origin (`Secret($RASA_TOKEN)`), never its
value; `reveal()` is the one, greppable way to read it. `Redactor` is the net
under that: every line the agent prints or journals passes through it, and any
revealed value that slipped into a child's output is replaced by `***`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

# A config key whose name holds one of these words names a secret: it is given
# as `<name>_env` or `<name>_file`, never inline.
SECRET_WORDS = ("token", "password", "secret", "passphrase", "api_key", "private_key")

# Shorter values would blank out ordinary words and numbers in every log line.
MIN_REDACTED_LENGTH = 4


class Secret:
    """A value that never prints; `reveal()` is the only way to read it."""

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.origin})"

    __str__ = __repr__


class SecretUnavailable(Exception):
    """A named secret could not be read; the message says why, without the value."""


def is_secret_name(name: str) -> bool:
    return any(word in name for word in SECRET_WORDS)


def read_secret(how: str, where: str, base: Path) -> Secret:
    """Read a secret from the environment variable (`how="env"`) or the file
    (`how="file"`, relative to `base`) named `where`; stripped, never empty."""
    if how == "env":
        value = os.environ.get(where)
        if not value:
            raise SecretUnavailable(f"environment variable {where} is not set")
        return Secret(value.strip(), f"${where}")
    secret_path = Path(where).expanduser()
    if not secret_path.is_absolute():
        secret_path = base / secret_path
    try:
        value = secret_path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretUnavailable(f"cannot read {secret_path}: {exc.strerror}") from None
    if not value:
        raise SecretUnavailable(f"{secret_path} is empty")
    return Secret(value, str(secret_path))


class Redactor:
    """Replaces every known secret value in a text by `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is blanked whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= MIN_REDACTED_LENGTH},
                               key=len, reverse=True)

    def add(self, secret: str) -> None:
        if secret and len(secret) >= MIN_REDACTED_LENGTH and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries: the password of its userinfo (`user:token@`),
    an http(s) URL's lone user (`token@`, how hosts take access tokens), and the
    values of its query parameters, any of which may be a token."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if not parts.scheme or not parts.netloc:
        return []  # a local path, or scp-like `git@host:x.git` (ssh keys, no secret)
    found = [value for _, value in parse_qsl(parts.query, keep_blank_values=True) if value]
    userinfo = parts.netloc.rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    if password:
        found.append(password)
    elif user and not colon and parts.scheme.lower() in ("http", "https"):
        found.append(user)
    return sorted(set(found))


def public_url(url: str) -> str:
    """`url` without credentials: no userinfo, no query string or fragment. What
    may go in an image label, a log line or a status page."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url if "@" not in url else "(a URL that could not be parsed)"
    if not parts.scheme or not parts.netloc:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
