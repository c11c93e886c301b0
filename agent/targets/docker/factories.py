"""Docker action-server targets built from the agent's config (`action_server:` block)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.config import AgentConfig, ConfigError, spare_ports
from agent.image.push import Credentials
from agent.targets.base import ActionServerTarget, ModelTarget
from agent.targets.docker.engine import EngineFactory, local_engine
from agent.targets.docker.fleet_service import FleetSettings
from agent.targets.docker.host import DockerHostTarget, HostSettings
from agent.targets.docker.rasa_fleet import SwarmRasaTarget
from agent.targets.docker.ssh import SshEngineFactory, SshSettings
from agent.targets.docker.swarm import SwarmSettings, SwarmTarget
from agent.targets.rasa_api import local_token


def _backend_ports(config: AgentConfig) -> tuple[int, int]:
    return spare_ports(config, "action_server.backend_ports", "action_server.port",
                       int(config["action_server.port"]))


def _pull_auth(config: AgentConfig) -> Credentials | None:
    """The registry credentials for pulls by the deploy engine, and for the Rasa
    fleet's pushes to model.rasa_repository (else the engine's Docker config)."""
    user = config["image.registry_user"]
    secret = config.secret("image.registry_password")
    if user and secret is not None:
        return Credentials(str(user), secret.reveal())
    return None


def _command(config: AgentConfig) -> tuple[str, ...] | None:
    command: Any = config["action_server.command"]
    return tuple(str(part) for part in command) if command else None


def _env_names(config: AgentConfig) -> tuple[str, ...]:
    """action_server.env: the variables the bot's containers get from the agent's."""
    return tuple(str(name) for name in config["action_server.env"] or ())


def _host_settings(config: AgentConfig, public_host: str) -> HostSettings:
    return HostSettings(
        instance=str(config["action_server.instance"]), port=int(config["action_server.port"]),
        backend_ports=_backend_ports(config), public_host=public_host,
        start_timeout=float(config["action_server.start_timeout"]),
        keep_images=int(config["action_server.keep_images"]), command=_command(config),
        env_names=_env_names(config),
    )


def docker_local(config: AgentConfig) -> ActionServerTarget:
    public = config["action_server.public_host"] or str(config["action_server.host"])
    return DockerHostTarget("docker", local_engine(config["action_server.docker_host"]),
                            _host_settings(config, str(public)), _pull_auth(config))


def ssh_settings(config: AgentConfig) -> SshSettings:
    """The Docker host reached over SSH (`action_server.ssh_*`), also where
    model.runtime docker runs the Rasa servers."""
    host = config["action_server.ssh_host"]
    if not host:
        raise ConfigError(config.path, "action_server.ssh_host",
                          "is required for the docker_ssh target")
    passphrase = config.secret("action_server.ssh_key_passphrase")
    key_file = config["action_server.ssh_key_file"]
    return SshSettings(
        host=str(host), port=int(config["action_server.ssh_port"]),
        user=str(config["action_server.ssh_user"]),
        key_file=Path(str(key_file)).expanduser() if key_file else None,
        key_passphrase=passphrase.reveal() if passphrase else None,
        known_hosts=Path(str(config["action_server.ssh_known_hosts"])).expanduser(),
        allow_unknown_hosts=bool(config["action_server.ssh_allow_unknown_hosts"]),
        remote_docker_host=config["action_server.remote_docker_host"],
    )


def docker_ssh(config: AgentConfig) -> ActionServerTarget:
    settings = ssh_settings(config)
    public = config["action_server.public_host"] or settings.host
    return DockerHostTarget("docker_ssh", SshEngineFactory(settings),
                            _host_settings(config, str(public)), _pull_auth(config))


def swarm(config: AgentConfig) -> ActionServerTarget:
    public = config["action_server.public_host"] or str(config["action_server.host"])
    return SwarmTarget("swarm", local_engine(config["action_server.docker_host"]), SwarmSettings(
        instance=str(config["action_server.instance"]), port=int(config["action_server.port"]),
        backend_ports=_backend_ports(config), replicas=int(config["action_server.replicas"]),
        public_host=str(public), start_timeout=float(config["action_server.start_timeout"]),
        monitor=float(config["action_server.monitor"]), command=_command(config),
        start_period=float(config["action_server.start_period"]),
        env_names=_env_names(config),
    ))


def engine_of(config: AgentConfig) -> tuple[EngineFactory, str]:
    """The engine the Rasa containers run on, and its host's address: the Docker
    host of action_server.target docker_ssh, else action_server.docker_host."""
    if config["action_server.target"] == "docker_ssh":
        settings = ssh_settings(config)
        return SshEngineFactory(settings), settings.host
    return local_engine(config["action_server.docker_host"]), "127.0.0.1"


def fleet_ports(config: AgentConfig, stable: int) -> tuple[int, int]:
    """model.fleet_ports, else the stable port + 10 and + 20; the two sets of
    model.replicas ports each may not overlap, nor hold the stable port."""
    replicas = int(config["model.replicas"])
    ports = config["model.fleet_ports"] or [stable + 10, stable + 20]
    valid = (len(ports) == 2 and all(isinstance(p, int) and 0 < p < 65536 - replicas
                                     for p in ports))
    if valid:
        first, second = int(ports[0]), int(ports[1])
        sets = [range(first, first + replicas), range(second, second + replicas)]
        valid = (abs(first - second) >= replicas
                 and not any(stable in ports_of for ports_of in sets))
    if not valid:
        raise ConfigError(config.path, "model.fleet_ports",
                          f"must be two first ports whose sets of model.replicas ({replicas}) "
                          "ports don't overlap and don't hold model.url's port")
    return int(ports[0]), int(ports[1])


def rasa_fleet(config: AgentConfig, action_url: str,
               agent_env: Mapping[str, str]) -> ModelTarget:
    """model.serving swarm: the Rasa server as a Swarm service (docker/rasa_fleet.py)."""
    url = urlsplit(str(config["model.url"]))
    engine, host = engine_of(config)
    state_dir = Path(config.state_dir / "rasa-fleet")
    token = config.secret("model.auth_token") or local_token(state_dir)
    return SwarmRasaTarget(
        url=str(config["model.url"]), token=token, state_dir=state_dir,
        action_endpoint=action_url, engine=engine, haproxy=str(config["model.haproxy"]),
        agent_env=dict(agent_env), registry_auth=_pull_auth(config), settings=FleetSettings(
            image=str(config["model.rasa_image"]), replicas=int(config["model.replicas"]),
            port_bases=fleet_ports(config, url.port or 80),
            public_host=str(config["model.public_host"] or host),
            load_timeout=float(config["model.load_timeout"]),
            monitor=float(config["model.fleet_monitor"]),
            drain_timeout=float(config["model.drain_timeout"]), place=config.place,
            repository=str(config["model.rasa_repository"] or ""),
            push_attempts=int(config["image.push_attempts"])))
