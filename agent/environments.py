"""Environments as places: each names its own action server and Rasa server.

`environments.<name>` holds, besides `promote`, an optional `action_server:`
and `model:` block with the same keys as the top-level ones (which are every
environment's defaults), `after: <name>` (the environment a release must pass
first; default: the one listed before) and `verify:` (what makes a release
verified there: the smoke conversations, and a soak time watching its servers).

What only the whole set can tell is checked here, at start-up: no two
environments share a port on one host, and the promotion order has no cycle.
Each problem is an `EnvProblem(key, problem, line)` that agent/config.py turns
into its `file: key: problem (line N)`; this module knows nothing of files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agent.config_schema import PROMOTION_POLICIES, SCHEMA, one_of
from hooks.core.yaml_lines import LDict

PLACE_BLOCKS = ("action_server", "model")  # what an environment may set for itself
KEYS = ("promote", "after", "verify", *PLACE_BLOCKS)
VERIFY_KEYS: dict[str, type | tuple[type, ...]] = {
    "smoke": bool, "soak_seconds": (int, float), "nlu_gate": bool}
NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", ""}


class EnvProblem(Exception):
    def __init__(self, key: str, problem: str, line: int = 0) -> None:
        super().__init__(problem)
        self.key, self.problem, self.line = key, problem, line


@dataclass(frozen=True)
class Verify:
    smoke: bool = True  # the smoke conversations at each switch there (agent/config.py)
    soak_seconds: float = 0.0
    # Before a release goes there: the NLU gate (`nlu_gate` thresholds) against
    # what serves there. The first environment's is `nlu_gate.enabled` (a gate).
    nlu_gate: bool = False


@dataclass(frozen=True)
class Environment:
    name: str
    promote: str = "auto"
    after: str | None = None  # the environment a release passes first (None: the first)
    verify: Verify = Verify()
    # The flat keys (`model.url`, ...) this environment sets over the top-level ones.
    overrides: Mapping[str, Any] = field(default_factory=dict)


CheckValue = Callable[[str, Any, int], Any]  # (dotted key, value, line) -> value, or raise


def parse(raw: Any, line: int, check_value: CheckValue) -> tuple[Environment, ...]:
    """The environments of `raw` (the `environments:` mapping), in order."""
    if raw is None:
        return (Environment("production"),)
    if not raw:
        raise EnvProblem("environments", "needs at least one environment", line)
    envs: list[Environment] = []
    previous: str | None = None
    for name, body in raw.items():
        where = f"environments.{name}"
        key_line = _line(raw, name, line)
        if not isinstance(name, str) or not NAME.fullmatch(name):
            # It names a folder, a lock and a commit-status context.
            raise EnvProblem(where, "an environment's name is lower-case letters, digits, "
                             "- and _, starting with a letter or digit", key_line)
        body = body or {}
        if not isinstance(body, dict):
            raise EnvProblem(where, "must be a mapping", key_line)
        for sub in body:
            if sub not in KEYS:
                raise EnvProblem(f"{where}.{sub}", f"unknown key; known: {', '.join(KEYS)}",
                                 _line(body, sub, key_line))
        promote = body.get("promote", "auto")
        problem = one_of(*PROMOTION_POLICIES)(promote)
        if problem:
            raise EnvProblem(f"{where}.promote", problem, _line(body, "promote", key_line))
        after = body.get("after", previous)
        envs.append(Environment(str(name), str(promote), None if after is None else str(after),
                                _verify(where, body.get("verify"), _line(body, "verify", key_line)),
                                _overrides(where, body, key_line, check_value)))
        previous = str(name)
    _check_order(envs, raw, line)
    for env in envs:
        if env.after is None and env.verify.nlu_gate:
            raise EnvProblem(f"environments.{env.name}.verify.nlu_gate",
                             "a release reaches the first environment through the gates: "
                             "use `nlu_gate: {enabled: true}` there", _line(raw, env.name, line))
    return tuple(envs)


def _line(mapping: Any, key: Any, default: int) -> int:
    return mapping.line_of(key) if isinstance(mapping, LDict) else default


def _verify(where: str, raw: Any, line: int) -> Verify:
    if raw is None:
        return Verify()
    if not isinstance(raw, dict):
        raise EnvProblem(f"{where}.verify", "must be a mapping of " + ", ".join(VERIFY_KEYS),
                         line)
    for key, value in raw.items():
        types = VERIFY_KEYS.get(key)
        if types is None:
            raise EnvProblem(f"{where}.verify.{key}", "unknown key; known: "
                             + ", ".join(VERIFY_KEYS), line)
        if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
            wanted = "true or false" if types is bool else "a number"
            raise EnvProblem(f"{where}.verify.{key}", f"must be {wanted}, got {value!r}", line)
    soak = float(raw.get("soak_seconds", 0))
    if soak < 0:
        raise EnvProblem(f"{where}.verify.soak_seconds", "must be 0 or more", line)
    return Verify(bool(raw.get("smoke", True)), soak, bool(raw.get("nlu_gate", False)))


def _overrides(where: str, body: Mapping[str, Any], line: int,
               check_value: CheckValue) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for block in PLACE_BLOCKS:
        values = body.get(block)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise EnvProblem(f"{where}.{block}", "must be a mapping", _line(body, block, line))
        for key, value in values.items():
            dotted = f"{block}.{key}"
            key_line = _line(values, key, line)
            if dotted not in SCHEMA:
                raise EnvProblem(f"{where}.{dotted}", f"unknown key; an environment sets the "
                                 f"keys of the top-level {block}: block", key_line)
            if str(key).endswith(("_env", "_file")):
                raise EnvProblem(f"{where}.{dotted}", "secrets are set once, at the top level",
                                 key_line)
            flat[dotted] = check_value(f"{where}.{dotted}", value, key_line)
    return flat


def _check_order(envs: list[Environment], raw: Any, line: int) -> None:
    names = [env.name for env in envs]
    for env in envs:
        if env.after is not None and env.after not in names:
            raise EnvProblem(f"environments.{env.name}.after", f"no environment {env.after!r} "
                             f"(known: {', '.join(names)})", _line(raw, env.name, line))
    after = {env.name: env.after for env in envs}
    for env in envs:
        seen = [env.name]
        step = after[env.name]
        while step is not None:
            if step in seen:
                cycle = " -> ".join([*seen[seen.index(step):], step])
                raise EnvProblem(f"environments.{env.name}.after",
                                 f"the promotion order has a cycle: {cycle}; one environment "
                                 "must come first (no `after:`)", _line(raw, env.name, line))
            seen.append(step)
            step = after[step]


def places_clash(views: Mapping[str, Mapping[str, Any]]) -> tuple[str, str] | None:
    """(key, problem) when two environments (name -> its flat config values) would
    share a port or the containers of one host; None when every place is its own."""
    owner: dict[tuple[str, str], tuple[str, str]] = {}
    for name, values in views.items():
        for host, what, key in _resources(values):
            taken = owner.get((host, what))
            if taken is not None and taken[0] != name:
                return (f"environments.{name}.{key}",
                        f"{what} on {host or 'this host'} is also environments.{taken[0]}."
                        f"{taken[1]}'s; give each environment its own")
            owner[(host, what)] = (name, key)
    return None


def _resources(values: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(host, what, key) of everything an environment's servers hold: ports, and
    the containers a Docker target names. Processes and a local engine's
    containers are on this host ("")."""
    target = str(values["action_server.target"])
    action_host = "" if target in ("local", "docker") else str(
        values.get("action_server.ssh_host") or values.get("action_server.remote_docker_host")
        or target)
    stable = int(values["action_server.port"])
    found = [(action_host, f"port {stable}", "action_server.port")]
    backend = values.get("action_server.backend_ports") or [stable + 1, stable + 2]
    found += [(action_host, f"port {p}", "action_server.backend_ports") for p in backend]
    if target != "local":
        instance = values["action_server.instance"]
        found.append((action_host, f"containers rasa-actions-{instance}",
                      "action_server.instance"))
    if values.get("model.target") in ("model_server", "rasa_x"):
        # One model server for all; the Rasa servers pulling (or Rasa X's) are not the agent's.
        return found
    url = urlsplit(str(values["model.url"]))
    model_host = "" if (url.hostname or "") in LOCAL_HOSTS else str(url.hostname)
    model_port = url.port or (443 if url.scheme == "https" else 80)
    found.append((model_host, f"port {model_port}", "model.url"))
    if values.get("model.runtime") == "docker" and values.get("model.serving") != "put_model":
        # Rasa processes take free ports; containers the slot ports on the Docker host.
        slots = values.get("model.slot_ports") or [model_port + 1, model_port + 2]
        found += [(action_host, f"port {p}", "model.slot_ports") for p in slots]
    return found
