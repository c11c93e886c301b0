"""Fast tests of agent/secrets.py: a Secret never prints, the Redactor blanks values."""

from __future__ import annotations

from agent.secrets import Redactor, Secret


def test_secret_prints_its_origin_never_its_value() -> None:
    secret = Secret("hunter2-token", "$RASA_TOKEN")
    assert secret.reveal() == "hunter2-token"
    for shown in (str(secret), repr(secret), f"{secret}", str([secret]), str({"t": secret})):
        assert "hunter2" not in shown
        assert "$RASA_TOKEN" in shown


def test_redactor_blanks_every_secret_longest_first() -> None:
    redact = Redactor(["abcd1234", "abcd1234-extended"])
    assert redact("x abcd1234-extended y abcd1234 z") == "x *** y *** z"


def test_redactor_ignores_short_and_empty_values_and_learns_new_ones() -> None:
    redact = Redactor(["", "abc"])
    assert redact("abc is a word") == "abc is a word"
    redact.add("tok-12345")
    redact.add("tok-12345")  # twice is once
    redact.add("xy")
    assert redact("Bearer tok-12345; xy") == "Bearer ***; xy"
