"""`agent doctor`: is everything the config names there and answering?

Each check prints `ok`, `FAIL` or `skip` with one line of detail; the exit code
is 1 when any check fails. Checks only ask; they change nothing.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, load_config
from hooks.core.errors import FatalError
from hooks.core.process import run

Result = tuple[str, str]  # (ok|FAIL|skip, detail)


def _config(path: Path) -> tuple[AgentConfig | None, Result]:
    try:
        config = load_config(path)
    except FatalError as exc:
        return None, ("FAIL", str(exc))
    warned = f"; {len(config.warnings)} warning(s): " + "; ".join(config.warnings) \
        if config.warnings else ""
    return config, ("ok", f"{path}{warned}")


def _work_dir(config: AgentConfig) -> Result:
    work = config.work_dir
    try:
        work.mkdir(parents=True, exist_ok=True)
        probe = work / ".doctor-probe"
        probe.write_text("x", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        return "FAIL", f"{work} is not writable: {exc.strerror}"
    free = shutil.disk_usage(work).free / 2**30
    if free < 2:
        return "FAIL", f"{work}: only {free:.1f} GiB free; a Rasa model and caches need more"
    return "ok", f"{work} ({free:.0f} GiB free)"


def _git(config: AgentConfig) -> Result:
    version = run(["git", "--version"])
    remote = run(["git", "ls-remote", "--heads", config.repo, config.branch], timeout=60,
                 env={"GIT_TERMINAL_PROMPT": "0"})
    if not remote.ok:
        first = next((ln for ln in remote.output.splitlines() if ln.strip()), "")
        return "FAIL", f"{config.repo} is not reachable: {first.strip()}"
    if not remote.output.strip():
        return "FAIL", f"branch {config.branch!r} does not exist in {config.repo}"
    return "ok", f"{version.output.strip()}; {config.repo} has branch {config.branch}"


def _rasa(config: AgentConfig) -> Result:
    from agent.targets.factory import rasa_argv

    argv = rasa_argv(config)
    done = run([*argv, "--version"], timeout=300)
    if not done.ok:
        return "FAIL", f"`{shlex.join(argv)} --version` failed: {done.tail(2)}"
    line = next((ln for ln in done.output.splitlines() if ln.startswith("Rasa Version")), "")
    return "ok", " ".join(line.split()) or done.tail(1)


def _rasa_server(config: AgentConfig) -> Result:
    from agent.targets.factory import build_targets

    model = build_targets(config).model
    if not model.server_answers():
        if config["model.manage_server"]:
            return "ok", f"{config['model.url']} is down; the agent starts it on first deploy"
        return "FAIL", f"{config['model.url']} does not answer"
    try:
        live = model.live_model_id()
    except Exception as exc:  # DeployError: wrong token and the like
        return "FAIL", str(exc)
    return "ok", f"{config['model.url']} answers; live model {live or 'none'}"


def _haproxy(config: AgentConfig) -> Result:
    from agent.targets.factory import serving_mode

    if serving_mode(config) != "blue_green":
        return "skip", "model.serving is put_model: no front proxy"
    haproxy = str(config["model.haproxy"])
    if shutil.which(haproxy) is None:
        return "FAIL", (f"{haproxy} not found: blue/green serving needs HAProxy in front of "
                        "the Rasa servers (Debian: apt-get install haproxy), or set "
                        "model.haproxy to it")
    done = run([haproxy, "-v"], timeout=30)
    first = done.output.splitlines()[0] if done.output else ""
    return ("ok", first.strip()) if done.ok else ("FAIL", f"`{haproxy} -v` failed: {first}")


def _action_port(config: AgentConfig) -> Result:
    if config["action_server.target"] != "local":
        return "skip", "action server is not local"
    host, port = str(config["action_server.host"]), int(config["action_server.port"])
    pid_file = config.work_dir / "action-server" / "forwarder.pid"
    with socket.socket() as sock:
        sock.settimeout(1)
        taken = sock.connect_ex((host, port)) == 0
    if taken and not pid_file.is_file():
        return "FAIL", f"{host}:{port} is taken by another program (action_server.port)"
    return "ok", f"{host}:{port} " + ("serves the agent's forwarder" if taken else "is free")


def _docker(block: dict[str, Any], target: str) -> Result:
    if not target.startswith(("docker", "swarm")):
        return "skip", "no Docker target configured"
    try:
        import docker

        client = docker.DockerClient(base_url=block.get("docker_host") or os.environ.get(
            "DOCKER_HOST", "unix:///var/run/docker.sock"), timeout=10)
        client.ping()
        return "ok", f"Docker {client.version().get('Version', '?')} answers"
    except Exception as exc:
        return "FAIL", f"Docker does not answer: {type(exc).__name__}: {exc}"


def _registry(block: dict[str, Any]) -> Result:
    registry = block.get("registry")
    if not registry:
        return "skip", "no registry configured"
    import requests

    url = registry if "://" in str(registry) else f"https://{registry}"
    try:
        answer = requests.get(f"{str(url).rstrip('/')}/v2/", timeout=10)
    except requests.RequestException as exc:
        return "FAIL", f"{registry} does not answer: {type(exc).__name__}"
    if answer.status_code in (200, 401):
        return "ok", f"{registry} answers /v2/ (HTTP {answer.status_code})"
    return "FAIL", f"{registry} /v2/ answered HTTP {answer.status_code}"


def _ssh(block: dict[str, Any]) -> Result:
    host = block.get("ssh_host") or block.get("host") if block.get("target", "local") != \
        "local" else None
    if not host:
        return "skip", "no SSH host configured"
    import paramiko

    client = paramiko.SSHClient()
    client.load_system_host_keys()
    known = block.get("known_hosts")
    if known:
        client.load_host_keys(os.path.expanduser(str(known)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(str(host), port=int(block.get("ssh_port", 22)),
                       username=block.get("ssh_user"), timeout=10,
                       key_filename=block.get("ssh_key_file"))
    except Exception as exc:
        return "FAIL", f"SSH to {host}: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    return "ok", f"SSH to {host} works (host key verified)"


def run_doctor(path: Path) -> int:
    config, result = _config(path)
    rows: list[tuple[str, Result]] = [("config", result)]
    if config is not None:
        block = dict(config.block("action_server"))
        target = str(config["action_server.target"])
        rows += [
            ("work dir", _work_dir(config)),
            ("git", _git(config)),
            ("rasa", _rasa(config)),
            ("rasa server", _rasa_server(config)),
            ("haproxy", _haproxy(config)),
            ("action port", _action_port(config)),
            ("docker", _docker(block, target)),
            ("registry", _registry(block)),
            ("ssh", _ssh(block)),
        ]
    width = max(len(name) for name, _ in rows)
    for name, (state, detail) in rows:
        print(f"{state:<4}  {name:<{width}}  {detail}")
    return 1 if any(state == "FAIL" for _, (state, _) in rows) else 0
