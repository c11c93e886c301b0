"""The agent's one YAML file, checked against a declarative schema.

Every key lives in `SCHEMA` (dotted path -> type, default, check, help). A key
the schema doesn't know only warns, so a newer config still starts on an older
agent; a known key with a bad value fails at start-up with `file: key: problem`.
Secrets never sit inline: a secret is named by `<name>_env` (an environment
variable) or `<name>_file` (a file), and is read into a `Secret` (agent/secrets.py)
that prints as its origin, never its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.secrets import Secret, SecretUnavailable, is_secret_name, read_secret
from hooks.core.errors import FatalError
from hooks.core.yaml_lines import LDict, load_yaml

Check = Callable[[Any], "str | None"]
REQUIRED = object()

PROMOTION_POLICIES = ("auto", "auto_unless_action_code", "manual")
BRANCH_NAME = re.compile(r"^(?!/|.*//|.*\.\.|.*@\{|.*\.lock$|.*/$)[A-Za-z0-9._/-]+$")


class ConfigError(FatalError):
    def __init__(self, path: Path, key: str, problem: str, line: int = 0) -> None:
        self.path, self.key, self.problem, self.line = path, key, problem, line
        where = f" (line {line})" if line else ""
        super().__init__(f"{path}: {key}: {problem}{where}")


# ------------------------------------------------------------------ checks


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _port(value: Any) -> str | None:
    return None if 0 < value < 65536 else "must be a TCP port (1-65535)"


def _branch(value: Any) -> str | None:
    return None if BRANCH_NAME.match(value) else f"{value!r} is not a valid git branch name"


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"{value!r} is not one of: {', '.join(choices)}"

    return check


def _conversations(value: Any) -> str | None:
    for i, conversation in enumerate(value):
        if not isinstance(conversation, list) or not conversation:
            return f"item {i + 1} must be a list of {{say: ..., expect: ...}} turns"
        for turn in conversation:
            if not isinstance(turn, dict) or not isinstance(turn.get("say"), str) or set(
                turn) - {"say", "expect"}:
                return f"item {i + 1}: each turn is {{say: TEXT, expect: TEXT}} (expect optional)"
    return None


def _url(value: Any) -> str | None:
    return None if re.match(r"^https?://[^/\s]+", value) else f"{value!r} is not an http(s) URL"


@dataclass(frozen=True)
class Key:
    types: tuple[type, ...]
    default: Any
    check: Check | None = None
    help: str = ""
    nullable: bool = False


def _key(types: type | tuple[type, ...], default: Any, check: Check | None = None,
         help: str = "", nullable: bool = False) -> Key:
    return Key(types if isinstance(types, tuple) else (types,), default, check, help, nullable)


NUMBER = (int, float)

SCHEMA: dict[str, Key] = {
    "repo": _key(str, REQUIRED, help="a local bare repository path, or a remote git URL"),
    "branch": _key(str, "main", _branch, "the branch whose commits become releases"),
    "work_dir": _key(str, REQUIRED, help="where the journal, worktrees and models live"),
    "rasa_command": _key(str, "rasa", help="the command that runs Rasa, e.g. `rasa`"),
    "poll_interval": _key(NUMBER, 60, _positive, "seconds between `git fetch` for remotes"),
    "keep_releases": _key(int, 5, _positive, "worktrees and models kept for rollback"),
    "pipeline.max_history": _key(int, None, _positive, nullable=True,
                                 help="passed to validation; default: from config.yml"),
    "pipeline.fail_on_warnings": _key(bool, True),
    "pipeline.test_stories": _key(str, "tests/test_*.yml", help="glob in the bot repo"),
    "pipeline.action_tests": _key(str, None, nullable=True,
                                  help="command run in the release worktree, e.g. `pytest -q`"),
    "pipeline.step_timeout": _key(NUMBER, 3600, _positive, "seconds before a step fails"),
    "action_server.target": _key(str, "local", help="local (a process on this host), docker, "
                                 "docker_ssh or swarm"),
    "action_server.host": _key(str, "127.0.0.1"),
    "action_server.port": _key(int, 5055, _port,
                               "stable port the Rasa server calls (the agent's forwarder)"),
    "action_server.actions_module": _key(str, "actions"),
    "action_server.start_timeout": _key(NUMBER, 180, _positive),
    # Docker action-server targets (docker, docker_ssh, swarm) and their image (issue 5).
    "action_server.backend_ports": _key(list, None, nullable=True,
                                        help="two ports new and old containers alternate on; "
                                        "default: port+1 and port+2"),
    "action_server.public_host": _key(str, None, nullable=True,
                                      help="how the Rasa server reaches the Docker host"),
    "action_server.instance": _key(str, "bot", help="names containers: rasa-actions-<instance>"),
    "action_server.keep_images": _key(int, 3, _positive, "images kept for rollback"),
    "action_server.docker_host": _key(str, None, nullable=True,
                                      help="engine of the docker/swarm targets; default "
                                      "DOCKER_HOST"),
    "action_server.command": _key(list, None, nullable=True,
                                  help="container command; `{port}` is filled in"),
    "action_server.ssh_host": _key(str, None, nullable=True),
    "action_server.ssh_port": _key(int, 22, _port),
    "action_server.ssh_user": _key(str, "root"),
    "action_server.ssh_key_file": _key(str, None, nullable=True),
    "action_server.ssh_known_hosts": _key(str, "~/.ssh/known_hosts"),
    "action_server.ssh_allow_unknown_hosts": _key(bool, False),
    "action_server.remote_docker_host": _key(str, None, nullable=True,
                                             help="the remote engine, e.g. "
                                             "unix:///var/run/docker.sock"),
    "action_server.replicas": _key(int, 1, _positive, "Swarm replicas"),
    "action_server.monitor": _key(NUMBER, 10, _positive,
                                  "seconds Swarm watches new tasks before an update counts"),
    "image.repository": _key(str, None, nullable=True,
                             help="where images go, e.g. registry.example.com/bot-actions"),
    "image.base_image": _key(str, "rasa/rasa-sdk", help="FROM of the default Dockerfile"),
    "image.sdk_version": _key(str, "3.6.2", help="tag of base_image when it has none"),
    "image.requirements": _key(str, None, nullable=True,
                               help="default: actions/requirements.txt or "
                               "requirements-actions.txt"),
    "image.docker_host": _key(str, None, nullable=True,
                              help="engine that builds and pushes; default DOCKER_HOST"),
    "image.source": _key(str, None, nullable=True, help="OCI source label; default: repo"),
    "image.build_network": _key(str, None, nullable=True,
                                help="network of build steps, e.g. host; default: the engine's"),
    "image.push": _key(bool, True),
    "image.push_attempts": _key(int, 4, _positive),
    "image.registry_user": _key(str, None, nullable=True,
                                help="with registry_password_env/_file; else the Docker "
                                "config's credentials"),
    "model.target": _key(str, "rasa_http", _one_of("rasa_http"),
                         "rasa_http: a Rasa server's HTTP API (`PUT /model`)"),
    "model.url": _key(str, "http://127.0.0.1:5005", _url),
    "model.manage_server": _key(bool, True,
                                help="the agent starts the Rasa server if it isn't running"),
    "model.auth_token_env": _key(str, None, nullable=True),
    "model.auth_token_file": _key(str, None, nullable=True),
    "model.load_timeout": _key(NUMBER, 900, _positive),
    "smoke.conversations": _key(list, None, _conversations, nullable=True,
                                help="after switching, each turn's reply must contain `expect`"),
    "smoke.rollback": _key(bool, True, help="roll back automatically when the smoke test fails"),
    "nlu_gate.enabled": _key(bool, False, help="compare NLU F1 with production before promoting"),
    "nlu_gate.folds": _key(int, 3, _positive, "cross-validation folds of the comparison"),
    "nlu_gate.max_macro_f1_drop": _key(NUMBER, 0.02, nullable=True,
                                       help="fail when macro F1 drops by more (0 to 1)"),
    "nlu_gate.max_intent_f1_drop": _key(NUMBER, 0.1, nullable=True,
                                        help="fail when any intent's F1 drops by more"),
    "environments": _key(dict, None, nullable=True,
                         help="per environment: {promote: auto|auto_unless_action_code|manual}"),
}

BLOCKS = {key.split(".", 1)[0] for key in SCHEMA if "." in key}


@dataclass(frozen=True)
class Environment:
    name: str
    promote: str = "auto"


@dataclass(frozen=True)
class AgentConfig:
    path: Path
    values: Mapping[str, Any]
    environments: tuple[Environment, ...]
    secrets: Mapping[str, Secret] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    blocks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def repo(self) -> str:
        return str(self.values["repo"])

    @property
    def branch(self) -> str:
        return str(self.values["branch"])

    @property
    def work_dir(self) -> Path:
        return Path(self.values["work_dir"])

    @property
    def is_local_repo(self) -> bool:
        return is_local_path(self.repo)

    def secret(self, name: str) -> Secret | None:
        return self.secrets.get(name)

    def environment(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        known = ", ".join(e.name for e in self.environments)
        raise FatalError(f"{self.path}: environments: no environment {name!r} (known: {known})")

    def block(self, name: str) -> Mapping[str, Any]:
        """A target block as written, for targets that read their own extra keys."""
        return self.blocks.get(name, {})


def is_local_path(repo: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*://", repo) and not re.match(r"^[^/]+@[^/:]+:", repo)


def _type_name(types: tuple[type, ...]) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
             dict: "a mapping", list: "a list"}
    if types == NUMBER:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_value(path: Path, dotted: str, key: Key, value: Any, line: int) -> Any:
    if value is None:
        if key.nullable:
            return None
        raise ConfigError(path, dotted, "must not be empty", line)
    # YAML `yes` is a bool and bool is an int: keep them apart.
    ok = isinstance(value, key.types) and not (isinstance(value, bool) and bool not in key.types)
    if not ok:
        raise ConfigError(path, dotted, f"must be {_type_name(key.types)}, got {value!r}", line)
    if key.check is not None:
        problem = key.check(value)
        if problem:
            raise ConfigError(path, dotted, problem, line)
    return value


def _read_secret(path: Path, dotted: str, how: str, where: str, line: int) -> Secret:
    try:
        return read_secret(how, where, path.parent)
    except SecretUnavailable as exc:
        raise ConfigError(path, dotted, str(exc), line) from None


def _environments(path: Path, raw: Any, line: int) -> tuple[Environment, ...]:
    if raw is None:
        return (Environment("production"),)
    if not raw:
        raise ConfigError(path, "environments", "needs at least one environment", line)
    envs = []
    for name, body in raw.items():
        key_line = raw.line_of(name) if isinstance(raw, LDict) else line
        body = body or {}
        if not isinstance(body, dict):
            raise ConfigError(path, f"environments.{name}", "must be a mapping", key_line)
        for sub in body:
            if sub != "promote":
                raise ConfigError(path, f"environments.{name}.{sub}", "unknown key; "
                                  "only `promote` is known", key_line)
        promote = body.get("promote", "auto")
        problem = _one_of(*PROMOTION_POLICIES)(promote)
        if problem:
            raise ConfigError(path, f"environments.{name}.promote", problem, key_line)
        envs.append(Environment(str(name), str(promote)))
    return tuple(envs)


DEFAULT_CONFIGS = ("agent.yml", "/etc/rasa-gitops/agent.yml")
CONFIG_ENV = "RASA_GITOPS_AGENT_CONFIG"


def config_path(given: str | None) -> Path:
    """Which config file a command reads: --config, then $RASA_GITOPS_AGENT_CONFIG,
    then ./agent.yml, then /etc/rasa-gitops/agent.yml."""
    if given:
        return Path(given)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    for candidate in DEFAULT_CONFIGS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise FatalError(f"no config file: pass --config FILE, set {CONFIG_ENV}, or "
                     "create ./agent.yml (the README's 'The deploy agent' section has one)")


def load_config(path: Path) -> AgentConfig:
    """Read and check the config; raise ConfigError naming file and key."""
    path = Path(path)
    if not path.is_file():
        raise FatalError(f"{path}: config file not found; `agent --config FILE` names it.")
    doc = load_yaml(path)
    if doc is None:
        doc = LDict()
        doc.line, doc.key_lines = 1, {}
    if not isinstance(doc, dict):
        raise ConfigError(path, "(top level)", "must be a YAML mapping of keys", 1)

    flat: dict[str, tuple[Any, int]] = {}
    warnings: list[str] = []
    blocks: dict[str, dict[str, Any]] = {}

    def line_of(mapping: Any, key: str) -> int:
        return mapping.line_of(key) if isinstance(mapping, LDict) else 0

    for top, value in doc.items():
        top = str(top)
        if top in BLOCKS:
            if not isinstance(value, dict):
                raise ConfigError(path, top, "must be a mapping", line_of(doc, top))
            blocks[top] = dict(value)
            for sub, subvalue in value.items():
                flat[f"{top}.{sub}"] = (subvalue, line_of(value, str(sub)))
        else:
            flat[top] = (value, line_of(doc, top))

    values: dict[str, Any] = {}
    secrets: dict[str, Secret] = {}
    for dotted, (value, line) in flat.items():
        leaf = dotted.rsplit(".", 1)[-1]
        for how in ("env", "file"):
            if leaf.endswith(f"_{how}") and is_secret_name(leaf):
                name = dotted[: -len(how) - 1]
                if not isinstance(value, str) or not value:
                    raise ConfigError(path, dotted, "must name an environment variable or a "
                                      "file" if how == "env" else "must be a file path", line)
                if name in secrets:
                    raise ConfigError(path, dotted, f"{name} is given twice; keep one of "
                                      f"{name}_env and {name}_file", line)
                secrets[name] = _read_secret(path, dotted, how, value, line)
        if dotted not in SCHEMA and is_secret_name(leaf) and not leaf.endswith(("_env", "_file")):
            raise ConfigError(path, dotted, f"secrets are never written inline; use "
                              f"{leaf}_env: VARIABLE or {leaf}_file: PATH", line)
        if dotted not in SCHEMA:
            if not (leaf.endswith(("_env", "_file")) and is_secret_name(leaf)):
                warnings.append(f"{path}: {dotted}: unknown key, ignored (line {line})")
            continue
        values[dotted] = _check_value(path, dotted, SCHEMA[dotted], value, line)

    for dotted, key in SCHEMA.items():
        if dotted in values:
            continue
        if key.default is REQUIRED:
            raise ConfigError(path, dotted, "is required; " + key.help)
        values[dotted] = key.default

    work_dir = Path(os.path.expanduser(values["work_dir"]))
    if not work_dir.is_absolute():
        work_dir = (path.parent / work_dir).resolve()
    values["work_dir"] = str(work_dir)
    if is_local_path(values["repo"]):
        repo = Path(os.path.expanduser(values["repo"]))
        if not repo.is_absolute():
            repo = (path.parent / repo).resolve()
        values["repo"] = str(repo)
    env_line = line_of(doc, "environments")
    environments = _environments(path, values.pop("environments"), env_line)
    return AgentConfig(path, values, environments, secrets, tuple(warnings), blocks)
