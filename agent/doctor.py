"""`agent doctor`: is everything the config names there and answering?

Every check runs, whatever the others found, and prints one row: `OK`, `WARN`
(works, but look), `FAIL` (a release would fail) or `SKIP` (the config doesn't
use it), with one line of detail. The exit code is 1 when any check failed,
else 0; a warning doesn't fail. Checks only ask; they change nothing. A check
that raises is a FAIL row, not a traceback, and every row passes the redactor
of the config's secrets (and any credential in the `repo:` URL) before it
prints. The remote checks (Docker, registry, SSH) are in doctor_remote.py.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from agent import doctor_remote as remote
from agent.config import AgentConfig, load_config
from agent.doctor_remote import Result
from agent.notify_sinks import load_sinks
from agent.repo import Mirror, exposed_credential
from agent.secrets import Redactor, public_url
from hooks.core.errors import FatalError
from hooks.core.process import run


def _config(path: Path) -> tuple[AgentConfig | None, Result]:
    try:
        config = load_config(path)
    except FatalError as exc:
        return None, ("FAIL", str(exc))
    if config.warnings:
        return config, ("WARN", f"{path}: {len(config.warnings)} warning(s): "
                        + "; ".join(config.warnings))
    return config, ("OK", str(path))


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
    return "OK", f"{work} ({free:.0f} GiB free)"


def _git(config: AgentConfig) -> Result:
    version = run(["git", "--version"])
    repo = public_url(config.repo)
    # Through a throw-away mirror, as the agent fetches: a password in the URL
    # goes to git through a private credential file, never on a command line.
    with tempfile.TemporaryDirectory(prefix="rasa-gitops-doctor-") as probe:
        try:
            head = Mirror(config.repo, config.branch, Path(probe) / "repo.git").remote_head()
        except FatalError as exc:
            return "FAIL", str(exc)
    if head is None:
        return "FAIL", f"branch {config.branch!r} does not exist in {repo}"
    if exposed_credential(config.repo):
        return "WARN", (f"{repo} has branch {config.branch}, but `repo:` holds a token as its "
                        "user name: git shows it on its command line to every local user; "
                        "use user:token@ (kept in a private credential file), a credential "
                        "helper or an SSH key instead")
    return "OK", f"{version.output.strip()}; {repo} has branch {config.branch}"


def _rasa(config: AgentConfig) -> Result:
    from agent.targets.factory import rasa_argv

    argv = rasa_argv(config)
    done = run([*argv, "--version"], timeout=300)
    if not done.ok:
        return "FAIL", f"`{shlex.join(argv)} --version` failed: {done.tail(2)}"
    line = next((ln for ln in done.output.splitlines() if ln.startswith("Rasa Version")), "")
    return "OK", " ".join(line.split()) or done.tail(1)


def _rasa_server(config: AgentConfig) -> Result:
    from agent.targets.factory import build_targets

    model = build_targets(config).model
    pulled = config["model.target"] == "model_server"
    where = (f"the model server (port {config['model.server_port']})" if pulled
             else str(config["model.url"]))
    if config["model.target"] == "rasa_x":  # not the agent's to start
        where = f"Rasa X at {config['model.rasa_x_url']}"
    if not model.server_answers():
        if (config["model.manage_server"] and config["model.target"] != "rasa_x") or pulled:
            return "OK", f"{where} is down; the agent starts it on first deploy"
        return "FAIL", f"{where} does not answer"
    try:
        live = model.live_model_id()
    except Exception as exc:  # DeployError: wrong token and the like
        return "FAIL", str(exc)
    return "OK", f"{where} answers; live model {live or 'none'}"


def _haproxy(config: AgentConfig) -> Result:
    from agent.targets.factory import serving_mode

    if config["model.target"] == "model_server":
        return "SKIP", "model.target is model_server: the pullers load their own models"
    if config["model.target"] == "rasa_x":
        return "SKIP", "model.target is rasa_x: Rasa X runs its own Rasa servers"
    if serving_mode(config) != "blue_green":
        return "SKIP", "model.serving is put_model: no front proxy"
    haproxy = str(config["model.haproxy"])
    if shutil.which(haproxy) is None:
        return "FAIL", (f"{haproxy} not found: blue/green serving needs HAProxy in front of "
                        "the Rasa servers (Debian: apt-get install haproxy), or set "
                        "model.haproxy to it")
    done = run([haproxy, "-v"], timeout=30)
    first = done.output.splitlines()[0] if done.output else ""
    return ("OK", first.strip()) if done.ok else ("FAIL", f"`{haproxy} -v` failed: {first}")


def _action_port(config: AgentConfig) -> Result:
    if config["action_server.target"] != "local":
        return "SKIP", "action server is not local"
    host, port = str(config["action_server.host"]), int(config["action_server.port"])
    pid_file = config.state_dir / "action-server" / "forwarder.pid"
    with socket.socket() as sock:
        sock.settimeout(1)
        taken = sock.connect_ex((host, port)) == 0
    if taken and not pid_file.is_file():
        return "FAIL", f"{host}:{port} is taken by another program (action_server.port)"
    return "OK", f"{host}:{port} " + ("serves the agent's forwarder" if taken else "is free")


def _notify(config: AgentConfig) -> Result:
    """Each sink's secret readable and its host accepting connections; nothing is sent."""
    if not config["notify"]:
        return "SKIP", "no notify: sinks configured"
    sinks = load_sinks(config)  # an unreadable secret: its ConfigError is the FAIL row
    addresses = [sink.address() for sink in sinks]
    down = []
    for sink, (host, port) in zip(sinks, addresses, strict=True):
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as exc:
            down.append(f"{sink.key.split(':', 1)[0]} ({host}:{port}: {exc.strerror or exc})")
    if down:
        return "FAIL", "cannot connect to " + "; ".join(down) + (
            "; check the URL and that the agent's host may reach it")
    return "OK", f"{len(sinks)} sink(s) reachable: " + ", ".join(
        f"{host}:{port}" for host, port in addresses)


Check = Callable[[AgentConfig], Result]


def _checks() -> list[tuple[str, Check]]:
    """The checks of what the agent has once: its work dir, git, Rasa, the image
    registry, notifications."""
    return [
        ("work dir", _work_dir),
        ("git", _git),
        ("rasa", _rasa),
        ("registry", remote.registry),
        ("notify", _notify),
    ]


def _place_checks() -> list[tuple[str, Check]]:
    """The checks of each environment's own servers (its view of the config)."""
    return [
        ("rasa server", _rasa_server),
        ("haproxy", _haproxy),
        ("action port", _action_port),
        ("ssh key", remote.ssh_key),
        ("ssh host key", remote.ssh_host_key),
        ("ssh", remote.ssh),
        ("model host", remote.model_host),
    ]


def _place_rows(config: AgentConfig) -> list[tuple[str, Result]]:
    """Each environment's rows, named after it when there are several."""
    rows: list[tuple[str, Result]] = []
    several = len(config.environments) > 1
    for env in config.environments:
        view = config.for_environment(env.name)
        suffix = f" ({env.name})" if several else ""
        found = [(name, _guarded(check, view)) for name, check in _place_checks()]
        ssh_ok = dict(found)["ssh"][0] == "OK"
        found.append(("docker", _guarded(functools.partial(remote.docker, ssh_ok=ssh_ok),
                                         view)))
        rows += [(name + suffix, result) for name, result in found]
    return rows


def _guarded(check: Check, config: AgentConfig) -> Result:
    """The check's result; whatever it raises is its FAIL row, and the next one runs."""
    try:
        return check(config)
    except FatalError as exc:  # ConfigError and the like: already a sentence
        return "FAIL", str(exc)
    except Exception as exc:
        return "FAIL", f"the check itself failed: {type(exc).__name__}: {exc}"


def run_doctor(path: Path) -> int:
    config, result = _config(path)
    rows: list[tuple[str, Result]] = [("config", result)]
    if config is None:
        names = [name for name, _ in (*_checks(), *_place_checks())] + ["docker"]
        rows += [(name, ("SKIP", "needs a config that loads")) for name in names]
        redact = Redactor()
    else:
        redact = config.redactor()
        rows += [(name, _guarded(check, config)) for name, check in _checks()]
        rows += _place_rows(config)
    width = max(len(name) for name, _ in rows)
    for name, (state, detail) in rows:
        print(redact(f"{state:<4}  {name:<{width}}  {detail}"))
    counts = {state: sum(1 for _, (s, _) in rows if s == state)
              for state in ("FAIL", "WARN", "OK", "SKIP")}
    print(f"\n{counts['FAIL']} failed, {counts['WARN']} warning(s), {counts['OK']} ok, "
          f"{counts['SKIP']} skipped")
    return 1 if counts["FAIL"] else 0
