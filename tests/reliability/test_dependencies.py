"""Dependencies failing under the real agent: the Rasa server dies before a
promotion, and the disk of the work dir fills up (a real small tmpfs).

Each ends in a failed release (or a clean refusal to write) with a clear
one-line reason, bounded retries, no traceback, and production untouched; the
next start heals what it can (a managed Rasa server is started again on the
production model).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.journal import FAILED, Journal
from tests.support.agent_config import agent_config
from tests.support.bots import deploy_repo
from tests.support.ci import need
from tests.support.deploy_host import Host, assert_consistent
from tests.support.git import git

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(1800)]


def _stop_rasa_server(host: Host) -> None:
    # "PID START_TIME" (the start time tells a reused pid apart)
    pid = int((host.root / "work" / "rasa-server" / "rasa-server.pid").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)  # dies as a crash would, not a clean stop
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError("the Rasa server did not die")


def test_the_rasa_server_down_during_promotion_fails_the_release_untouched(
    host: Host,
) -> None:
    if host.journal().production_release("production") is None:  # run alone: a first release
        host.push_change("first release")
        assert host.agent("once").returncode == 0
    before = assert_consistent(host, "down-before")
    unmanaged = agent_config(host.root / "agent-unmanaged.yml", like=host.config,
                             model={"manage_server": False})
    _stop_rasa_server(host)
    host.push_change("promoted while the Rasa server is down", retrain=False)
    done = host.agent("once", config=unmanaged)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    journal = host.journal()
    try:
        release = journal.last_release()
        assert release is not None and release.status == FAILED
        assert release.reason.startswith("activate_model: model: the Rasa server at "), \
            release.reason
        assert "does not answer (3 attempts)" in release.reason  # bounded retries
        assert journal.production_release("production").id == before  # type: ignore[union-attr]
        # Whatever the release had switched is undone: the action server is
        # switched only when the release's action code differs from production's.
        steps = {s.name: s.status for s in journal.steps(release.id)}
        if steps.get("deploy_actions") == "passed":
            kinds = [e.kind for e in journal.events(release_id=before)]
            assert "action_server.restored" in kinds
    finally:
        journal.close()
    # The next start (a managed server) brings the Rasa server back on production.
    healed = host.agent("once")  # exit 1: the newest commit's release failed
    assert "Traceback" not in healed.stdout + healed.stderr
    assert "starting the Rasa server" in healed.stdout, healed.stdout
    assert assert_consistent(host, "down-after") == before
    journal = host.journal()
    try:
        assert any(e.kind == "rasa_server.restarted" for e in journal.events())
    finally:
        journal.close()


# ------------------------------------------------------------- a full disk


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    need(os.geteuid() == 0, "mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    need(done.returncode == 0, f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill the disk up to `leave` free bytes with one ballast file."""
    ballast = disk / "ballast"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with ballast.open("ab") as out:
        out.write(b"\0" * max(free - leave, 0))
    return ballast


def test_a_full_disk_fails_the_release_clearly_and_the_journal_survives(
    small_disk: Path, tmp_path: Path, rasa_bin: Path
) -> None:
    bare, src = deploy_repo(tmp_path)
    (src / "domain.yml").rename(src / "domain.txt")  # the first commit fails fast
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "no domain yet")
    git(src, "push", "-q", "deploy", "main")
    config = agent_config(tmp_path / "agent.yml", repo=bare, work_dir=small_disk / "work",
                          rasa_command=rasa_bin, model={"manage_server": False})
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false"}

    def once() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(config), "once"],
                              capture_output=True, text=True, env=env, timeout=600)

    first = once()
    assert "Traceback" not in first.stderr and "domain" in first.stdout, first.stdout
    # A commit whose checkout needs 4 MB, on a disk with less left.
    (src / "domain.txt").rename(src / "domain.yml")
    (src / "blob.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "a big file")
    git(src, "push", "-q", "deploy", "main")
    ballast = _fill(small_disk, 6 * 1024 * 1024)  # room to fetch (packed), not to check out
    second = once()
    assert second.returncode == 1 and "Traceback" not in second.stdout + second.stderr
    journal = Journal(small_disk / "work" / "journal.sqlite")
    try:
        release = journal.last_release()
        assert release is not None and release.status == FAILED, (second.stdout, second.stderr)
        assert "No space left on device" in release.reason, release.reason
        assert journal.production_release("production") is None
    finally:
        journal.close()
    # Completely full: the agent can't even write its journal. It says so in one
    # line and exits 1; nothing is half-written.
    (src / "domain.yml").unlink()  # so that the release after this fails fast, untrained
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "while the disk is full")
    git(src, "push", "-q", "deploy", "main")
    ballast.unlink()
    ballast = _fill(small_disk, 0)
    full = once()
    assert full.returncode == 1, full.stdout
    assert "Traceback" not in full.stdout + full.stderr
    message = (full.stdout + full.stderr).strip().splitlines()[-1]
    assert "journal" in message or "No space left" in message or "disk" in message, message
    # Space again: the journal reads back, and the agent goes on.
    ballast.unlink()
    status = subprocess.run([sys.executable, "-m", "agent.cli", "-c", str(config), "status"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    journal = Journal(small_disk / "work" / "journal.sqlite")
    try:
        assert journal._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert all(r.status != "running" for r in journal.releases()) or not journal.in_flight()
    finally:
        journal.close()
    after = once()
    assert "Traceback" not in after.stdout + after.stderr
    journal = Journal(small_disk / "work" / "journal.sqlite")
    try:
        last = journal.last_release()
        assert last is not None and last.status == FAILED
        assert last.reason.startswith("validate:") and "domain" in last.reason, last.reason
        assert not [r for r in journal.in_flight() if r.status == "running"]
        assert journal.lock_holder("deploy") is None
    finally:
        journal.close()
