"""The served Rasa server's endpoints/credentials, rendered from the bot's own files.

Fast: no Rasa server starts. Rasa's own readers (imported, not run) check that
what the agent writes means to Rasa what the bot meant; a real redis-server
checks the reachability probe. tests/agent/targets/test_bot_stores.py serves a
bot with its own stores through a real `rasa run`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.targets.base import DeployError
from agent.targets.rasa_config import (
    BUILTIN_CHANNELS,
    check_reachable,
    render_server_config,
)
from tests.support.ci import need
from tests.support.services import RedisServer, free_port

ACTION_URL = "http://127.0.0.1:5055/webhook"


def render(tmp_path: Path, endpoints: str | None = None, credentials: str | None = None,
           ) -> Any:
    bot = tmp_path / "bot"
    bot.mkdir(exist_ok=True)
    if endpoints is not None:
        (bot / "endpoints.yml").write_text(endpoints)
    if credentials is not None:
        (bot / "credentials.yml").write_text(credentials)
    return render_server_config(bot, tmp_path / "out", action_url=ACTION_URL,
                                default_tracker_db=tmp_path / "work" / "tracker.db")


def rasa_reads(path: Path, section: str) -> Any:
    """What Rasa 3.6 itself makes of one section of an endpoints file."""
    need(importlib.util.find_spec("rasa") is not None, "Rasa 3.6 is not installed")
    from rasa.utils.endpoints import read_endpoint_config

    return read_endpoint_config(str(path), section)


def test_a_bot_without_files_gets_a_persistent_sqlite_tracker_store_and_rest(
        tmp_path: Path) -> None:
    config = render(tmp_path)
    assert config.tracker_store == "sql (sqlite, agent default)"
    assert config.lock_store == "in-memory"
    assert config.env_names == frozenset()
    assert yaml.safe_load(config.credentials.read_text()) == {"rest": None}
    tracker = rasa_reads(config.endpoints, "tracker_store")
    assert tracker.type == "SQL"
    assert tracker.kwargs == {"dialect": "sqlite", "db": str(tmp_path / "work" / "tracker.db")}
    assert (tmp_path / "work").is_dir()  # SQLite creates the file, not its folder
    assert rasa_reads(config.endpoints, "action_endpoint").url == ACTION_URL


BOT_ENDPOINTS = """\
# the bot's own
action_endpoint:
  url: "http://localhost:5055/webhook"
  token: ${ACTION_TOKEN}
models:
  url: http://models.example/model.tar.gz
  token: ${MODEL_SERVER_TOKEN}
  wait_time_between_pulls: 10
tracker_store:
  type: sql
  dialect: postgresql
  url: db.example
  port: 5432
  password: ${DB_PASSWORD}
lock_store:
  type: redis
  url: ${REDIS_HOST}
  port: 6379
event_broker:
  type: pika
  url: localhost
  password: $BROKER_PASSWORD-${BROKER_SUFFIX}
nlg:
  url: http://nlg.example:5056/nlg
"""

BOT_CREDENTIALS = """\
socketio:
  user_message_evt: user_uttered
slack:
  slack_token: ${SLACK_TOKEN}
my_pkg.channels.MyInput:
  key: value
"""


def test_the_bots_sections_are_kept_with_only_the_action_url_replaced_and_models_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = render(tmp_path, BOT_ENDPOINTS, BOT_CREDENTIALS)
    written = yaml.safe_load(config.endpoints.read_text())
    bot = yaml.safe_load(BOT_ENDPOINTS)
    assert "models" not in written  # the agent decides which model serves
    assert written["action_endpoint"] == {"url": ACTION_URL, "token": "${ACTION_TOKEN}"}
    for section in ("tracker_store", "lock_store", "event_broker", "nlg"):
        assert written[section] == bot[section]
    assert (config.tracker_store, config.lock_store) == ("sql (postgresql)", "redis")
    channels = yaml.safe_load(config.credentials.read_text())
    assert channels == {**yaml.safe_load(BOT_CREDENTIALS), "rest": None}
    # Not MODEL_SERVER_TOKEN: only the dropped `models:` section used it.
    assert config.env_names == {"ACTION_TOKEN", "DB_PASSWORD", "REDIS_HOST", "SLACK_TOKEN",
                                "BROKER_PASSWORD", "BROKER_SUFFIX"}
    # Secrets stay references in the files; Rasa expands them from its environment.
    secret = "pa55-w0rd-never-written"
    for name in config.env_names:  # Rasa refuses a file with any of them unset
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("DB_PASSWORD", secret)
    monkeypatch.setenv("REDIS_HOST", "redis.example")
    assert secret not in config.endpoints.read_text()
    assert rasa_reads(config.endpoints, "tracker_store").kwargs["password"] == secret
    assert rasa_reads(config.endpoints, "lock_store").url == "redis.example"


def test_the_known_channels_are_exactly_rasas_own() -> None:
    need(importlib.util.find_spec("rasa") is not None, "Rasa 3.6 is not installed")
    from rasa.core.channels import BUILTIN_CHANNELS as RASA_CHANNELS

    assert set(RASA_CHANNELS) == BUILTIN_CHANNELS


@pytest.mark.parametrize(("file", "text", "expected"), [
    ("endpoints.yml", "tracker_store:\n  type: sql\n   dialect: [\n",
     "endpoints.yml:3: YAML syntax error"),
    ("endpoints.yml", "nlg: &a\n  - *a\n", "endpoints.yml:1: YAML syntax error"),
    ("endpoints.yml", "nlg:\n  url: x\ntracker_store:\n  type: postgres\n",
     "endpoints.yml:4: tracker_store type 'postgres' is not one Rasa 3.6 knows"),
    ("endpoints.yml", "lock_store:\n  type: Redis\n",  # Rasa compares lock types as written
     "endpoints.yml:2: lock_store type 'Redis' is not one Rasa 3.6 knows"),
    ("endpoints.yml", "tracker_store:\n  url: localhost\n",
     "endpoints.yml:1: tracker_store has no type, so Rasa would keep conversations in memory"),
    ("endpoints.yml", "tracker_store: sql\n",
     "endpoints.yml:1: tracker_store must be a mapping"),
    ("endpoints.yml", "- tracker_store\n", "endpoints.yml:1: must be a mapping of sections"),
    ("endpoints.yml", "lock_store:\n  type: redis\n  password: \"${PW}\"\n",
     "endpoints.yml:3: '${PW}' is quoted, so Rasa will not substitute"),
    ("credentials.yml", "rest:\n\nwhatsapp:\n  token: x\n",
     "credentials.yml:3: channel 'whatsapp' is not one Rasa 3.6 knows"),
    ("credentials.yml", "rest:\nrest:\n", "credentials.yml:2: duplicate key 'rest'"),
])
def test_bad_bot_files_are_refused_with_file_line_and_a_fix(
        tmp_path: Path, file: str, text: str, expected: str) -> None:
    with pytest.raises(DeployError) as caught:
        render(tmp_path, **{file.removesuffix(".yml"): text})
    assert str(caught.value).startswith(expected), str(caught.value)
    assert not (tmp_path / "out" / "endpoints.yml").exists()


def test_custom_store_classes_and_channels_by_module_path_are_allowed(tmp_path: Path) -> None:
    config = render(tmp_path, "tracker_store:\n  type: my_pkg.stores.MyStore\n"
                              "lock_store:\n  type: in_memory\n",
                    "rest:\nmy_pkg.MyInput:\n")
    assert (config.tracker_store, config.lock_store) == ("my_pkg.stores.MyStore", "in-memory")


def test_a_relative_sqlite_file_is_kept_in_the_work_dir_not_the_release_checkout(
        tmp_path: Path) -> None:
    config = render(tmp_path, "tracker_store:\n  type: SQL\n  dialect: sqlite\n"
                              "  db: bot.db\n  query:\n    timeout: 30\n")
    section = yaml.safe_load(config.endpoints.read_text())["tracker_store"]
    assert section == {"type": "SQL", "dialect": "sqlite", "query": {"timeout": 30},
                       "db": str(tmp_path / "work" / "bot.db")}
    assert config.tracker_store == "sql (sqlite)"


def test_an_unreachable_store_is_named_with_its_address_and_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = render(tmp_path, f"tracker_store:\n  type: sql\n  dialect: sqlite\n"
                              f"lock_store:\n  type: redis\n  url: 127.0.0.1\n  port: {port}\n")
    with pytest.raises(DeployError) as caught:
        check_reachable(config, timeout=1.0)
    message = str(caught.value)
    assert message.startswith(f"endpoints.yml:5: lock_store (redis) at 127.0.0.1:{port} "
                              "cannot be reached"), message
    assert "endpoints.yml" in message


def test_a_sql_url_is_probed_without_showing_its_password(tmp_path: Path) -> None:
    port = free_port()
    config = render(tmp_path, "tracker_store:\n  type: SQL\n  dialect: postgresql\n"
                              f"  url: postgresql://rasa:hunter2@127.0.0.1:{port}/rasa\n")
    with pytest.raises(DeployError) as caught:
        check_reachable(config, timeout=1.0)
    assert f"tracker_store (sql (postgresql)) at 127.0.0.1:{port}" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_an_unset_variable_is_named_never_its_neighbours_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SET_ONE", "s3cret-value")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    config = render(tmp_path, "nlg:\n  url: http://x\n  token: ${SET_ONE}\n",
                    "slack:\n  slack_token: ${UNSET_ONE}\n")
    with pytest.raises(DeployError, match=r"\$\{UNSET_ONE\}, not set") as caught:
        check_reachable(config)
    assert "s3cret-value" not in str(caught.value)


def test_a_running_redis_is_reachable_through_a_variable(
        tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PORT", str(redis_server.port))
    config = render(tmp_path, "lock_store:\n  type: redis\n  url: 127.0.0.1\n"
                              "  port: ${REDIS_PORT}\n"
                              "tracker_store:\n  type: redis\n  url: 127.0.0.1\n"
                              "  port: ${REDIS_PORT}\n  db: 2\n")
    check_reachable(config, timeout=2.0)
    assert config.env_names == {"REDIS_PORT"}
