"""Docker action-server targets built from the agent's config (`action_server:` block)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ConfigError, spare_ports
from agent.image.push import Credentials
from agent.targets.base import ActionServerTarget
from agent.targets.docker.engine import local_engine
from agent.targets.docker.host import DockerHostTarget, HostSettings
from agent.targets.docker.ssh import SshEngineFactory, SshSettings
from agent.targets.docker.swarm import SwarmSettings, SwarmTarget


def _backend_ports(config: AgentConfig) -> tuple[int, int]:
    return spare_ports(config, "action_server.backend_ports", "action_server.port",
                       int(config["action_server.port"]))


def _pull_auth(config: AgentConfig) -> Credentials | None:
    """The registry credentials for pulls by the deploy engine (else its Docker config)."""
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
        env_names=_env_names(config),
    ))
