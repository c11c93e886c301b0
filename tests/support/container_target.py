"""The blue/green target with Rasa in containers (model.runtime: docker), built the
same way in the test's process and in an "agent" subprocess that a kill point
SIGKILLs mid-switch: the same engine, image, slot ports, stable URL and state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.targets.docker.engine import local_engine
from agent.targets.docker.rasa_slots import ContainerSettings, ContainerSlotRunner
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from tests.support.paths import REPO_ROOT


@dataclass(frozen=True)
class ContainerTarget:
    engine: str  # the dockerd's base URL
    image: str
    ports: tuple[int, int]
    url: str  # the stable URL (HAProxy)
    state: str  # the target's state dir

    def build(self) -> BlueGreenRasaTarget:
        state = Path(self.state)
        runner = ContainerSlotRunner(local_engine(self.engine), ContainerSettings(
            image=self.image, ports=self.ports, public_host="127.0.0.1",
            tracker_dir=state / "tracker"))
        return BlueGreenRasaTarget(
            url=self.url, token=None, state_dir=state, runner=runner,
            action_endpoint="http://127.0.0.1:5055/webhook", load_timeout=300,
            drain_timeout=10)

    def activate_killed_at(self, point: str, release: str, model: Path, bot: Path
                           ) -> subprocess.CompletedProcess[str]:
        """`release` activated by another process, SIGKILLed at kill point `point`."""
        return subprocess.run(
            [sys.executable, "-c", ACTIVATE, json.dumps(asdict(self)), release, str(model),
             str(bot)],
            env={**os.environ, "RASA_GITOPS_KILL_AT": point, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True, text=True, timeout=600)


ACTIVATE = """
import json, sys
from pathlib import Path
from tests.support.container_target import ContainerTarget
fields = json.loads(sys.argv[1])
target = ContainerTarget(**{**fields, "ports": tuple(fields["ports"])}).build()
release, model, bot = sys.argv[2:]
target.activate(target.upload(release, Path(model), print, Path(bot)), print)
"""
