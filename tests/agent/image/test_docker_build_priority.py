"""Image builds at background priority, against a real dockerd.

The build runs inside dockerd, so the agent's niceness can't reach it; the
agent asks the engine for the lowest CPU weight for the build's containers
instead. A `RUN` step reads the weight its own container got from the kernel.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.image.build import build_image
from agent.image.context import assemble
from agent.image.dockerfile import ImageSettings
from tests.support.bots import copy_bot
from tests.support.paths import COFFEEBOT
from tests.support.services import DockerEngine

# cgroup v2 shows cpu.weight (1 for the lowest), cgroup v1 cpu.shares (2).
READ_WEIGHT = ("RUN echo \"cpu $(cat /sys/fs/cgroup/cpu.weight 2>/dev/null || "
               "cat /sys/fs/cgroup/cpu/cpu.shares) {token}\"\n")
CPU = re.compile(r"^cpu (\d+) ")


@pytest.fixture()
def client(docker_engine: DockerEngine) -> Iterator[Any]:
    client = docker_engine.client()
    yield client
    client.close()


def _build_weight(client: Any, bot: Path, base: str, background: bool) -> int:
    # A unique token per build: the engine's cache must not answer for the RUN step.
    (bot / "Dockerfile").write_text(f"FROM {base}\n"
                                    + READ_WEIGHT.format(token=uuid.uuid4()))
    lines: list[str] = []
    build_image(client, assemble(bot, ImageSettings(base_image=base)),
                repository="coffeebot-priority", commit=uuid.uuid4().hex, source="",
                log=lines.append, background=background)
    found = [int(m.group(1)) for m in map(CPU.match, lines) if m]
    assert found, lines
    return found[0]


def test_a_background_build_runs_at_the_lowest_cpu_weight(
        client: Any, tmp_path: Path, sdk_base_image: str) -> None:
    bot = copy_bot(COFFEEBOT, tmp_path / "coffeebot")
    low = _build_weight(client, bot, sdk_base_image, background=True)
    normal = _build_weight(client, bot, sdk_base_image, background=False)
    assert low in (1, 2)  # cgroup v2 weight 1 / cgroup v1 shares 2
    assert normal > low  # the engine's default: weight 100 / shares 1024
