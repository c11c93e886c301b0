"""Builds the configured targets. The only place that maps a config name to a class."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent.config import AgentConfig, ConfigError, spare_ports
from agent.targets.base import ActionServerTarget, ModelTarget
from agent.targets.docker import factories as docker_targets
from agent.targets.docker.rasa_slots import ContainerSettings, ContainerSlotRunner
from agent.targets.docker.ssh import SshSettings
from agent.targets.local_process import LocalActionServerTarget
from agent.targets.model_server import ModelServerTarget, Puller
from agent.targets.rasa_api import JwtAuth, local_token
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from agent.targets.rasa_http import RasaHttpModelTarget
from agent.targets.rasa_slots import ProcessSlotRunner, SlotRunner
from agent.targets.rasa_x import RasaXModelTarget
from agent.targets.remote_models import RemoteModels
from hooks.core.errors import FatalError
from hooks.core.process import rasa_command


def rasa_argv(config: AgentConfig) -> list[str]:
    """The configured `rasa_command`, else Rasa found as the hooks find it."""
    configured = config["rasa_command"]
    if configured:
        return shlex.split(str(configured))
    try:
        return rasa_command()
    except FatalError:
        return ["rasa"]  # no Rasa on this host: the step that runs it says "command not found"


def _local_action_server(config: AgentConfig) -> ActionServerTarget:
    return LocalActionServerTarget(
        state_dir=config.state_dir / "action-server",
        rasa_argv=rasa_argv(config),
        host=str(config["action_server.host"]),
        port=int(config["action_server.port"]),
        actions_module=str(config["action_server.actions_module"]),
        start_timeout=float(config["action_server.start_timeout"]),
        env_names=config["action_server.env"] or (),
    )


# Other action server targets (Docker host over SSH, Swarm) register here with
# a builder that reads their keys from `config.block("action_server")`.
ACTION_SERVER_TARGETS: dict[str, Callable[[AgentConfig], ActionServerTarget]] = {
    "local": _local_action_server,
    "docker": docker_targets.docker_local,
    "docker_ssh": docker_targets.docker_ssh,
    "swarm": docker_targets.swarm,
}


def warmup_messages(config: AgentConfig) -> list[str]:
    """model.warmup, else the first turn of each smoke conversation, else "hello"."""
    configured = config["model.warmup"]
    if configured:
        return [str(message) for message in configured]
    smoke = config["smoke.conversations"] or []
    return [str(conversation[0]["say"]) for conversation in smoke] or ["hello"]


def agent_secret_env(config: AgentConfig) -> dict[str, str]:
    """The environment variables the agent reads its own secrets from, each with
    the config key naming it: `{"RASA_TOKEN": "model.auth_token_env"}`."""
    return {secret.origin[1:]: f"{name}_env" for name, secret in config.secrets.items()
            if secret.origin.startswith("$")}  # Secret.origin: "$VAR" or a file path


def slot_ports(config: AgentConfig) -> tuple[int, int]:
    """model.slot_ports, else model.url's port + 1 and + 2."""
    url = urlsplit(str(config["model.url"]))
    port = url.port or (443 if url.scheme == "https" else 80)
    return spare_ports(config, "model.slot_ports", "model.url's port", port)


def _slot_runner(config: AgentConfig, state_dir: Path) -> SlotRunner:
    """Where blue_green runs its Rasa servers (model.runtime)."""
    if config["model.runtime"] == "process":
        return ProcessSlotRunner(rasa_argv(config), state_dir, config["pipeline.env"] or ())
    target = str(config["action_server.target"])
    if target not in ("docker", "docker_ssh"):
        where = ("Swarm is not supported for them yet" if target == "swarm"
                 else "set action_server.target to the Docker host's target")
        raise ConfigError(config.path, "model.runtime",
                          "docker: blue_green Rasa containers run on a Docker host "
                          f"(action_server.target docker or docker_ssh), not {target!r}; "
                          f"{where}")
    engine, host = docker_targets.engine_of(config)
    return ContainerSlotRunner(engine, ContainerSettings(
        image=str(config["model.rasa_image"]), ports=slot_ports(config),
        public_host=str(config["model.public_host"] or host),
        tracker_dir=state_dir / "tracker", place=config.place))


def standby(config: AgentConfig) -> bool:
    """model.standby, else on for Rasa processes; containers have no standby yet
    (not tested there, and the engine's restart policy is what restarts them)."""
    configured = config["model.standby"]
    docker = config["model.runtime"] == "docker"
    if configured and docker:
        raise ConfigError(config.path, "model.standby",
                          "runtime docker has no warm standby yet; remove the key or set "
                          "it to false")
    return (not docker) if configured is None else bool(configured)


def _blue_green(config: AgentConfig, action_url: str) -> ModelTarget:
    state_dir = Path(config.state_dir / "rasa-blue-green")
    return BlueGreenRasaTarget(
        url=str(config["model.url"]),
        token=config.secret("model.auth_token"),
        state_dir=state_dir,
        runner=_slot_runner(config, state_dir),
        action_endpoint=action_url,
        load_timeout=float(config["model.load_timeout"]),
        drain_timeout=float(config["model.drain_timeout"]),
        warmup=warmup_messages(config),
        haproxy=str(config["model.haproxy"]),
        agent_env=agent_secret_env(config),
        standby=standby(config),
    )


# The model server is one process for every environment: its keys are the agent's.
SHARED_SERVER_KEYS = ("model.server_host", "model.server_port", "model.server_token_name")


def _model_server(config: AgentConfig) -> ModelTarget:
    environment = config.viewed_as or config.environments[0].name
    for key in SHARED_SERVER_KEYS:
        if key in config.environment(environment).overrides:
            raise ConfigError(config.path, f"environments.{environment}.{key}",
                              "one model server serves every environment; set it at the "
                              "top level")
    if config["model.serving"]:
        raise ConfigError(config.path, "model.serving", "model.target model_server: the "
                          "pullers load their models themselves; remove model.serving")
    server_dir = config.work_dir / "model-server"
    return ModelServerTarget(
        environment=environment, server_dir=server_dir,
        host=str(config["model.server_host"]), port=int(config["model.server_port"]),
        token=config.secret("model.server_token") or local_token(server_dir),
        token_name=str(config["model.server_token_name"]),
        pullers=[Puller(str(p["name"]), str(p["url"])) for p in config["model.pullers"] or ()],
        rasa_token=config.secret("model.auth_token"),
        wait_time=float(config["model.wait_time_between_pulls"]),
        margin=float(config["model.pull_margin"]),
    )


def _rasa_x(config: AgentConfig) -> ModelTarget:
    """Rasa X / Rasa Enterprise: exactly one of its two auth modes."""
    url = config["model.rasa_x_url"]
    if not url:
        raise ConfigError(config.path, "model.rasa_x_url", "model.target rasa_x needs Rasa "
                          "X's base URL, e.g. https://rasa-x.example.com")
    token, password = config.secret("model.rasa_x_api_token"), config.secret(
        "model.rasa_x_password")
    username = config["model.rasa_x_username"]
    if (token is None) == (password is None or not username):
        raise ConfigError(config.path, "model.rasa_x_api_token_env",
                          "model.target rasa_x needs one way to log in: "
                          "model.rasa_x_api_token_env/_file, or model.rasa_x_username with "
                          "model.rasa_x_password_env/_file (not both, not a half)")
    return RasaXModelTarget(url=str(url), tag=str(config["model.rasa_x_tag"]),
                            api_token=token, username=str(username) if username else None,
                            password=password, rest_url=config["model.rasa_x_rest_url"])


def remote_models(config: AgentConfig) -> RemoteModels | None:
    """model.ssh_host: the Rasa server runs on another host, its models go there
    over SFTP. The agent starts servers on its own host only."""
    host = config["model.ssh_host"]
    if not host:
        return None
    folder = config["model.remote_model_dir"]
    if not folder or not str(folder).startswith("/"):
        raise ConfigError(config.path, "model.remote_model_dir",
                          "model.ssh_host needs the absolute folder on that host the models "
                          "are copied to, e.g. /srv/rasa/models")
    passphrase, key_file = config.secret("model.ssh_key_passphrase"), config["model.ssh_key_file"]
    settings = SshSettings(
        host=str(host), port=int(config["model.ssh_port"]), user=str(config["model.ssh_user"]),
        key_file=Path(str(key_file)).expanduser() if key_file else None,
        key_passphrase=passphrase.reveal() if passphrase else None,
        known_hosts=Path(str(config["model.ssh_known_hosts"])).expanduser())
    return RemoteModels(settings, str(folder), keep=int(config["model.remote_keep"]),
                        place=config.place)


def _secret_key(config: AgentConfig, name: str) -> str:
    """The key a secret was given by: `<name>_env` or `<name>_file`."""
    secret = config.secret(name)
    return f"{name}_env" if secret is None or secret.origin.startswith("$") else f"{name}_file"


def _jwt(config: AgentConfig) -> JwtAuth | None:
    secret = config.secret("model.jwt_secret")
    if secret is None:
        return None
    if config.secret("model.auth_token") is not None:
        raise ConfigError(config.path, _secret_key(config, "model.jwt_secret"),
                          "give the Rasa server's auth token or its JWT secret, not both")
    return JwtAuth(secret, str(config["model.jwt_method"]))


def _rasa_http(config: AgentConfig, action_url: str) -> ModelTarget:
    return RasaHttpModelTarget(
        url=str(config["model.url"]),
        token=config.secret("model.auth_token"),
        state_dir=Path(config.state_dir / "rasa-server"),
        rasa_argv=rasa_argv(config),
        manage_server=bool(config["model.manage_server"]),
        action_endpoint=action_url,
        load_timeout=float(config["model.load_timeout"]),
        env_names=config["pipeline.env"] or (),
        remote=remote_models(config),
        jwt_auth=_jwt(config),
    )


def _check_put_model_only(config: AgentConfig) -> None:
    """model.ssh_host and the JWT secret are read by rasa_http's PUT /model path
    only: set for another target or mode they would silently do nothing."""
    used = {"model.ssh_host": bool(config["model.ssh_host"]),
            _secret_key(config, "model.jwt_secret"): config.secret("model.jwt_secret") is not None}
    for key in (key for key, value in used.items() if value):
        if config["model.target"] != "rasa_http":
            raise ConfigError(config.path, key, "works with model.target rasa_http only")
        if config["model.manage_server"]:
            raise ConfigError(config.path, "model.manage_server",
                              f"must be false with {key}: the agent starts its own Rasa "
                              "servers on this host only, and with its own token; this one "
                              "you run yourself")


@dataclass(frozen=True)
class Targets:
    action_server: ActionServerTarget
    model: ModelTarget




def serving_mode(config: AgentConfig) -> str:
    """model.serving, else blue_green when the agent runs the Rasa servers and
    put_model when someone else does (only its HTTP API can reach that one)."""
    configured = config["model.serving"]
    managed = bool(config["model.manage_server"])
    if configured in ("blue_green", "swarm") and not managed:
        raise ConfigError(config.path, "model.serving",
                          f"{configured} starts its own Rasa servers behind HAProxy; with "
                          "model.manage_server: false use put_model (or remove the key)")
    if configured:
        return str(configured)
    return "blue_green" if managed else "put_model"


def build_targets(config: AgentConfig) -> Targets:
    name = str(config["action_server.target"])
    builder = ACTION_SERVER_TARGETS.get(name)
    if builder is None:
        raise ConfigError(config.path, "action_server.target",
                          f"{name!r} is not one of: {', '.join(sorted(ACTION_SERVER_TARGETS))}")
    action_server = builder(config)
    _check_put_model_only(config)
    # Typed with the Protocols: mypy checks every concrete target implements
    # its whole interface (the docker builders are typed the same way).
    if config["model.target"] == "model_server":
        return Targets(action_server, _model_server(config))
    if config["model.target"] == "rasa_x":
        return Targets(action_server, _rasa_x(config))
    mode = serving_mode(config)
    model: ModelTarget = (
        _blue_green(config, action_server.url) if mode == "blue_green"
        else docker_targets.rasa_fleet(config, action_server.url, agent_secret_env(config))
        if mode == "swarm" else _rasa_http(config, action_server.url))
    return Targets(action_server, model)
