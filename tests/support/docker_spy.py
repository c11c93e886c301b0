"""The secrets check of the Docker fault host (tests/reliability/test_faults_docker.py).

`spy_release` makes the release: the spy bot (tests/support/env_dump_bot.py) pushed to
the host, then `agent once` with a config that uses every secret: the Rasa token
from the environment (every call to the Rasa server the first release started,
its token on standard input; that server loads the spy's component), the
registry password (the push, and the pull over SSH), and an SSH key under a
passphrase. The parts it uses:

- `encrypt_key`: a copy of an SSH client key under a passphrase, written by the
  cryptography library, so the passphrase is on no command line of the test.
- `ProcessWatch`: on a thread, every 0.1 s, every process's command line (what
  `ps -eo args` shows) and environment, but the agent's own environment, where
  its secrets come from (tests/support/procs.py).
- `container_dumps`: what the spy bot's action code (tests/support/env_dump_bot.py)
  wrote inside its action server's container, read through the engine's API.
- `files_holding`: the files under a folder whose bytes hold one of the values.
"""

from __future__ import annotations

import io
import json
import secrets
import shutil
import sys
import tarfile
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.journal import Release
from tests.support.agent_config import agent_config
from tests.support.docker_fault_host import PASSWORD_VARIABLE, FaultHost
from tests.support.env_dump_bot import DUMP_VARIABLE, add_spy
from tests.support.procs import processes_showing_any
from tests.support.services import DockerEngine

TOKEN_VARIABLE = "RGT_RASA_TOKEN"
PASSPHRASE_VARIABLE = "RGT_SSH_PASSPHRASE"


def encrypt_key(key_file: Path, to: Path, passphrase: str) -> Path:
    """`key_file` (an OpenSSH private key without a passphrase) saved to `to` under
    `passphrase`; the same key, so the server's authorized_keys take it."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_private_key(key_file.read_bytes(), password=None)
    to.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(passphrase.encode())))
    to.chmod(0o600)
    return to


class ProcessWatch:
    """`with ProcessWatch(values, environ_ok={agent.pid}) as watch:` samples until the
    block ends; `watch.seen` holds (pid, cmdline|environ, command) of each sighting."""

    def __init__(self, values: Collection[str], environ_ok: Collection[int] = ()) -> None:
        self.values = list(values)
        self.environ_ok = set(environ_ok)
        self.seen: list[tuple[int, str, str]] = []
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.seen += processes_showing_any(self.values, environ_ok=self.environ_ok)
            self.samples += 1
            self._done.wait(0.1)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._done.set()
        self._thread.join(30)


def container_dumps(engine: DockerEngine, container: str, folder: Path) -> list[dict[str, Any]]:
    """The spy's JSON reports in `folder` inside `container` (none: an empty list)."""
    import docker.errors

    client = engine.client()
    try:
        try:
            stream, _ = client.containers.get(container).get_archive(str(folder))
        except docker.errors.NotFound:
            return []
        data = b"".join(stream)
    finally:
        client.close()
    records = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.name.endswith(".json") else None
            if handle is not None:
                records.append(json.load(handle))
    return records


def files_holding(root: Path, values: Collection[str], skip: Collection[Path] = ()
                  ) -> list[str]:
    """`path: what` for each file under `root` (bytes as on disk: the SQLite journal
    and its WAL too) holding a value of `values`, but the files `skip`."""
    found = []
    files = [path for path in root.rglob("*") if path.is_file() and path not in skip]
    assert files, f"no file under {root}"
    for path in files:
        data = path.read_bytes()
        found += [f"{path}: {value[:4]}..." for value in values if value.encode() in data]
    return found


@dataclass
class SpyRelease:
    release: Release | None  # the one release `agent once` made
    seconds: float  # what `agent once` took
    leaks: dict[str, str]  # secret variable: its value
    outputs: list[str]  # of `agent once`, status, history, logs
    seen: list[tuple[int, str, str]]  # processes showing a value, during and after
    samples: int  # how many times every process was looked at
    records: list[dict[str, Any]]  # the spy's reports: the host's, then the container's
    container_env: list[str]  # the action server container's, as `docker inspect` shows it
    key: Path  # the SSH key under the passphrase
    steps: dict[str, float]  # each step's seconds, for the cost report


def spy_release(host: FaultHost) -> SpyRelease:
    """The spy bot released over docker_ssh with every secret in use (see the module)."""
    after = host.last_release_id()
    leaks = {TOKEN_VARIABLE: host.token(), PASSWORD_VARIABLE: host.password,
             PASSPHRASE_VARIABLE: "ssh-" + secrets.token_urlsafe(16)}
    key = encrypt_key(host.sshd.key_file, host.root / "spy_key", leaks[PASSPHRASE_VARIABLE])
    dumps = host.spy_dumps
    config = agent_config(
        host.root / "agent-spy.yml", like=host.config,
        pipeline={"env": [DUMP_VARIABLE], "action_tests": f"{sys.executable} action_test.py"},
        action_server={"env": [DUMP_VARIABLE], "ssh_key_file": key,
                       "ssh_key_passphrase_env": PASSPHRASE_VARIABLE},
        model={"auth_token_env": TOKEN_VARIABLE})
    host.push_actions_change("the spy bot, released with every secret", also=add_spy)
    # The agent's one Rasa server (put_model) runs in its own folder, not the
    # release's: it finds the bot's component on the PYTHONPATH it was started with.
    shutil.copytree(host.src / "components", host.spy_path / "components")
    env = {TOKEN_VARIABLE: leaks[TOKEN_VARIABLE], PASSPHRASE_VARIABLE: leaks[PASSPHRASE_VARIABLE]}
    started = time.monotonic()
    agent = host.spawn_agent("once", config=config, env=env)
    with ProcessWatch(leaks.values(), environ_ok={agent.pid}) as watch:
        out, err = agent.communicate(timeout=600)
    seconds = time.monotonic() - started
    seen = watch.seen + processes_showing_any(leaks.values())  # the servers left running
    journal = host.journal()
    try:
        release = next((r for r in journal.releases(limit=5) if r.id > after), None)
        steps = {step.name: round(step.duration or 0, 1)
                 for step in (journal.steps(release.id) if release else [])}
    finally:
        journal.close()
    outputs = [out + err]
    for args in (("status",), ("status", "--json"), ("history", "--json"),
                 ("logs", str(release.id if release else after), "--lines", "2000")):
        shown = host.agent(*args, config=config, env=env)
        outputs.append(shown.stdout + shown.stderr)
    records = [json.loads(found.read_text(encoding="utf-8")) for found in dumps.iterdir()]
    container = f"rasa-actions-{host.instance}"
    client = host.engine.client()
    try:
        live = client.containers.list(filters={"label": [
            f"io.rasa-gitops.target={container}", "io.rasa-gitops.role=action-server",
            f"io.rasa-gitops.release={release.id if release else -1}"]})
        names = [c.name for c in live]
        container_env = list(live[0].attrs["Config"]["Env"] or []) if live else []
    finally:
        client.close()
    for name in names:
        records += container_dumps(host.engine, name, dumps)
    return SpyRelease(release, seconds, leaks, outputs, seen, watch.samples, records,
                      container_env, key, steps)
