"""The model folder on a Rasa server's host, over SFTP through the real sshd fixture.

No Rasa here (test_rasa_http_remote.py has one): what is copied, what is sent
again, and above all what is deleted: only this place's own models beyond
`keep`, never the live one, another environment's, a fresh upload in flight or
anyone else's file. A folder under tmp_path stands for the other host's disk.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agent.targets.base import DeployError
from agent.targets.docker.ssh import SshSettings
from agent.targets.remote_models import RemoteModels
from tests.support.services import SshServer


def remote(sshd: SshServer, folder: Path, **kwargs: object) -> RemoteModels:
    settings = SshSettings(host=sshd.host, port=sshd.port, user=sshd.user,
                           key_file=sshd.key_file, known_hosts=sshd.known_hosts, timeout=10)
    return RemoteModels(settings, str(folder), **kwargs)  # type: ignore[arg-type]


def aged(path: Path, seconds: float) -> Path:
    os.utime(path, (time.time() - seconds, time.time() - seconds))
    return path


def test_copies_once_and_deletes_only_its_own_older_models(
        tmp_path: Path, sshd: SshServer) -> None:
    folder = tmp_path / "host" / "models"
    folder.mkdir(parents=True)
    local = tmp_path / "local"
    local.mkdir()
    files = []
    for n in range(4):
        (local / f"m{n}.tar.gz").write_bytes(os.urandom(2048) * (n + 1))
        files.append(local / f"m{n}.tar.gz")
    store = remote(sshd, folder, keep=2, place="staging")
    lines: list[str] = []
    paths = []
    for n, model in enumerate(files):
        paths.append(Path(store.put(str(n + 1), model, lines.append)))
        aged(paths[-1], 100 - n)  # uploaded one after the other
    assert [p.read_bytes() for p in paths] == [m.read_bytes() for m in files]
    assert all(p.name.startswith(f"rasa-gitops-staging-r{n + 1}-")
               for n, p in enumerate(paths))
    assert store.put("1", files[0], lines.append) == str(paths[0])
    assert lines[-1].startswith("model already on")
    # Beside them: another environment's model, someone else's file, a crashed
    # upload of ours (an hour old) and one in flight (fresh).
    production = folder / f"rasa-gitops-r9-{'a' * 16}.tar.gz"
    production.write_bytes(b"production's")
    aged(production, 10_000)
    foreign = folder / "bot-v1.tar.gz"
    foreign.write_bytes(b"someone else's")
    crashed = folder / f".{paths[1].name}.0badc0de.part"
    crashed.write_bytes(b"half")
    aged(crashed, 7200)
    in_flight = folder / f".{paths[2].name}.00c0ffee.part"
    in_flight.write_bytes(b"half")

    store.keep_newest(str(paths[0]), lines.append)  # a rollback to release 1
    left = {p.name for p in folder.iterdir()}
    # keep=2: the live one (release 1) and the newest other (release 4).
    assert left == {paths[0].name, paths[3].name, production.name, foreign.name,
                    in_flight.name}
    assert store.check().endswith("2 model(s) of the agent's there")


def test_a_missing_folder_and_a_relative_one_are_clear_refusals(
        tmp_path: Path, sshd: SshServer) -> None:
    model = tmp_path / "m.tar.gz"
    model.write_bytes(b"model")
    with pytest.raises(DeployError) as refused:
        remote(sshd, tmp_path / "missing").put("1", model, print)
    assert "can't be used" in str(refused.value) and "create it" in str(refused.value)
    with pytest.raises(DeployError, match="must be an absolute path"):
        RemoteModels(SshSettings("h"), "models")
