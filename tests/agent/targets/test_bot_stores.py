"""A bot with its own stores is served with them, and its conversations land there.

The bot's endpoints.yml names a SQL tracker store on a SQLite file and a Redis
lock store on a real redis-server, both through `${VAR}`s. The blue/green
target renders each server's files from it (agent/targets/rasa_config.py) and
starts real `rasa run` servers behind HAProxy with only those variables added
to their environment. A conversation's events are then in the bot's SQLite
file, the locks went through Redis, and after a switch to another model the
new server continues the same conversation from that store.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from agent.targets.base import DeployError
from agent.targets.local_process import free_port
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from tests.support.ci import need
from tests.support.light_models import GREETINGS, light_coffeebots
from tests.support.services import RedisServer

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(1200)]

BOT_ENDPOINTS = """\
action_endpoint:
  url: "http://localhost:5055/webhook"
tracker_store:
  type: SQL
  dialect: "sqlite"
  db: ${BOT_TRACKER_DB}
lock_store:
  type: redis
  url: 127.0.0.1
  port: ${BOT_REDIS_PORT}
  db: 3
"""


def redis_calls(redis: RedisServer, command: str) -> int:
    """How often `command` ran on the server (INFO commandstats)."""
    for line in redis.command("INFO", "commandstats").splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def events_of(db: Path, sender: str) -> list[tuple[str, str]]:
    """(type_name, text or intent) of every event Rasa stored for `sender`."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT type_name, data FROM events WHERE sender_id = ? "
                                  "ORDER BY id", (sender,)).fetchall()
    found = []
    for kind, data in rows:
        event = json.loads(data)
        found.append((kind, event.get("text") or (event.get("parse_data") or {})
                      .get("intent", {}).get("name") or ""))
    return found


def release_checkout(root: Path, name: str) -> Path:
    """A release's worktree as far as the server's config goes: the bot's endpoints.yml."""
    checkout = root / name
    checkout.mkdir(parents=True)
    (checkout / "endpoints.yml").write_text(BOT_ENDPOINTS, encoding="utf-8")
    return checkout


def test_a_bot_with_its_own_stores_is_served_with_them_across_a_switch(
        tmp_path: Path, rasa_bin: Path, redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    need(shutil.which("haproxy") is not None, "HAProxy is not installed (apt-get install haproxy)")
    tracker_db = tmp_path / "bot-tracker.db"
    # The agent's environment: the servers get these two because the bot's files name them.
    monkeypatch.setenv("BOT_TRACKER_DB", str(tracker_db))
    monkeypatch.setenv("BOT_REDIS_PORT", str(redis_server.port))
    models = light_coffeebots(str(rasa_bin))
    target = BlueGreenRasaTarget(
        url=f"http://127.0.0.1:{free_port()}", token=None, state_dir=tmp_path / "bg",
        rasa_argv=[str(rasa_bin)], action_endpoint="http://127.0.0.1:5055/webhook",
        load_timeout=300, drain_timeout=10, warmup=["hello"])
    locks_before = redis_calls(redis_server, "set")
    try:
        first = target.upload("1", models["one"][1], print, release_checkout(tmp_path, "r1"))
        target.activate(first, print)
        assert target.talk("stores-1", "hello") == [GREETINGS["one"]]
        assert ("user", "hello") in events_of(tracker_db, "stores-1")
        assert redis_calls(redis_server, "set") > locks_before  # the locks went through Redis

        second = target.upload("2", models["two"][1], print, release_checkout(tmp_path, "r2"))
        target.activate(second, print)
        assert target.live_model_id() == second.model_id
        # The new model goes on with the story the old one began (greet, then
        # order): it read the conversation from the bot's store.
        confirm = target.talk("stores-1", "a small coffee please")
        assert len(confirm) == 1 and confirm[0].endswith("coffee, coming up."), confirm

        # A release whose lock store can't be reached is refused; the old one serves on.
        unreachable = release_checkout(tmp_path, "r3")
        monkeypatch.setenv("BOT_REDIS_PORT", str(free_port()))
        third = target.upload("3", models["one"][1], print, unreachable)
        with pytest.raises(DeployError, match=r"endpoints.yml:\d+: lock_store \(redis\) at "
                                              r"127.0.0.1:\d+ cannot be reached"):
            target.activate(third, print)
        assert target.live_model_id() == second.model_id
        assert target.talk("stores-1", "thanks") == ["You're welcome!"]
    finally:
        target.stop_all(print)

    events = events_of(tracker_db, "stores-1")
    assert [text for kind, text in events if kind == "bot"] == [
        GREETINGS["one"], confirm[0], "You're welcome!"]
    # The new server continued the conversation it found in the store: one session.
    assert [kind for kind, _ in events].count("session_started") == 1, events
    assert not (tmp_path / "bg" / "tracker.db").exists()  # the bot's store, not the default
