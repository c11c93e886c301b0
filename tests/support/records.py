"""Journal records made by hand, for step tests that need no real journal."""

from __future__ import annotations

import dataclasses
from typing import Any

from agent.journal import Release

RUNNING_RELEASE = Release(
    id=2, environment="production", commit="c0ffee", branch="main", author="a", message="m",
    status="running", reason="", created_at=0.0, started_at=None, finished_at=None,
    owner="", retry_of=None, worktree=None, model_path="/models/release-2.tar.gz",
    model_fingerprint="f", model_id="m1", model_reused=False, required_actions=(),
    action_code_fingerprint=None, image=None, action_server=None,
)


def release_record(**changes: Any) -> Release:
    """Release 2, running, with a trained model; `changes` replace fields."""
    return dataclasses.replace(RUNNING_RELEASE, **changes)
