"""Helpers for the serving tests: a chatting client, counting a target's Rasa
servers, and the example order bot trained twice.

A model-load stall only shows with real components (about a minute to load a
DIET/TED model here, 0.1 s for the light config), so the model promoted TO is
examples/orderbot as it is. The model promoted FROM only has to serve the form
and greet: it is trained with the light config, which trains in seconds and
loads in one, instead of a second minute-long DIET/TED load the test doesn't need.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

from agent.targets.base import LogSink, ModelRef
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from hooks.core.process import alive
from tests.support.bots import copy_bot, light_config
from tests.support.paths import EXAMPLES

ORDERBOT = EXAMPLES / "orderbot"
ORDERBOT_GREETING = "Hi! Want a coffee?"  # examples/orderbot/domain.yml
ORDERBOT_GREETINGS = {"a": ORDERBOT_GREETING, "b": "Hello again! Want a coffee?"}


class Chatter(threading.Thread):
    """Users saying hello through the stable port, one every `every` seconds,
    each in a new conversation; records each reply's text and latency."""

    def __init__(self, url: str, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.url = f"{url}/webhooks/rest/webhook"
        self.every = every
        self.replies: list[str] = []
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            sender = f"chatter-{len(self.replies) + len(self.failures)}"
            started = time.monotonic()
            try:
                answer = requests.post(self.url, json={"sender": sender, "message": "hello"},
                                       timeout=120)
                if answer.status_code == 200:
                    self.latencies.append(time.monotonic() - started)
                    self.replies.append(" ".join(item.get("text", "") for item in answer.json()))
                else:
                    self.failures.append(f"HTTP {answer.status_code}")
            except requests.RequestException as exc:
                self.failures.append(type(exc).__name__)
            time.sleep(max(0.0, self.every - (time.monotonic() - started)))


def switch_while_chatting(target: BlueGreenRasaTarget, release_id: str, model: Path, bot: Path,
                          log: LogSink) -> tuple[Chatter, ModelRef]:
    """Upload and activate a release while a Chatter talks to `target.url`
    (from a second before to a second after); the finished Chatter and the ref."""
    chatter = Chatter(target.url)
    chatter.start()
    time.sleep(1.0)
    ref = target.upload(release_id, model, log, bot)
    target.activate(ref, log)
    time.sleep(1.0)
    chatter.done.set()
    chatter.join(timeout=15)
    return chatter, ref


def rasa_servers_of(state_dir: Path) -> list[int]:
    """Pids of every `rasa run` whose config lives in `state_dir` (one target's)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = b"--enable-api" in argv and any(str(state_dir).encode() in a for a in argv)
        if ours and alive(int(proc.name)):
            found.append(int(proc.name))
    return found


@functools.cache
def orderbot_models(rasa: str) -> dict[str, tuple[Path, Path]]:
    """{variant: (bot folder, model file)} of examples/orderbot, trained once per
    process: a with the light config, b with its real DIET/TED config and
    another greeting."""
    root = Path(tempfile.mkdtemp(prefix="orderbots-"))
    atexit.register(shutil.rmtree, root, True)
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false",
           "RASA_CACHE_DIRECTORY": str(root / "train-cache")}
    built: dict[str, tuple[Path, Path]] = {}
    for variant, greeting in ORDERBOT_GREETINGS.items():
        bot = copy_bot(ORDERBOT, root / variant)
        domain = bot / "domain.yml"
        domain.write_text(domain.read_text(encoding="utf-8").replace(
            ORDERBOT_GREETING, greeting), encoding="utf-8")
        if variant == "a":
            (bot / "config.yml").write_text(light_config("orderbot"), encoding="utf-8")
        # Only TED trains on augmented stories (rules, forms: not): same size/load, less training.
        done = subprocess.run(
            [rasa, "train", "--augmentation", "0", "--fixed-model-name", variant,
             "--out", "models"],
            cwd=bot, env=env, capture_output=True, text=True, timeout=1800,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        built[variant] = (bot, bot / "models" / f"{variant}.tar.gz")
    return built
