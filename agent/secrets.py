"""Secrets and the redactor, kept together because they guard the same promise.

A secret (a registry password, a Rasa auth token) must never reach a log, the
journal, an error, a child's environment or a command line. `Secret` makes
that the default: it prints as its origin (`Secret($RASA_TOKEN)`), never its
value, and `reveal()` is the one, greppable way to read it. `Redactor` is the
net under that: every line the agent prints or journals passes through it, and
any revealed value that slipped into a child's output is replaced by `***`.
"""

from __future__ import annotations

from collections.abc import Iterable

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
