"""The model server (agent/model_server.py) and its target, without Rasa.

Real: the server process the target starts (`python -m agent.model_server`,
token on standard input), its HTTP answers over a loopback port, the tag files
the target writes, and the files it streams. Model archives are small fakes
(metadata.json only) or a 50 MB sparse file: the server never opens them.
The real Rasa pulling from it is tests/agent/targets/test_model_server_rasa.py.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agent.secrets import Secret
from agent.targets.base import DEAD, DeployError, ModelRef
from agent.targets.model_server import ModelServerTarget, Puller
from agent.targets.rasa_api import RasaApi
from tests.support.fake_rasa_server import fake_model, fake_rasa_server
from tests.support.procs import processes_showing
from tests.support.services import free_port, wait_for

TOKEN = "model-server-token-6c1f0b"


def make_target(tmp_path: Path, environment: str = "production",
                pullers: list[Puller] | None = None,
                rasa_token: Secret | None = None) -> ModelServerTarget:
    return ModelServerTarget(
        environment=environment, server_dir=tmp_path / "model-server", host="127.0.0.1",
        port=free_port(), token=Secret(TOKEN, "test"), token_name="token",
        pullers=pullers or [], rasa_token=rasa_token, wait_time=0.5, margin=1.0)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[ModelServerTarget]:
    made = make_target(tmp_path)
    yield made
    made.stop_all(lambda _line: None)


def url(target: ModelServerTarget, environment: str = "production") -> str:
    return f"http://127.0.0.1:{target.port}/models/{environment}"


def pid_of(target: ModelServerTarget) -> int:
    return int((target.server_dir / "model-server.pid").read_text().split()[0])


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def activate(target: ModelServerTarget, model: Path, release: str = "r1") -> ModelRef:
    ref = target.upload(release, model, print)
    target.activate(ref, print)
    return ref


def test_serves_the_tagged_model_with_etag_filename_and_304(
        target: ModelServerTarget, tmp_path: Path) -> None:
    model = fake_model(tmp_path / "20260101-one.tar.gz", "model-one")
    ref = activate(target, model)
    answer = requests.get(url(target), params={"token": TOKEN}, timeout=10)
    assert answer.status_code == 200
    assert answer.content == model.read_bytes()
    assert answer.headers["ETag"] == '"model-one"'
    assert answer.headers["filename"] == "20260101-one.tar.gz"
    # Rasa sends back exactly the ETag header it stored as the fingerprint.
    again = requests.get(url(target), params={"token": TOKEN}, timeout=10,
                         headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    assert target.live_model_id() == ref.model_id
    assert target.serves(ref)

    # Moving the tag switches what the same URL serves.
    second = fake_model(tmp_path / "20260102-two.tar.gz", "model-two")
    activate(target, second, "r2")
    moved = requests.get(url(target), params={"token": TOKEN}, timeout=10,
                         headers={"If-None-Match": answer.headers["ETag"]})
    assert moved.status_code == 200 and moved.content == second.read_bytes()
    assert moved.headers["ETag"] == '"model-two"'
    assert target.live_model_id() == "model-two" and not target.serves(ref)


def test_refuses_unknown_environments_and_bad_tokens_without_logging_them(
        target: ModelServerTarget, tmp_path: Path) -> None:
    activate(target, fake_model(tmp_path / "m.tar.gz", "model-one"))
    wrong = "wrong-token-value-93ad"
    assert requests.get(url(target), timeout=10).status_code == 401
    assert requests.get(url(target), params={"token": wrong}, timeout=10).status_code == 403
    assert requests.get(url(target), headers={"Authorization": f"Bearer {wrong}"},
                        timeout=10).status_code == 403
    assert requests.get(url(target), headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=10).status_code == 200
    for unknown in ("staging", "..%2Fproduction", "production.json"):
        answer = requests.get(url(target, unknown), params={"token": TOKEN}, timeout=10)
        assert answer.status_code == 404, unknown
    # A request line http.server refuses is logged without its text either.
    with socket.create_connection(("127.0.0.1", target.port)) as raw:
        raw.sendall(f"GET /models/production?token={TOKEN} BOGUS/9\r\n\r\n".encode())
        raw.recv(1024)

    log = (target.server_dir / "model-server.log").read_text()
    assert "GET /models/production 200" in log and "GET /models/production 403" in log
    assert TOKEN not in log and wrong not in log and "?" not in log
    # Nor in any process's command line or environment (it came on stdin).
    assert processes_showing(TOKEN) == []


def test_twenty_pullers_of_a_large_file_keep_memory_bounded(
        target: ModelServerTarget, tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    big = tmp_path / "big.tar.gz"
    with open(big, "wb") as out:
        out.truncate(size)  # sparse: 50 MB of zeros, no disk written
    target.activate(ModelRef("r1", "big-model", str(big)), print)
    pid = pid_of(target)
    before = rss_kib(pid)
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    results: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def pull(conditional: bool) -> None:
        headers = {"If-None-Match": '"big-model"'} if conditional else {}
        with requests.get(url(target), params={"token": TOKEN}, headers=headers,
                          stream=True, timeout=120) as answer:
            digest = hashlib.sha256()
            for chunk in answer.iter_content(1 << 16):
                digest.update(chunk)
            with lock:
                results.append((answer.status_code, answer.headers.get("ETag", ""),
                                digest.hexdigest()))

    # 20 full downloads at once, and 5 conditional pulls among them.
    threads = [threading.Thread(target=pull, args=(i >= 20,)) for i in range(25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    full = [r for r in results if r[0] == 200]
    assert len(full) == 20 and all(r[1:] == ('"big-model"', expected) for r in full)
    assert sorted(r[0] for r in results if r[0] != 200) == [304] * 5
    peak = rss_kib(pid, "VmHWM")
    # The file is 50 MB and went out 20 times: 1 GB if anything buffered it.
    assert peak - before < 16 * 1024, f"RSS {before} KiB -> peak {peak} KiB"


def test_a_puller_that_never_reports_the_model_is_named_and_the_tag_goes_back(
        tmp_path: Path) -> None:
    silent = Puller("rasa-eu-1", f"http://127.0.0.1:{free_port()}")
    target = make_target(tmp_path, pullers=[silent])
    try:
        first = fake_model(tmp_path / "one.tar.gz", "model-one")
        target._write_tag({"path": str(first), "etag": "model-one", "model_id": "model-one",
                           "filename": "one.tar.gz", "release_id": "r1"})
        second = fake_model(tmp_path / "two.tar.gz", "model-two")
        with pytest.raises(DeployError) as refused:
            activate(target, second, "r2")
        message = str(refused.value)
        assert "rasa-eu-1" in message and "model-two" in message
        assert "back on model-one" in message
        assert target.live_model_id() == "model-one"
        with pytest.raises(DeployError, match="rasa-eu-1"):
            target.serves(target.upload("r1", first, print))
    finally:
        target.stop_all(print)


def test_a_puller_that_keeps_its_old_model_is_named_with_what_it_reports(
        tmp_path: Path) -> None:
    """A Rasa server that can't reach the model server keeps its model: the
    refusal names it and what it reports. The puller is the stand-in Rasa
    server (tests/support/fake_rasa_server.py), which never pulls."""
    old = fake_model(tmp_path / "old.tar.gz", "model-old")
    port = free_port()
    rasa = subprocess.Popen(
        [str(fake_rasa_server(tmp_path / "fake")), "run", "--port", str(port), "--interface",
         "127.0.0.1", "--auth-token", "rasa-api-token-1", "--model", str(old)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rasa_token = Secret("rasa-api-token-1", "test")
    target = make_target(tmp_path, pullers=[Puller("rasa-eu-2", f"http://127.0.0.1:{port}")],
                         rasa_token=rasa_token)
    try:
        wait_for(lambda: RasaApi(f"http://127.0.0.1:{port}", rasa_token).answers(),
                 "the stand-in Rasa server", timeout=30)
        with pytest.raises(DeployError, match=r"rasa-eu-2: reports model model-old"):
            activate(target, fake_model(tmp_path / "new.tar.gz", "model-new"), "r2")
        assert target.live_model_id() is None  # nothing was tagged before
        assert target.serves(target.upload("r1", old, print)) is False
    finally:
        rasa.terminate()
        rasa.wait(10)
        target.stop_all(print)


def test_health_ensure_server_and_stop(target: ModelServerTarget) -> None:
    assert target.health() == []  # never started
    assert target.ensure_server(print) is True
    assert target.ensure_server(print) is False  # runs: left alone
    assert [h.state for h in target.health()] == ["alive"]
    target.stop_all(print)
    with pytest.raises(DeployError, match="does not answer"):
        target.live_model_id()  # restore() then starts it again (ensure_server)
    (target.server_dir / "model-server.pid").write_text("999999 1\n")
    assert [h.state for h in target.health()] == [DEAD]
    assert target.ensure_server(print) is True and target.server_answers()


def test_a_port_held_by_another_program_is_refused_and_a_lost_pid_file_adopted(
        target: ModelServerTarget) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", target.port))
        other.listen()
        with pytest.raises(DeployError, match="taken by another program"):
            target.ensure_server(print)
    assert target.ensure_server(print) is True
    pid_file = target.server_dir / "model-server.pid"
    record = pid_file.read_text()
    pid_file.unlink()  # a crash right after the start, before the record
    assert target.ensure_server(print) is False  # its own server: no second one
    assert target.server_answers()
    pid_file.write_text(record)  # for the fixture's stop_all
