"""The newest commit wins, and a rollback never waits for a build: the fast layer.

Real git (a bare repo the tests push to), a real journal and real processes for
the lock owners; in-memory targets (`tests.support.memory_targets`) and made-up
gates instead of Rasa. The end-to-end proofs with a real daemon and a real
`rasa train` are in tests/reliability/test_supersede_live.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

from agent import pipeline, supersede
from agent.cli import main
from agent.journal import (
    INTERRUPTED,
    PROMOTED,
    STAGED,
    SUPERSEDED,
    Journal,
    LockHeld,
    Release,
    StepStatus,
)
from agent.promote import rollback
from agent.release import run_release
from agent.repo import Mirror
from agent.steps import Outcome, StepContext
from agent.supersede import SIGNAL, Guard
from agent.tick import tick
from hooks.core.child_env import child_env
from hooks.core.process import run
from tests.support.git import git
from tests.support.memory_targets import World, memory_world

HOLD = ("import sys, time; from pathlib import Path; from agent.journal import Journal; "
        "j = Journal(Path(sys.argv[1])); j.acquire_lock('deploy', 'a switch in progress'); "
        "print('held', flush=True); time.sleep(float(sys.argv[2])); j.release_lock('deploy')")


@dataclass
class Gate:
    """A made-up gate: `NAME`, `LONG` and `run`, like a step module."""

    NAME: str
    LONG: bool
    action: Callable[[StepContext], None]

    def run(self, ctx: StepContext) -> Outcome:
        self.action(ctx)
        return Outcome(f"{self.NAME} passed")


def holder(journal: Journal, seconds: float) -> subprocess.Popen[str]:
    """Another live process that holds the deploy lock for `seconds`."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(journal.path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def push(world: World, text: str) -> str:
    """Commit `text` in the bot's source and push it to the bare repo the agent fetches."""
    src = world.root / "src"
    if not src.exists():
        git(world.root, "init", "-q", "--bare", "-b", "main", str(world.root / "bot.git"))
        git(world.root, "init", "-q", "-b", "main", str(src))
        git(src, "config", "commit.gpgsign", "false")
        git(src, "remote", "add", "origin", str(world.root / "bot.git"))
    (src / "NOTES.md").write_text(text + "\n", encoding="utf-8")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", text)
    git(src, "push", "-q", "origin", "main")
    return git(src, "rev-parse", "HEAD")


def model(ctx: StepContext) -> None:
    """What train leaves for the switch: a kept model (in memory: its id in a file)."""
    path = ctx.config.work_dir / "models" / f"{ctx.commit[:8]}.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"model-{ctx.commit[:8]}", encoding="utf-8")
    ctx.journal.update_release(ctx.release_id, model_path=str(path),
                               model_id=f"model-{ctx.commit[:8]}", required_actions=[])


def one_live_one_queued(tmp_path: Path, gates: list[Gate], letter: str) -> tuple[World, Release]:
    """A world serving release 1 ("model-1"), and a queued release of commit
    `letter` * 40 whose one gate trains: what the deploy-lock tests start from."""
    world = memory_world(tmp_path)
    world.release(model_id="model-1", calls=set(), code="code-1", status=PROMOTED, live=True)
    gates.append(Gate("train", True, model))
    queued = world.journal.new_release(environment="production", commit=letter * 40,
                                       branch="main", author="t", message="new")
    return world, queued


@pytest.fixture()
def gates(monkeypatch: pytest.MonkeyPatch) -> list[Gate]:
    """The gates every release of the test runs; the test fills the list."""
    chosen: list[Gate] = []
    monkeypatch.setattr(pipeline, "gates", lambda config: tuple(chosen))
    return chosen


class LiveGuard(NamedTuple):
    world: World
    first: str  # the commit pushed before the tick: the release a push supersedes
    pushed: threading.Event  # what the watcher sets on a push
    guard: Guard


@pytest.fixture()
def live_guard(tmp_path: Path) -> Iterator[LiveGuard]:
    """A world with one commit pushed and its guard thread running, as under
    `agent watch`; the guard is stopped, and SIGUSR1 handed back, after the test."""
    before = signal.getsignal(SIGNAL)
    world = memory_world(tmp_path)
    first = push(world, "one")
    pushed = threading.Event()
    guard = Guard(world.agent, local_repo=tmp_path / "bot.git", interval=60, pushed=pushed)
    guard.start()
    yield LiveGuard(world, first, pushed, guard)
    guard.stop()
    signal.signal(SIGNAL, before)


# ------------------------------------------------------------------------- locks


def test_the_deploy_lock_waits_for_a_live_owner_then_is_taken(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    proc = holder(journal, 1.5)
    said: list[str] = []
    started = time.monotonic()
    journal.wait_for_lock("deploy", "rollback", timeout=30, say=said.append)
    waited = time.monotonic() - started
    proc.wait(timeout=10)
    assert 1.0 < waited < 10, waited
    assert len(said) == 1, said  # said once, not at every poll
    assert said[0].startswith("waiting for the deploy lock: a switch in progress (")
    assert journal.lock_holder("deploy")["purpose"] == "rollback"  # type: ignore[index]


def test_a_stale_deploy_lock_is_reported_at_once_never_waited_for(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    script = ("import sys; from pathlib import Path; from agent.journal import Journal; "
              "Journal(Path(sys.argv[1])).acquire_lock('deploy', 'a crashed promote')")
    subprocess.run([sys.executable, "-c", script, str(journal.path)], check=True)
    started = time.monotonic()
    with pytest.raises(LockHeld, match="stale lock"):
        journal.wait_for_lock("deploy", "rollback", timeout=60, say=lambda line: None)
    assert time.monotonic() - started < 2


def test_the_wait_for_the_deploy_lock_is_bounded(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    proc = holder(journal, 60)
    try:
        started = time.monotonic()
        with pytest.raises(LockHeld, match="Waited 1 s for it"):
            journal.wait_for_lock("deploy", "rollback", timeout=1, say=lambda line: None)
        assert 0.9 < time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()


def test_a_rollback_runs_while_a_release_is_in_its_gates_and_the_release_then_stages(
    tmp_path: Path, gates: list[Gate],
) -> None:
    world = memory_world(tmp_path)
    first = world.release(model_id="model-1", calls=set(), code="code-1", status=PROMOTED)
    second = world.release(model_id="model-2", calls=set(), code="code-2", status=PROMOTED,
                           live=True)
    free: list[bool] = []

    def rollback_meanwhile(ctx: StepContext) -> None:
        # Another process can take the deploy lock while this release is in its gates.
        script = ("import sys; from pathlib import Path; from agent.journal import Journal; "
                  "j = Journal(Path(sys.argv[1])); j.acquire_lock('deploy', 'probe'); "
                  "j.release_lock('deploy')")
        free.append(subprocess.run([sys.executable, "-c", script,
                                    str(ctx.journal.path)]).returncode == 0)
        rollback(world.agent, "production", None, "incident")

    gates.extend([Gate("train", True, model), Gate("test", True, rollback_meanwhile)])
    push(world, "three")
    result = tick(world.agent)  # the tick, as `agent once` runs it
    assert free == [True]
    assert result.status == STAGED
    assert "paused" in world.journal.release(result.release_id or 0).reason
    # The rollback's switch happened; the release switched nothing afterwards.
    assert world.serving.live_model == "model-1"
    assert world.journal.production_release("production").id == first  # type: ignore[union-attr]
    assert second != first
    kinds = [e.kind for e in world.journal.events()]
    assert "production.rolled_back" in kinds and "release.staged" in kinds


def test_a_release_waits_for_a_switch_in_progress_and_switches_from_what_it_left(
    tmp_path: Path, gates: list[Gate],
) -> None:
    world, queued = one_live_one_queued(tmp_path, gates, "d")
    proc = holder(world.journal, 1.0)
    started = time.monotonic()
    assert run_release(world.agent, queued) == PROMOTED
    assert time.monotonic() - started > 0.8  # it waited for the other switch
    proc.wait(timeout=10)
    assert world.serving.live_model == f"model-{'d' * 8}"
    assert world.journal.lock_holder("deploy") is None


def test_sigterm_while_a_release_waits_for_the_deploy_lock_interrupts_it_at_once(
    tmp_path: Path, gates: list[Gate],
) -> None:
    """`agent stop` is not kept waiting for another process's switch (up to
    switch_wait, minutes): the waiting release switched nothing, so it ends
    `interrupted` (retried at the next start) and its cleanup is skipped."""
    world, queued = one_live_one_queued(tmp_path, gates, "e")
    proc = holder(world.journal, 120)
    stop = threading.Timer(0.5, lambda: setattr(world.agent, "stop_requested", True))
    try:
        started = time.monotonic()
        stop.start()
        assert run_release(world.agent, queued) == INTERRUPTED
        assert time.monotonic() - started < 5
        assert proc.poll() is None  # the other switch still runs: it was not waited for
    finally:
        stop.cancel()
        proc.kill()
        proc.wait()
    assert world.journal.release(queued.id).reason == "the agent was stopped during the release"
    assert world.serving.live_model == "model-1"
    assert world.journal.production_release("production").model_id == "model-1"  # type: ignore[union-attr]


# --------------------------------------------------------------------- supersede


def test_agent_once_supersedes_a_release_between_two_gates_and_releases_the_newest(
    tmp_path: Path, gates: list[Gate],
) -> None:
    world = memory_world(tmp_path)
    first = push(world, "one")
    newer: list[str] = []
    gates.extend([
        Gate("checkout", False, lambda ctx: newer.append(push(world, "two"))
             if ctx.commit == first else None),
        Gate("train", True, model),
    ])
    guard = Guard(world.agent, local_repo=tmp_path / "bot.git", interval=60)
    result = tick(world.agent, guard)
    journal = world.journal
    assert result.status == PROMOTED and len(result.superseded) == 1
    old = journal.release(result.superseded[0])
    assert old.commit == first and old.status == SUPERSEDED
    assert old.reason == f"superseded by {newer[0][:8]}, a newer commit of the branch " \
                         "(before train)"
    assert journal.release(result.release_id or 0).commit == newer[0]
    assert journal.production_release("production").commit == newer[0]  # type: ignore[union-attr]
    assert [s.name for s in journal.steps(old.id)] == ["checkout"]  # train never started
    event = next(e for e in journal.events() if e.kind == "release.superseded")
    assert event.release_id == old.id and newer[0][:8] in event.detail
    assert journal.lock_holder("deploy") is None and journal.lock_holder("pipeline") is None


def test_a_push_abandons_a_long_gate_and_kills_its_child_process(
    gates: list[Gate], live_guard: LiveGuard,
) -> None:
    world, first, pushed, guard = live_guard
    children: list[float] = []

    def train(ctx: StepContext) -> None:
        if ctx.commit == first:
            # What the watcher does on a push: set `pushed` (here, from a thread).
            threading.Timer(0.5, lambda: (push(world, "two"), pushed.set())).start()
            started = time.monotonic()
            try:
                run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=120)
            finally:
                children.append(time.monotonic() - started)
        model(ctx)

    gates.extend([Gate("checkout", False, lambda ctx: None), Gate("train", True, train)])
    result = tick(world.agent, guard)
    journal = world.journal
    assert len(result.superseded) == 1 and result.status == PROMOTED
    assert children and children[0] < 10, children  # the sleeping child was stopped
    old = journal.release(result.superseded[0])
    assert old.status == SUPERSEDED and old.reason.endswith("(during train)")
    train_row = next(s for s in journal.steps(old.id) if s.name == "train")
    assert train_row.status == StepStatus.ABANDONED
    assert train_row.summary.startswith("abandoned: superseded by ")
    assert journal.production_release("production").commit != first  # type: ignore[union-attr]


def test_a_push_during_the_switch_never_abandons_it(
    gates: list[Gate], live_guard: LiveGuard,
) -> None:
    world, first, pushed, guard = live_guard
    activate = world.model.activate
    later: list[str] = []

    def slow_activate(ref: object, log: Callable[[str], None]) -> None:
        # As if the switch were a long step waiting for its child: only the
        # guard, disarmed once the gates passed, keeps it from being abandoned.
        world.agent.in_long_step = True
        later.append(push(world, "two"))
        pushed.set()
        # The guard thread has time to look (and must not fire).
        run([sys.executable, "-c", "import time; time.sleep(1.5)"], timeout=60)
        activate(ref, log)  # type: ignore[arg-type]

    world.model.activate = slow_activate  # type: ignore[method-assign]
    gates.append(Gate("train", True, model))
    result = tick(world.agent, guard)
    journal = world.journal
    assert result.status == PROMOTED and result.superseded == ()
    assert journal.release(result.release_id or 0).commit == first
    assert journal.production_release("production").commit == first  # type: ignore[union-attr]
    assert later and not journal.releases_of_commit(later[0])  # the next tick's


def test_a_signal_inside_a_journal_transaction_waits_for_the_step_s_next_child(
    gates: list[Gate], live_guard: LiveGuard,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Raised inside `BEGIN IMMEDIATE ... COMMIT`, Superseded would leave the
    # journal in its transaction (its write lock held: every later write fails,
    # other processes find it busy). It must wait for the step's next child.
    world, first, pushed, guard = live_guard
    noticed = threading.Event()
    info = world.agent.progress.info

    def said(message: str) -> None:
        if "arrived while" in message:
            noticed.set()
        info(message)

    monkeypatch.setattr(world.agent.progress, "info", said)
    monkeypatch.setenv("RASA_GITOPS_PROBE", "outside")
    reached: list[str] = []
    children: list[float] = []

    def train(ctx: StepContext) -> None:
        if ctx.commit == first:
            push(world, "two")
            pushed.set()
            with ctx.journal.transaction() as tx:
                assert noticed.wait(30)  # the guard thread recorded the newer commit
                main = threading.main_thread().ident
                assert main is not None
                signal.pthread_kill(main, SIGNAL)  # surely inside the transaction
                time.sleep(1.2)  # and the thread's own signals, every 0.5 s
                tx.event("test.inside", ctx.release_id, detail="written in the transaction")
            reached.append("after the transaction")
            started = time.monotonic()
            try:
                run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=120)
            finally:
                children.append(time.monotonic() - started)
            reached.append("after the child")
        model(ctx)

    gates.append(Gate("train", True, train))
    result = tick(world.agent, guard)
    journal = world.journal
    assert reached == ["after the transaction"]  # abandoned at its child, not before
    assert children and children[0] < 10, children  # at once, the request was recorded
    assert result.status == PROMOTED and len(result.superseded) == 1
    old = journal.release(result.superseded[0])
    assert old.status == SUPERSEDED and old.reason.endswith("(during train)")
    assert [e.kind for e in journal.events() if e.release_id == old.id].count("test.inside") == 1
    # Still writable, by this process and by another one.
    journal.event("test.after", detail="the journal is writable")
    assert subprocess.run([sys.executable, "-c", HOLD, str(journal.path), "0"],
                          capture_output=True, timeout=60).returncode == 0
    assert journal.lock_holder("deploy") is None
    assert child_env(None).get("RASA_GITOPS_PROBE") == "outside"  # not the commit's env


def test_the_guard_looks_at_a_remote_with_ls_remote(tmp_path: Path) -> None:
    world = memory_world(tmp_path)
    first = push(world, "one")
    world.agent.mirror.fetch()
    # `repo:` as a remote; interval 0: no answer is kept, every check asks
    guard = Guard(world.agent, local_repo=None, interval=0)
    guard.arm(first)
    guard.check()  # the head is the release's commit: nothing happens
    second = push(world, "two")
    with pytest.raises(BaseException, match=f"superseded by {second[:8]}"):
        guard.check()
    guard.disarm()
    guard.check()  # disarmed: past the gates, nothing is superseded


def test_a_remote_is_asked_once_per_poll_interval_and_again_for_each_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = memory_world(tmp_path)
    first = push(world, "one")
    world.agent.mirror.fetch()
    asked: list[str | None] = []
    real = supersede.branch_head

    def counted(mirror: Mirror, local_repo: Path | None) -> str | None:
        asked.append(real(mirror, local_repo))
        return asked[-1]

    monkeypatch.setattr(supersede, "branch_head", counted)
    guard = Guard(world.agent, local_repo=None, interval=60)
    guard.arm(first)
    for _gate in range(5):
        guard.check()  # `agent once` looks before every gate: one `ls-remote`
    assert asked == [first]
    second = push(world, "two")
    guard.check()  # within the poll interval: the answer kept
    assert asked == [first]
    third = push(world, "three")
    guard.arm(second)  # the next release: a kept answer may be older than its fetch
    with pytest.raises(BaseException, match=f"superseded by {third[:8]}"):
        guard.check()
    assert asked == [first, third]


def test_a_stale_pipeline_lock_makes_the_tick_busy_until_agent_unlock(
    tmp_path: Path, gates: list[Gate], capsys: pytest.CaptureFixture[str],
) -> None:
    world = memory_world(tmp_path)
    push(world, "one")
    script = ("import sys; from pathlib import Path; from agent.journal import Journal; "
              "Journal(Path(sys.argv[1])).acquire_lock('pipeline', 'release pipeline')")
    subprocess.run([sys.executable, "-c", script, str(world.journal.path)], check=True)
    busy = tick(world.agent)
    assert busy.outcome == "busy" and "stale lock" in busy.message
    assert main(["-c", str(tmp_path / "agent.yml"), "unlock"]) == 0
    assert "released the pipeline lock" in capsys.readouterr().out
    gates.append(Gate("train", True, model))
    assert tick(world.agent).status == PROMOTED
