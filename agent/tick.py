"""One iteration of the agent: the newest commit becomes a release, run to its end.

`tick()` is the whole behaviour; the daemon (`agent run`) only decides when to
call it. A tick:
1. recovers from a crash: a release left `running` by a dead agent is marked
   interrupted (which frees the locks it held);
2. takes the pipeline lock (one release pipeline at a time), and, under the
   deploy lock, puts what serves back to what the journal says is in
   production (`agent.switch.restore`), so nothing stays half-promoted;
3. fetches the branch; if its newest commit has no release yet (or its release
   was interrupted and may be retried), records the commits it supersedes as
   skipped and creates the release;
4. runs the release (`agent.release.run_release`), which takes the deploy lock
   only for its switch. When a newer commit supersedes it in its gates, the
   tick goes back to 3 and releases the branch's newest commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from agent import placement, switch
from agent.deploy_lock import deploy_lock, every_deploy_lock
from agent.journal import INTERRUPTED, SKIPPED, SUPERSEDED, Journal, LockHeld, Release
from agent.release import run_release
from agent.runtime import PIPELINE_LOCK, Agent
from agent.supersede import Guard
from hooks.core.errors import FatalError

MAX_ATTEMPTS = 2  # an interrupted release is retried once, then left failed


@dataclass(frozen=True)
class TickResult:
    outcome: str  # idle | released | busy | error
    release_id: int | None = None
    status: str | None = None
    message: str = ""
    skipped: tuple[int, ...] = field(default=())
    superseded: tuple[int, ...] = field(default=())  # released, then abandoned for newer


def recover_orphans(agent: Agent) -> list[int]:
    """Mark releases orphaned by a crashed agent as interrupted (freeing its lock)."""
    orphans = agent.journal.orphaned_releases()
    for release in orphans:
        agent.journal.mark_interrupted(
            release.id, f"the agent process {release.owner} stopped mid-release"
        )
        agent.progress.info(f"release {release.id} was interrupted by a crash of its agent; "
                            "marked interrupted")
    return [r.id for r in orphans]


def _attempts(journal: Journal, release: Release) -> int:
    count, current = 1, release
    while current.retry_of is not None:
        count += 1
        current = journal.release(current.retry_of)
    return count


def tick(agent: Agent, guard: Guard | None = None) -> TickResult:
    """Release the branch's newest commit; `guard` lets a newer one supersede it."""
    journal = agent.journal
    # Recovery comes first: it also frees the locks a crashed agent held.
    recover_orphans(agent)
    try:
        journal.acquire_lock(PIPELINE_LOCK, "release pipeline")
    except LockHeld as exc:
        return TickResult("busy", message=str(exc))
    try:
        try:
            # No promote of any environment is mid-switch, so a running step is a
            # crashed one.
            with every_deploy_lock(agent, "repair of stray steps"):
                journal.interrupt_stray_steps("the agent process stopped during this switch")
            # Every tick (not only after a crash of a release: also after a crashed
            # `agent promote`) puts what serves back to what the journal says, each
            # environment under its own lock (a slow restore holds up no other).
            for environment in agent.config.environments:
                with deploy_lock(agent, "restore production", environment=environment.name):
                    switch.restore(agent, environment.name)
        except LockHeld as exc:  # stale: `agent unlock`
            return TickResult("busy", message=str(exc))
        # A release whose way through the environments a crash cut short goes on.
        for line in placement.carry_on(agent):
            agent.progress.info(line)
        skipped: list[int] = []
        superseded: list[int] = []
        while True:
            result = _release_head(agent, guard, skipped)
            if result.status != SUPERSEDED or result.release_id is None:
                break
            superseded.append(result.release_id)  # the newer commit is released next
            if agent.stop_requested:
                break
        return replace(result, skipped=tuple(skipped), superseded=tuple(superseded))
    finally:
        journal.release_lock(PIPELINE_LOCK)


def _release_head(agent: Agent, guard: Guard | None, skipped: list[int]) -> TickResult:
    """Fetch; release the newest commit unless it has a release already."""
    journal = agent.journal
    try:
        head = agent.mirror.fetch()
    except FatalError as exc:
        journal.event("fetch.failed", detail=str(exc))
        agent.progress.info(str(exc))
        return TickResult("error", message=str(exc))

    retry_of: int | None = None
    existing = [r for r in journal.releases_of_commit(head) if r.status != SKIPPED]
    # A superseded commit that is the newest again (history rewound) is released anew.
    if existing and existing[-1].status != SUPERSEDED:
        latest = existing[-1]
        if latest.status != INTERRUPTED:
            return TickResult("idle", latest.id, latest.status,
                              f"{head[:8]} is already release {latest.id} ({latest.status})")
        if _attempts(journal, latest) >= MAX_ATTEMPTS:
            journal.finish_release(latest.id, INTERRUPTED,
                                   latest.reason + "; not retried again")
            journal.event("release.given_up", latest.id,
                          detail=f"interrupted {MAX_ATTEMPTS} times")
            return TickResult("idle", latest.id, INTERRUPTED,
                              f"release {latest.id} was interrupted {MAX_ATTEMPTS} times; "
                              "push a new commit or run `agent promote`")
        retry_of = latest.id

    env = agent.environment.name
    last = journal.last_release()
    jumped = []
    for sha in agent.mirror.superseded(last.commit if last else None, head):
        if not journal.releases_of_commit(sha):
            info = agent.mirror.commit(sha)
            jumped.append(journal.record_skipped(
                environment=env, commit=sha, branch=agent.config.branch,
                author=info.author, message=info.message, superseded_by=head).id)
    if jumped:
        agent.progress.info(f"skipped {len(jumped)} superseded commit(s); "
                            f"releasing {head[:8]}")
    skipped.extend(jumped)
    info = agent.mirror.commit(head)
    release = journal.new_release(environment=env, commit=head, branch=agent.config.branch,
                                  author=info.author, message=info.message,
                                  retry_of=retry_of)
    status = run_release(agent, release, guard)
    done = journal.release(release.id)
    return TickResult("released", release.id, status, done.reason)
