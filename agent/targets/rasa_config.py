"""The served Rasa server's endpoints.yml and credentials.yml, made from the bot's own.

A bot's tracker store, lock store, event broker, NLG server and channels live in
its endpoints.yml and credentials.yml. A server the agent starts must use them,
or a real bot can't be served and every switch forgets every conversation. So
the bot's files are carried over from the release's checkout with three
changes only: the action endpoint points at the agent's stable action port,
Rasa's model-server pull (`models:`) is dropped, and a bot without a tracker
store gets a persistent one (Rasa's SQL store on SQLite in the agent's work dir).

Everything Rasa would only discover at start-up or, worse, silently replace
with an in-memory default (a store type it doesn't know, a channel it doesn't
know, invalid YAML, a quoted `${VAR}` it won't expand) is refused here with
`file:line: problem; fix`, before any server starts. Secret values are never
read: `${VAR}` stays as written and Rasa expands it from the server's
environment; only the variable names are collected.

This module runs in the agent, which has no Rasa installed: the names Rasa 3.6
knows are written out here, and a test compares them with the installed Rasa.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from agent.targets.base import DeployError
from hooks.core.errors import LocatedError
from hooks.core.yaml_lines import LDict, load_yaml, read_text

# rasa.core.channels.BUILTIN_CHANNELS of Rasa 3.6 (tests/agent/targets/test_rasa_config.py
# checks this against the installed Rasa).
BUILTIN_CHANNELS = frozenset({
    "botframework", "callback", "cmdline", "facebook", "hangouts", "mattermost", "rasa",
    "rest", "rocketchat", "slack", "socketio", "telegram", "twilio", "twilio_voice",
    "webexteams",
})
# rasa.core.tracker_store._create_from_endpoint_config compares `type.lower()`;
# anything else is loaded as a module path or, failing that, silently in-memory.
TRACKER_TYPES = frozenset({"sql", "redis", "mongod", "dynamo"})
# rasa.core.lock_store._create_from_endpoint_config compares the type as written.
LOCK_TYPES = frozenset({"in_memory", "redis"})
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")  # a custom class: module.Class
# Rasa's resolver (rasa.shared.utils.io.replace_environment_variables) expands a
# *plain* scalar holding ${...} with os.path.expandvars, so `$NAME` counts too.
RASA_ENV_SCALAR = re.compile(r"^(.*)\$\{(.*)\}(.*)$")
ENV_NAME = re.compile(r"\$\{(\w+)\}|\$(\w+)")
SQL_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306,
             "mssql": 1433, "oracle": 1521}
STR = "tag:yaml.org,2002:str"
MAP = "tag:yaml.org,2002:map"


@dataclass(frozen=True)
class StoreAddress:
    """A store the server must reach, as the bot wrote it (maybe with ${VAR})."""

    store: str  # "tracker_store" | "lock_store"
    kind: str  # "redis" | "sql (postgresql)" | ...
    host: str
    port: str
    where: str  # "endpoints.yml:7"


@dataclass(frozen=True)
class ServerConfig:
    endpoints: Path  # written file to pass to `rasa run --endpoints`
    credentials: Path  # written file for `--credentials` (rest: always present)
    env_names: frozenset[str]  # ${VAR} names the bot's files reference
    tracker_store: str  # e.g. "sql (sqlite, agent default)", "sql (postgresql)", "redis"
    lock_store: str  # "in-memory" | "redis" | ...
    stores: tuple[StoreAddress, ...] = ()  # what check_reachable connects to


def render_server_config(bot_dir: Path | None, out_dir: Path, *, action_url: str,
                         default_tracker_db: Path,
                         agent_env: Mapping[str, str] | None = None) -> ServerConfig:
    """Write the server's endpoints.yml and credentials.yml into `out_dir`.

    `agent_env` maps each environment variable the agent reads a secret of its
    own from to the config key naming it (`RASA_TOKEN` -> `model.auth_token_env`).
    Raises DeployError "endpoints.yml:LINE: problem; fix" for bad input."""
    out_dir.mkdir(parents=True, exist_ok=True)
    endpoints = _read(bot_dir, "endpoints.yml")
    credentials = _read(bot_dir, "credentials.yml")
    tracker, lock, stores = _check_endpoints(endpoints)
    _check_channels(credentials)

    root = endpoints.node if endpoints else _mapping([])
    _set(root, "action_endpoint", _action_endpoint(_get(root, "action_endpoint"), action_url))
    # The agent decides which model serves (one switch); a `models:` pull
    # would let a model server swap it behind the journal's back.
    _drop(root, "models")
    if tracker is None:
        tracker = "sql (sqlite, agent default)"
        default_tracker_db.parent.mkdir(parents=True, exist_ok=True)
        _set(root, "tracker_store", _mapping([
            ("type", _scalar("SQL")), ("dialect", _scalar("sqlite")),
            ("db", _scalar(str(default_tracker_db), '"'))]))
    elif tracker == "sql (sqlite)":
        _anchor_sqlite(_get(root, "tracker_store"), default_tracker_db.parent)
    channels = credentials.node if credentials else _mapping([])
    added = ""
    if not any(isinstance(k, yaml.ScalarNode) and k.value == "rest" for k, _ in channels.value):
        # the smoke test, the warm-up and `agent chat` talk to the REST channel
        channels.value.append((_scalar("rest"), yaml.ScalarNode("tag:yaml.org,2002:null", "")))
        added = "; rest: added"

    # Counted on what is written: a variable only the dropped `models:` used
    # is not one the server needs.
    env: dict[str, tuple[str, int]] = {}  # name -> (file, line) of its first use
    _collect_env("endpoints.yml", root, env)
    _collect_env("credentials.yml", channels, env)
    _refuse_agent_secrets(env, agent_env or {})
    source = f"from {bot_dir}" if bot_dir else "(the bot has none)"
    endpoints_out = _write(out_dir / "endpoints.yml", root,
                           f"# Written by the rasa-gitops agent {source}: action_endpoint\n"
                           "# points at the agent's action port; `models:` is dropped.\n")
    credentials_out = _write(out_dir / "credentials.yml", channels,
                             f"# Written by the rasa-gitops agent {source}{added}.\n")
    return ServerConfig(endpoints_out, credentials_out, frozenset(env), tracker, lock, stores)


def check_reachable(config: ServerConfig, timeout: float = 3.0) -> None:
    """Refuse a server that could not start: an unset ${VAR}, or a store
    (Redis, a networked SQL database) that does not accept a TCP connection."""
    unset = sorted(name for name in config.env_names if name not in os.environ)
    if unset:
        names = ", ".join(f"${{{name}}}" for name in unset)
        raise DeployError(f"the bot's endpoints.yml/credentials.yml use {names}, not set in "
                          "the agent's environment; Rasa would refuse to start. Set them where "
                          "the agent runs (e.g. its service's Environment=)")
    for store in config.stores:
        host, port = _expand(store.host), _expand(store.port)
        if store.kind.startswith("sql"):  # Rasa's SQL store takes "host:port" or a URL
            host, port = _split(host, port)
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                pass
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DeployError(
                f"{store.where}: {store.store} ({store.kind}) at {host}:{port} cannot be "
                f"reached: {reason or type(exc).__name__}; start it, or fix its host/port "
                "in the bot's endpoints.yml") from None


# ---------------------------------------------------------------- reading


@dataclass
class _File:
    name: str
    data: Any  # line-aware values (hooks.core.yaml_lines)
    node: yaml.MappingNode  # the same document as nodes: keeps quoting when written back


def _read(bot_dir: Path | None, name: str) -> _File | None:
    path = bot_dir / name if bot_dir else None
    if path is None or not path.is_file():
        return None
    try:
        data = load_yaml(path)  # size, alias and nesting limits; duplicate keys; lines
        node = yaml.compose(read_text(path), Loader=yaml.SafeLoader)
    except LocatedError as exc:
        raise _error(name, exc.line, exc.message) from None
    if data is None or node is None:
        return None
    if not isinstance(node, yaml.MappingNode):
        raise _error(name, node.start_mark.line + 1,
                     "must be a mapping of sections (e.g. `tracker_store:`); fix its top level")
    return _File(name, data, node)


def _refuse_agent_secrets(env: Mapping[str, tuple[str, int]], agent_env: Mapping[str, str],
                          ) -> None:
    """The server's environment gets every variable the bot's files name: one
    the agent reads its own secret from (its Rasa token, a registry password)
    would hand that secret to the bot's server, its channels and its logs."""
    for variable in sorted(set(env) & set(agent_env)):
        name, line = env[variable]
        raise _error(name, line, f"${{{variable}}} is the environment variable the agent "
                     f"reads its own secret from ({agent_env[variable]}), and a served Rasa "
                     "server never gets the agent's secrets; use a different variable for "
                     f"the bot (e.g. BOT_{variable}) and set it where the agent runs")


def _collect_env(name: str, node: yaml.Node, env: dict[str, tuple[str, int]],
                 seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias (maybe of its own parent) is walked once
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        if "$" not in node.value:
            return
        if node.style is not None and RASA_ENV_SCALAR.match(node.value):
            raise _error(name, node.start_mark.line + 1 if node.start_mark else 0,
                         f"{node.value!r} is quoted, so Rasa will not substitute the variable; "
                         "write it without quotes")
        if node.style is None and RASA_ENV_SCALAR.match(node.value):
            line = node.start_mark.line + 1 if node.start_mark else 0
            for a, b in ENV_NAME.findall(node.value):
                env.setdefault(a or b, (name, line))
        return
    children = (node.value if isinstance(node, yaml.SequenceNode)
                else [n for pair in node.value for n in pair])
    for child in children:
        _collect_env(name, child, env, seen)


def _check_endpoints(file: _File | None) -> tuple[str | None, str, tuple[StoreAddress, ...]]:
    """(tracker store, lock store, addresses to check); tracker None = the bot has none."""
    if file is None:
        return None, "in-memory", ()
    stores: list[StoreAddress] = []
    tracker = _store(file, "tracker_store", stores)
    lock = _store(file, "lock_store", stores) or "in-memory"
    return tracker, lock, tuple(stores)


def _store(file: _File, key: str, stores: list[StoreAddress]) -> str | None:
    section = file.data.get(key)
    if section is None:
        return None
    line = file.data.line_of(key)
    if not isinstance(section, LDict):
        raise _error(file.name, line, f"{key} must be a mapping with a `type`; fix it or "
                     "remove the section")
    kind = section.get("type")
    where = f"{file.name}:{section.line_of('type') if 'type' in section else line}"
    known = TRACKER_TYPES if key == "tracker_store" else LOCK_TYPES
    if kind is None and key == "lock_store":
        return "in-memory"
    if kind is None:
        raise DeployError(f"{where}: tracker_store has no type, so Rasa would keep "
                          "conversations in memory and lose them at every switch; set a type "
                          f"({', '.join(sorted(known))}) or remove the section to get the "
                          "agent's persistent SQLite store")
    if not isinstance(kind, str) or not (
            (kind.lower() if key == "tracker_store" else kind) in known or DOTTED.match(kind)):
        hint = ("remove the section to get the agent's persistent SQLite store"
                if key == "tracker_store" else "remove the section for Rasa's in-memory locks")
        raise DeployError(f"{where}: {key} type {kind!r} is not one Rasa 3.6 knows "
                          f"({', '.join(sorted(known))}, or a module path like "
                          f"my_pkg.MyStore); fix it, or {hint}")
    if key == "tracker_store" and kind.lower() in known:
        kind = kind.lower()
    if kind == "redis":
        host, port = str(section.get("url") or "localhost"), str(section.get("port") or 6379)
        stores.append(StoreAddress(key, "redis", host, port, where))
        return "redis"
    if kind == "sql":
        dialect = str(section.get("dialect") or "sqlite")
        base = dialect.split("+")[0].lower()
        sql_host = section.get("url") or section.get("host")
        if base != "sqlite" and sql_host:
            sql_port = str(section.get("port") or SQL_PORTS.get(base, ""))
            if sql_port:
                stores.append(StoreAddress(key, f"sql ({base})", str(sql_host), sql_port,
                                           where))
        return f"sql ({base})"
    return "in-memory" if kind == "in_memory" else kind


def _split(host: str, port: str) -> tuple[str, str]:
    """Host and port, without a URL's scheme or user:password (never shown)."""
    if "://" in host or "@" in host:
        parsed = urlsplit(host if "://" in host else f"scheme://{host}")
        return parsed.hostname or "localhost", str(parsed.port or port)
    if ":" in host:
        name, _, embedded = host.rpartition(":")
        return name, embedded or port
    return host, port


def _check_channels(file: _File | None) -> None:
    if file is None:
        return
    for channel in file.data:
        if not isinstance(channel, str) or not (channel in BUILTIN_CHANNELS
                                                or DOTTED.match(channel)):
            raise DeployError(
                f"{file.name}:{file.data.line_of(channel)}: channel {channel!r} is not one "
                f"Rasa 3.6 knows ({', '.join(sorted(BUILTIN_CHANNELS))}, or a module path "
                "like my_pkg.MyInput for a custom channel); fix or remove it")


def _expand(value: str) -> str:
    """A ${VAR} in a host or port, from the agent's environment (checked set)."""
    return os.path.expandvars(value) if RASA_ENV_SCALAR.match(value) else value


def _error(name: str, line: int, message: str) -> DeployError:
    return DeployError(f"{name}:{line}: {message}" if line else f"{name}: {message}")


# ---------------------------------------------------------------- nodes


def _scalar(value: str, style: str | None = None) -> yaml.ScalarNode:
    return yaml.ScalarNode(STR, value, style=style)


def _mapping(pairs: list[tuple[str, yaml.Node]]) -> yaml.MappingNode:
    return yaml.MappingNode(MAP, [(_scalar(key), value) for key, value in pairs])


def _get(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    for key_node, value in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value  # type: ignore[no-any-return]
    return None


def _set(node: yaml.MappingNode, key: str, value: yaml.Node) -> None:
    for index, (key_node, _) in enumerate(node.value):
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            node.value[index] = (key_node, value)
            return
    node.value.append((_scalar(key), value))


def _drop(node: yaml.MappingNode, key: str) -> None:
    node.value = [(k, v) for k, v in node.value
                  if not (isinstance(k, yaml.ScalarNode) and k.value == key)]


def _action_endpoint(bot: yaml.Node | None, action_url: str) -> yaml.MappingNode:
    """The bot's action_endpoint (token, headers kept) with the agent's URL."""
    section = bot if isinstance(bot, yaml.MappingNode) else _mapping([])
    _set(section, "url", _scalar(action_url, '"'))
    return section


def _anchor_sqlite(section: yaml.Node | None, work: Path) -> None:
    """A relative SQLite `db` would be opened from each server's working
    directory: anchor it in the agent's work dir, which every release shares."""
    if not isinstance(section, yaml.MappingNode):
        return
    db = _get(section, "db")
    name = db.value if isinstance(db, yaml.ScalarNode) else "rasa.db"  # Rasa's default
    if not name or "$" in name or name == ":memory:" or Path(name).is_absolute():
        return
    work.mkdir(parents=True, exist_ok=True)
    _set(section, "db", _scalar(str(work / name), '"'))


def _write(path: Path, node: yaml.Node, header: str) -> Path:
    text = yaml.serialize(node, Dumper=yaml.SafeDumper)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + text, encoding="utf-8")
    tmp.chmod(0o600)  # a bot may (wrongly) keep a secret in it
    tmp.replace(path)
    return path
