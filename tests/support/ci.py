"""Skip locally, fail in CI: how a test reacts when a real part is missing.

A laptop may lack dockerd or Rasa and should still run what it can; CI has
everything, so a missing part there is a broken machine, never a quiet skip.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(condition: bool, reason: str) -> None:
    """Skip locally when a real part is missing; in CI that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI needs this and it is missing: {reason}")
    pytest.skip(reason)
