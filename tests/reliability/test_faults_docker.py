"""The Docker parts failing under a release: the agent SIGKILLed inside a build and inside
a push, the registry stopped mid-push, the SSH connection cut mid-deploy, dockerd
restarted mid-release.

One deploy host for the module (tests/support/docker_fault_host.py): the
`docker_ssh` target over its own sshd to the session's dockerd, its own registry
with htpasswd auth, the agent's managed Rasa server; only the first release
trains, every later commit changes only the action code: about 10 s a release.
The agent runs as the real `agent once` process. Faults are made by a watcher
thread on the real processes (tests/support/docker_faults.py), not by hooks in
the agent, except SIGKILL, which uses the shipped kill points `build.running` /
`push.running`.

After each fault: bounded retries with backoff in the step's log, the release
failed with a reason naming the fault (or, after a SIGKILL, retried and
promoted), production untouched (the live model's id and the hours the live
action server answers with are production's), the journal sound and readable
(`agent status`, `agent history`), no lock left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from agent.journal import INTERRUPTED, PROMOTED
from agent.journal.records import StepStatus
from tests.support.docker_fault_host import (
    FaultHost,
    failed_release,
    retried_with_backoff,
    running_fault_host,
    watch,
)
from tests.support.docker_faults import (
    MANIFEST_PUT,
    cut_sshd,
    start_dockerd_again,
    start_sshd_again,
    stop_dockerd,
    wait_for_step,
)
from tests.support.docker_spy import files_holding, spy_release
from tests.support.env_dump_bot import DUMP_VARIABLE
from tests.support.services import DockerEngine, stop_process, wait_for

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def fault_host(tmp_path_factory: pytest.TempPathFactory, rasa_bin: Path,
               docker_engine: DockerEngine, sdk_base_image: str) -> Iterator[FaultHost]:
    with running_fault_host(tmp_path_factory.mktemp("docker-faults"), rasa_bin,
                            docker_engine, sdk_base_image) as host:
        yield host


@pytest.mark.parametrize("point", ["build.running", "push.running"])
def test_a_sigkill_inside_a_build_or_a_push_is_retried_cleanly(
        fault_host: FaultHost, point: str) -> None:
    host = fault_host
    before = host.journal().production_release("production")
    assert before is not None
    sha = host.push_actions_change(f"killed at {point}")
    crashed = host.agent("once", kill_at=point)
    assert crashed.returncode == -9, (point, crashed.stdout[-2000:], crashed.stderr[-2000:])
    # Right after the crash: production serves on, nothing of the new image is live.
    host.production_is(before.id)
    restarted = host.agent("once")
    assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
    journal = host.journal()
    try:
        killed, retry = journal.releases_of_commit(sha)
        assert killed.status == INTERRUPTED
        step = point.split(".")[0]
        assert {s.name: s.status for s in journal.steps(killed.id)}[step] == (
            StepStatus.INTERRUPTED)
        assert retry.retry_of == killed.id and retry.status == PROMOTED, retry.reason
        assert retry.image and "@sha256:" in retry.image  # pushed whole, pulled by digest
    finally:
        journal.close()
    host.production_is(retry.id)
    assert host.tag_in_registry(sha)
    host.readable()


def test_the_registry_stopped_mid_push_fails_the_release_after_retries(
        fault_host: FaultHost) -> None:
    host = fault_host
    before = host.journal().production_release("production")
    assert before is not None
    after = host.last_release_id()
    sha = host.push_actions_change("pushed while the registry stops")
    host.gate.hold = MANIFEST_PUT  # the layers are in, the tag not yet

    def stop_registry() -> None:
        assert host.gate.held.wait(300), "the push never reached its manifest"
        stop_process(host.registry)
        host.gate.cut()

    watcher, errors = watch(stop_registry)
    started = time.monotonic()
    try:
        ran = host.agent("once")
        watcher.join(10)
        assert not errors, errors
        release = failed_release(host, ran, after)
        address = f"127.0.0.1:{host.gate.port}"
        assert release.reason.startswith("push: "), release.reason
        assert f"registry {address} is unreachable" in release.reason
        assert "after 4 attempt(s)" in release.reason
        log = host.step_log(release.id, "push")
        retried_with_backoff(log, f"push to {address}")
        assert host.password not in log
        print(f"registry mid-push: failed after {time.monotonic() - started:.0f} s")
        host.production_is(before.id)
        host.readable()
    finally:  # the module's later tests push to it
        host.restart_registry()
    assert not host.tag_in_registry(sha)  # no half-pushed tag: its manifest never landed


def test_the_ssh_connection_cut_mid_deploy_fails_the_release_after_retries(
        fault_host: FaultHost) -> None:
    host = fault_host
    before = host.journal().production_release("production")
    assert before is not None
    after = host.last_release_id()
    host.push_actions_change("deployed while SSH drops")
    prefix = f"rasa-actions-{host.instance}"
    cut: list[int] = []

    def cut_mid_deploy() -> None:
        client = host.engine.client()
        try:
            def new_container() -> bool:
                found = client.containers.list(all=True, filters={"label": [
                    f"io.rasa-gitops.target={prefix}", "io.rasa-gitops.role=action-server"]})
                return any(int(c.labels["io.rasa-gitops.release"]) > after for c in found)

            wait_for(new_container, "the new release's container", timeout=300)
        finally:
            client.close()
        cut.append(cut_sshd(host.sshd))

    watcher, errors = watch(cut_mid_deploy)
    ran = host.agent("once")
    watcher.join(10)
    assert not errors, errors
    assert cut and cut[0] > 0, "no SSH session was open to cut"
    try:
        release = failed_release(host, ran, after)
        ssh = f"{host.sshd.host}:{host.sshd.port}"
        assert release.reason.startswith("deploy_actions: action server: "), release.reason
        assert f"cannot reach {ssh} over SSH" in release.reason
        assert "gave up after 4 attempt(s)" in release.reason
        retried_with_backoff(host.step_log(release.id, "deploy_actions"), "deploy to docker_ssh")
        # Whether the router had switched to the new server before the cut depends
        # on when it landed: the undo could not tell with SSH down, and says so.
        journal = host.journal()
        try:
            undo = journal.events(release_id=before.id, kind="production.undo_stopped")
        finally:
            journal.close()
        assert undo and "action_server could not be checked" in undo[0].detail, undo
    finally:
        start_sshd_again(host.sshd)
    # The next tick's restore puts production's action server back where it moved.
    again = host.agent("once")  # exit 1: the head commit's release failed
    assert "Traceback" not in again.stdout + again.stderr, again.stderr[-3000:]
    host.production_is(before.id)
    host.readable()


def test_dockerd_restarted_mid_release_fails_the_release_after_retries(
        fault_host: FaultHost) -> None:
    host = fault_host
    before = host.journal().production_release("production")
    assert before is not None
    after = host.last_release_id()
    host.push_actions_change("released while dockerd restarts")
    journal_file = host.root / "work" / "journal.sqlite"

    agent = host.spawn_agent("once")

    def stop_mid_release() -> None:
        # The release is under way (it validates). dockerd takes ~10 s to stop its
        # containers and keeps answering meanwhile, so the agent is paused until the
        # engine is down: the build is sure to meet the restart, not to finish before it.
        wait_for_step(journal_file, after, "validate")
        os.kill(agent.pid, signal.SIGSTOP)
        try:
            stop_dockerd(host.engine)
        finally:
            os.kill(agent.pid, signal.SIGCONT)

    watcher, errors = watch(stop_mid_release)
    try:
        out, err = agent.communicate(timeout=600)
        watcher.join(90)
        assert not errors, errors
        release = failed_release(host, subprocess.CompletedProcess(agent.args, agent.returncode,
                                                                   out, err), after)
    finally:
        if agent.poll() is None:
            agent.kill()
        start_dockerd_again(host.engine)
    assert release.reason.startswith("build: cannot reach the Docker engine at "
                                     f"{host.engine.base_url}"), release.reason
    assert "gave up after 4 attempt(s)" in release.reason
    retried_with_backoff(host.step_log(release.id, "build"), "docker build")
    # dockerd brings the live containers back itself (restart policy unless-stopped).
    wait_for(lambda: host.serving()[1] == host.hours[before.commit],
             "production's action server after the dockerd restart", timeout=90)
    host.production_is(before.id)
    host.readable()


def test_a_release_that_used_every_secret_over_docker_ssh_shows_none_of_them(
        fault_host: FaultHost) -> None:
    """Issue 13's secrets check on the Docker path, last in the module (its model has
    the spy's component). The spy bot's custom NLU component and action code report
    their environment and command line from every process they run in, the action
    server's inside its container (given `action_server.env` by the engine's API);
    the release used the Rasa token, the registry password (push, pull over SSH)
    and an SSH key passphrase (tests/support/docker_spy.py). Its cost is one
    training run more than the module's other releases."""
    host = fault_host
    spy = spy_release(host)
    print(f"spy release over docker_ssh: {spy.seconds:.0f} s ({spy.steps}), "
          f"{spy.samples} looks at ps")
    assert spy.release is not None and spy.release.status == PROMOTED, (
        spy.release, spy.outputs[0][-3000:])
    with pytest.raises(paramiko.PasswordRequiredException):  # the passphrase was needed
        paramiko.Ed25519Key.from_private_key_file(str(spy.key))
    assert spy.samples > 10 and spy.seen == [], spy.seen
    # Each place the commit's code ran reported, so got pipeline.env / action_server.env:
    # training and the Rasa server on this host, the action server in its container.
    where = {(r["role"], " ".join(r["cmdline"])) for r in spy.records}
    assert any(role == "component-create" and " train " in cmd for role, cmd in where), where
    assert any(role == "component-create" and "--enable-api" in cmd for role, cmd in where)
    assert any(role == "action-server" and "rasa_sdk" in cmd for role, cmd in where), where
    assert any(role == "action-test" for role, _ in where), where
    assert any(item.startswith(f"{DUMP_VARIABLE}=") for item in spy.container_env)
    for record in spy.records:
        for name, value in spy.leaks.items():
            assert value not in json.dumps(record), f"{name}'s value reached {record['role']}"
            assert name not in record["environ"], f"{name} reached {record['role']}"
    for name, value in spy.leaks.items():
        assert not any(value in item for item in spy.container_env), name
        assert not any(value in output for output in spy.outputs), name
    token_file = host.root / "work" / "rasa-server" / "auth-token"  # 0600, the server's own
    assert files_holding(host.root / "work", spy.leaks.values(), skip={token_file}) == []
    host.production_is(spy.release.id)
