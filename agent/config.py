"""The agent's one YAML file, checked against a declarative schema.

Every key lives in `SCHEMA` (agent/config_schema.py: dotted path -> type,
default, check, help); this module reads a file against it. A key
the schema doesn't know only warns, so a newer config still starts on an older
agent; a known key with a bad value fails at start-up with `file: key: problem`.
Secrets never sit inline: a secret is named by `<name>_env` (an environment
variable) or `<name>_file` (a file), and is read into a `Secret` (agent/secrets.py)
that prints as its origin, never its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent import environments
from agent.config_schema import BLOCKS, NUMBER, REQUIRED, SCHEMA, Key
from agent.environments import Environment as Environment
from agent.notify_config import TYPES as NOTIFY_TYPES
from agent.secrets import (
    MIN_REDACTED_LENGTH,
    Redactor,
    Secret,
    SecretUnavailable,
    is_secret_name,
    read_secret,
    url_secrets,
)
from hooks.core.errors import FatalError
from hooks.core.yaml_lines import LDict, load_yaml


class ConfigError(FatalError):
    def __init__(self, path: Path, key: str, problem: str, line: int = 0) -> None:
        self.path, self.key, self.problem, self.line = path, key, problem, line
        where = f" (line {line})" if line else ""
        super().__init__(f"{path}: {key}: {problem}{where}")


@dataclass(frozen=True)
class AgentConfig:
    path: Path
    values: Mapping[str, Any]
    environments: tuple[Environment, ...]
    secrets: Mapping[str, Secret] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    blocks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The environment `for_environment` made this view for ("" for the agent's
    # own config): a target shared by all environments (the model server) needs it.
    viewed_as: str = ""

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
    def state_dir(self) -> Path:
        """Where this environment's servers keep their state (`for_environment`)."""
        return Path(self.values.get("state_dir") or self.values["work_dir"])

    @property
    def place(self) -> str:
        """What names this environment's Docker containers and volumes apart from
        another's on the same engine: its name, or "" for the environment that
        keeps the single-environment layout (its containers keep their names)."""
        return str(self.values.get("place") or "")

    @property
    def is_local_repo(self) -> bool:
        return is_local_path(self.repo)

    def secret(self, name: str) -> Secret | None:
        return self.secrets.get(name)

    def for_environment(self, name: str) -> AgentConfig:
        """This config as environment `name` sees it: its own action_server/model
        keys over the top-level ones, and its servers' state folder (`state_dir`).
        The journal, the mirror and the secrets stay the agent's own."""
        env = self.environment(name)
        values = {**self.values, **env.overrides}
        if not env.verify.smoke:  # verify: {smoke: false}: no smoke test at its switches
            values["smoke.conversations"] = None
        if len(self.environments) > 1 and legacy_owner(self.work_dir) != env.name:
            # By name, never by position: adding or reordering environments must
            # not hand one environment's live servers to another.
            values["state_dir"] = str(self.work_dir / "environments" / env.name)
            values["place"] = env.name
        return replace(self, values=values, viewed_as=env.name)

    def redactor(self) -> Redactor:
        """Every secret the config names, and a credential in the `repo:` URL
        (git's errors echo it): what logs, doctor rows and notifications hide."""
        redact = Redactor(secret.reveal() for secret in self.secrets.values())
        for secret in url_secrets(self.repo):
            redact.add(secret)
        return redact

    def environment(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        known = ", ".join(e.name for e in self.environments)
        raise FatalError(f"{self.path}: environments: no environment {name!r} (known: {known})")

    def block(self, name: str) -> Mapping[str, Any]:
        """A target block as written, for targets that read their own extra keys."""
        return self.blocks.get(name, {})


def spare_ports(config: AgentConfig, key: str, stable_name: str, stable: int) -> tuple[int, int]:
    """The two ports a blue/green pair listens on behind the stable one: `key`'s
    value, else the stable port + 1 and + 2."""
    ports = config[key]
    if not ports:
        return stable + 1, stable + 2
    if (len(ports) != 2 or not all(isinstance(p, int) and 0 < p < 65536 for p in ports)
            or ports[0] == ports[1] or stable in ports):
        raise ConfigError(config.path, key,
                          f"must be two different TCP ports, neither of them {stable_name}")
    return int(ports[0]), int(ports[1])


# A single environment keeps its servers' state in work_dir itself (the layout
# before environments were places). With several, each has work_dir/environments/
# <name>, except the one this file names: the environment that was live in that
# single-environment layout when a second one was added (agent/runtime.py
# claims it from the journal, once).
LEGACY_OWNER = "legacy-environment"
LEGACY_DIRS = ("action-server", "rasa-server", "rasa-blue-green")


def legacy_environment(config: AgentConfig) -> str:
    """The environment of the single-environment layout (and of records from it)."""
    return legacy_owner(config.work_dir) or config.environments[0].name


def legacy_owner(work_dir: Path) -> str | None:
    try:
        return (work_dir / LEGACY_OWNER).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


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
        secret = read_secret(how, where, path.parent)
    except SecretUnavailable as exc:
        raise ConfigError(path, dotted, str(exc), line) from None
    if len(secret.reveal()) < MIN_REDACTED_LENGTH:
        # The redactor can't blank so short a value out of logs (it would blank
        # ordinary words): refused, rather than kept and maybe printed.
        raise ConfigError(path, dotted, f"{secret.origin} holds fewer than "
                          f"{MIN_REDACTED_LENGTH} characters; use a real secret", line)
    return secret


def _notify_secrets(path: Path, items: Any, line: int) -> dict[str, Secret]:
    """The secret each `notify:` sink names (a webhook URL, an API token), read with
    the others: so they are withheld from children, refused in `pipeline.env` and
    redacted like every secret of the agent. Keyed `notify[N].url` / `.token`."""
    found: dict[str, Secret] = {}
    for number, item in enumerate(items or (), start=1):
        name = NOTIFY_TYPES[item["type"]][0]
        how = "env" if f"{name}_env" in item else "file"
        dotted = f"notify[{number}].{name}_{how}"
        found[f"notify[{number}].{name}"] = _read_secret(path, dotted, how,
                                                         str(item[f"{name}_{how}"]), line)
    return found


def _environments(path: Path, raw: Any, line: int,
                  values: Mapping[str, Any]) -> tuple[Environment, ...]:
    """The environments (agent/environments.py), each place its own: two sharing a
    port, or an order with a cycle, refused naming the file and key."""

    def check(dotted: str, value: Any, key_line: int) -> Any:
        return _check_value(path, dotted, SCHEMA[dotted.split(".", 2)[2]], value, key_line)

    try:
        found = environments.parse(raw, line, check)
        clash = environments.places_clash({env.name: {**values, **env.overrides}
                                           for env in found})
    except environments.EnvProblem as problem:
        raise ConfigError(path, problem.key, problem.problem, problem.line) from None
    if clash is not None:
        raise ConfigError(path, clash[0], clash[1], line)
    return found


def _refuse_secret_variables(path: Path, values: Mapping[str, Any],
                             secrets: Mapping[str, Secret], flat: Mapping[str, Any]) -> None:
    """`pipeline.env` and `action_server.env` hand variables to the commit's code:
    never one the agent reads its own secret from."""
    own = {secret.origin[1:]: name for name, secret in secrets.items()
           if secret.origin.startswith("$")}
    for key in ("pipeline.env", "action_server.env"):
        for variable in values.get(key) or ():
            if variable in own:
                raise ConfigError(path, key, f"{variable} holds the agent's own secret "
                                  f"({own[variable]}_env), which the commit's code never "
                                  f"gets; give the bot its own variable", flat[key][1])


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
    secrets.update(_notify_secrets(path, values.get("notify"), line_of(doc, "notify")))
    _refuse_secret_variables(path, values, secrets, flat)
    env_line = line_of(doc, "environments")
    environments = _environments(path, values.pop("environments"), env_line, values)
    return AgentConfig(path, values, environments, secrets, tuple(warnings), blocks)
