"""Model server mode with a real Rasa pulling from the agent.

Real: `rasa run` 3.6 (the test venv's), whose endpoints.yml `models:` points at
the agent's model server with a token and `wait_time_between_pulls: 2`; the
model server process the target starts; two light models of the example bot
(tests/support/light_models.py, trained once per test run) that greet
differently, so each reply says which model Rasa loaded. Nothing is faked: the
confirmation is Rasa's own `GET /status` model_id, and the 200/304 answers are
read from the model server's own log.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from agent.secrets import Secret
from agent.targets.model_server import ModelServerTarget, Puller
from agent.targets.rasa_api import RasaApi
from tests.support.light_models import GREETINGS, light_coffeebots
from tests.support.rasa_run import start_rasa_run, stop_rasa_run
from tests.support.services import free_port

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(1200)]

TOKEN = "pull-token-0f3e9a77"


def start_rasa(rasa_bin: Path, folder: Path, bot: Path, model_url: str, port: int
               ) -> subprocess.Popen[bytes]:
    endpoints = folder / "endpoints.yml"
    endpoints.write_text(f'models:\n  url: "{model_url}"\n  token: "{TOKEN}"\n'
                         "  wait_time_between_pulls: 2\n", encoding="utf-8")
    return start_rasa_run(rasa_bin, folder, port, [
        "--endpoints", str(endpoints), "--credentials", str(bot / "credentials.yml")])


def answers(log: Path, status: int) -> int:
    return log.read_text().count(f"GET /models/production {status}")


def test_rasa_pulls_production_gets_304_then_picks_up_a_promotion(
        tmp_path: Path, rasa_bin: Path) -> None:
    models = light_coffeebots(str(rasa_bin))
    (bot, model1), (_bot2, model2) = models["one"], models["two"]
    rasa_port = free_port()
    puller = Puller("rasa-1", f"http://127.0.0.1:{rasa_port}")
    target = ModelServerTarget(
        environment="production", server_dir=tmp_path / "model-server", host="127.0.0.1",
        port=free_port(), token=Secret(TOKEN, "test"), token_name="token", pullers=[puller],
        rasa_token=None, wait_time=2, margin=45)
    server_log = tmp_path / "model-server" / "model-server.log"
    target.ensure_server(print)
    rasa = start_rasa(rasa_bin, tmp_path, bot, target.model_url, rasa_port)
    try:
        # Rasa started before anything was tagged: its first pull got a 404.
        assert answers(server_log, 404) >= 1
        first = target.upload("1", model1, print)
        target.activate(first, print)  # returns once Rasa's /status reports it
        assert answers(server_log, 200) == 1
        seen = answers(server_log, 304)
        deadline = time.monotonic() + 10  # a pull every 2 s (wait_time_between_pulls)
        while answers(server_log, 304) <= seen and time.monotonic() < deadline:
            time.sleep(0.5)
        assert answers(server_log, 304) > seen and answers(server_log, 200) == 1
        assert target.talk("someone", "hello") == [GREETINGS["one"]]

        second = target.upload("2", model2, print)
        target.activate(second, print)
        assert RasaApi(puller.url, None).model_id() == second.model_id
        assert answers(server_log, 200) == 2
        assert target.serves(second)
        assert target.talk("someone else", "hello") == [GREETINGS["two"]]
        assert TOKEN not in server_log.read_text()
    finally:
        stop_rasa_run(rasa)
        target.stop_all(print)
