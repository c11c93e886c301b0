"""`agent doctor`'s checks of what lies beyond this host: Docker, the registry, SSH.

Each returns a `Result` (defined here, as agent/doctor.py imports this module)
and only asks; nothing is changed.
The registry check speaks the Docker registry v2 API itself (`GET /v2/`, then
basic auth or the bearer-token exchange the challenge names), so it tells
"unreachable" from "credentials refused" without a Docker engine. The SSH
checks open the key with its passphrase in-process (paramiko, as the agent
does): the passphrase is never on a command line.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from agent.config import AgentConfig
from agent.secrets import public_url
from agent.targets.base import DeployError

Result = tuple[str, str]  # (OK|WARN|FAIL|SKIP, detail): every check's row, here and in doctor.py
DOCKER_HUB = "registry-1.docker.io"
TIMEOUT = 10.0
SSH_TARGET = "docker_ssh"


def image_targets(config: AgentConfig) -> bool:
    from agent.steps.build import uses_images

    return uses_images(config)


def docker(config: AgentConfig, ssh_ok: bool) -> Result:
    target = str(config["action_server.target"])
    if not image_targets(config):
        return "SKIP", "no Docker target configured"
    try:
        if target == SSH_TARGET:
            if not ssh_ok:
                return "SKIP", "the Docker engine is reached over SSH, which failed above"
            from agent.targets.docker.factories import ssh_settings
            from agent.targets.docker.ssh import SshEngine

            engine = SshEngine(ssh_settings(config))
            try:
                client = engine.client()
                version = client.version().get("Version", "?")
                client.close()
            finally:
                engine.close()
            return "OK", f"Docker {version} answers on {config['action_server.ssh_host']}"
        from agent.targets.docker.engine import local_engine

        client = local_engine(config["action_server.docker_host"])()
        try:
            return "OK", f"Docker {client.version().get('Version', '?')} answers"
        finally:
            client.close()
    except DeployError as exc:
        return "FAIL", str(exc)
    except Exception as exc:  # the SDK's errors: say which, never a traceback
        return "FAIL", f"Docker does not answer: {type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- registry


def registry_host(repository: str) -> str:
    """The registry of an image repository, as Docker reads the name."""
    first, slash, _ = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def _loopback(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _docker_config_auth(host: str) -> tuple[str, str] | str | None:
    """(user, password) the Docker config holds for `host`; a str says why not."""
    folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    names = {host, f"https://{host}", f"http://{host}"}
    if host == DOCKER_HUB:
        names |= {"https://index.docker.io/v1/", "docker.io", "index.docker.io"}
    for name, entry in (data.get("auths") or {}).items():
        if name.rstrip("/") in names or name in names:
            try:
                user, _, password = base64.b64decode(entry.get("auth", "")).decode().partition(
                    ":")
            except (ValueError, UnicodeDecodeError):
                return f"{folder / 'config.json'}: the entry for {host} is not readable"
            if user and password:
                return user, password
    if host in (data.get("credHelpers") or {}) or data.get("credsStore"):
        return "the Docker config keeps credentials in a credential helper"
    return None


def _credentials(config: AgentConfig, host: str) -> tuple[tuple[str, str] | None, str]:
    """(credentials, where they come from) for the registry check."""
    user = config["image.registry_user"]
    secret = config.secret("image.registry_password")
    if user and secret is not None:
        return (str(user), secret.reveal()), f"user {user} ({secret.origin})"
    found = _docker_config_auth(host)
    if isinstance(found, tuple):
        return found, f"user {found[0]} (the Docker config)"
    return None, found or "no credentials"


def registry(config: AgentConfig) -> Result:
    if not image_targets(config):
        return "SKIP", "no image is built: the action server target runs none"
    repository = config["image.repository"]
    if not repository:
        return "FAIL", (f"image.repository is required for the {config['action_server.target']} "
                        "action server target")
    if not config["image.push"] and config["action_server.target"] == "docker":
        return "SKIP", "image.push is false: images stay in the local engine"
    import requests

    host = registry_host(str(repository))
    base = f"https://{host}"
    try:
        answer = requests.get(f"{base}/v2/", timeout=TIMEOUT)
    except requests.RequestException as exc:
        if not _loopback(host):
            return "FAIL", f"{host} does not answer on https: {type(exc).__name__}"
        base = f"http://{host}"  # Docker, too, speaks plain HTTP to a loopback registry
        try:
            answer = requests.get(f"{base}/v2/", timeout=TIMEOUT)
        except requests.RequestException as exc2:
            return "FAIL", f"{host} does not answer: {type(exc2).__name__}"
    where = f"{base}/v2/"
    creds, origin = _credentials(config, host)
    if answer.status_code == 200:
        return "OK", f"{where} answers without authentication"
    if answer.status_code != 401:
        return "FAIL", f"{where} answered HTTP {answer.status_code}; not a Docker registry?"
    if creds is None and origin.endswith("credential helper"):
        # ECR/GCR logins live there; the engine uses them for its pushes.
        return "WARN", f"{where} needs credentials; {origin}, which this check can't read"
    if creds is None:
        return "FAIL", (f"{where} needs credentials and there are none ({origin}): set "
                        "image.registry_user and image.registry_password_env (or _file), or "
                        "`docker login` as the agent's user")
    challenge = answer.headers.get("WWW-Authenticate", "")
    try:
        if challenge.lower().startswith("bearer"):
            params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
            realm = params.pop("realm", "")
            if not realm:
                return "FAIL", f"{where}: a bearer challenge without a realm: {challenge[:80]}"
            realm_url = urlsplit(realm)
            if realm_url.scheme != "https" and not _loopback(realm_url.netloc):
                # The password would cross the network in clear text.
                return "FAIL", (f"{where} sends its logins to {public_url(realm)}, not https: "
                                "the credentials were not sent")
            checked = requests.get(realm, params=params, auth=creds, timeout=TIMEOUT)
        else:
            checked = requests.get(where, auth=creds, timeout=TIMEOUT)
    except requests.RequestException as exc:
        return "FAIL", f"{where}: the credential check did not answer: {type(exc).__name__}"
    if checked.status_code == 200:
        return "OK", f"{where} answers and accepts the credentials of {origin}"
    if checked.status_code in (401, 403):
        return "FAIL", f"{where} refused the credentials of {origin} (HTTP {checked.status_code})"
    return "FAIL", f"{where}: the credential check answered HTTP {checked.status_code}"


# ---------------------------------------------------------------- SSH


def uses_ssh(config: AgentConfig) -> bool:
    return str(config["action_server.target"]) == SSH_TARGET


def _open_key(path: Path, passphrase: str | None) -> bool | None:
    """True: the key opens with `passphrase`; False: it is encrypted (and this
    passphrase, if any, is wrong); None: no key type paramiko knows reads it.
    Each key class is tried, as paramiko's own connect does."""
    import paramiko

    encrypted = False
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            kind.from_private_key_file(str(path), password=passphrase)
            return True
        except paramiko.PasswordRequiredException:
            encrypted = True
        except (paramiko.SSHException, ValueError, OSError):
            continue
    return False if encrypted or passphrase is not None else None


def ssh_key(config: AgentConfig) -> Result:
    if not uses_ssh(config):
        return "SKIP", "no SSH target configured"
    key_file = config["action_server.ssh_key_file"]
    secret = config.secret("action_server.ssh_key_passphrase")
    if not key_file:
        return "WARN", ("no action_server.ssh_key_file: the SSH agent's or ~/.ssh's keys are "
                        "tried; the passphrase is not checked")
    path = Path(str(key_file)).expanduser()
    if not path.is_file():
        return "FAIL", f"{path} (action_server.ssh_key_file) does not exist"
    opened = _open_key(path, None)
    if opened is None:
        return "FAIL", f"{path} is not a private key paramiko reads (ed25519, RSA or ECDSA)"
    if opened:
        if secret is not None:
            return "WARN", (f"{path} has no passphrase; action_server.ssh_key_passphrase "
                            f"({secret.origin}) is unused")
        return "OK", f"{path} opens (no passphrase)"
    if secret is None:
        return "FAIL", (f"{path} is encrypted and no passphrase is configured "
                        "(action_server.ssh_key_passphrase_env or _file)")
    if not _open_key(path, secret.reveal()):
        return "FAIL", f"the passphrase ({secret.origin}) does not open {path}"
    return "OK", f"{path} opens with the passphrase from {secret.origin}"


def ssh_host_key(config: AgentConfig) -> Result:
    if not uses_ssh(config):
        return "SKIP", "no SSH target configured"
    import paramiko

    host, port = config["action_server.ssh_host"], int(config["action_server.ssh_port"])
    if not host:
        return "FAIL", "action_server.ssh_host is required for the docker_ssh target"
    known = Path(str(config["action_server.ssh_known_hosts"])).expanduser()
    name = str(host) if port == 22 else f"[{host}]:{port}"
    allowed = bool(config["action_server.ssh_allow_unknown_hosts"])
    keys = None
    if known.is_file():
        try:
            keys = paramiko.HostKeys(str(known)).lookup(name)
        except (OSError, paramiko.SSHException) as exc:
            return "FAIL", f"{known} is not readable: {type(exc).__name__}"
    if keys:
        return "OK", f"{known} has the {', '.join(sorted(keys.keys()))} key of {name}"
    how = (f"add it with `ssh-keyscan -p {port} {host} >> {known}` after checking its "
           "fingerprint")
    missing = f"{known} does not exist" if not known.is_file() else f"{name} is not in {known}"
    if allowed:
        return "WARN", f"{missing}; accepted because ssh_allow_unknown_hosts is on ({how})"
    return "FAIL", f"{missing}: the agent refuses an unknown host key; {how}"


def ssh(config: AgentConfig) -> Result:
    if not uses_ssh(config):
        return "SKIP", "no SSH target configured"
    from agent.targets.docker.factories import ssh_settings
    from agent.targets.docker.ssh import connect_ssh

    settings = ssh_settings(config)
    try:
        client = connect_ssh(settings)
    except DeployError as exc:
        return "FAIL", str(exc)
    client.close()
    return "OK", (f"logged in as {settings.user}@{settings.host}:{settings.port}, "
                  "host key verified")


def model_host(config: AgentConfig) -> Result:
    """model.ssh_host: SFTP to the Rasa server's host and its model folder."""
    from agent.targets.factory import remote_models

    remote = remote_models(config)
    if remote is None:
        return "SKIP", "the Rasa server shares this host's disk (no model.ssh_host)"
    try:
        return "OK", remote.check()
    except DeployError as exc:
        return "FAIL", str(exc)
