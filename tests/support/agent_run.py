"""One tick of the agent in this process, as `agent once` runs it."""

from __future__ import annotations

from pathlib import Path

from agent.config import load_config
from agent.journal import PROMOTED, Journal
from agent.progress import Progress
from agent.runtime import Agent
from agent.tick import tick


def tick_promoted(config: Path) -> int:
    """Run one tick with the config at `config` (work_dir `work` beside it); the
    release it made, which must have been promoted (else its reason fails the test)."""
    agent = Agent.open(load_config(config), Progress(quiet=True))
    try:
        result = tick(agent)
    finally:
        agent.close()
    journal = Journal(config.parent / "work" / "journal.sqlite")
    try:
        release = journal.release(result.release_id or 0)
        assert release.status == PROMOTED, release.reason
        return release.id
    finally:
        journal.close()
