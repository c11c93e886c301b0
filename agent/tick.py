"""One iteration of the agent: the newest commit becomes a release, run to its end.

`tick()` is the whole behaviour; the daemon (`agent run`) only decides when to
call it. A tick:
1. recovers from a crash: a release left `running` by a dead agent is marked
   interrupted, and the live model is put back to what the journal says is in
   production (so nothing stays half-promoted);
2. fetches the branch; if its newest commit has no release yet (or its release
   was interrupted and may be retried), records the commits it supersedes as
   skipped and creates the release;
3. runs the gates (checkout, validate, train, test, action tests), then the
   deploy switches in the order `agent.order` gives, then moves the production
   pointer, all under the deploy lock.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from agent import faults, order, reconcile
from agent.config import AgentConfig, Environment
from agent.journal import (
    FAILED,
    INTERRUPTED,
    PROMOTED,
    RUNNING,
    SKIPPED,
    STAGED,
    Journal,
    LockHeld,
    Release,
)
from agent.progress import Progress
from agent.repo import Mirror
from agent.secrets import Redactor
from agent.steps import (
    ABANDONED,
    Abandoned,
    StepContext,
    StepFailed,
    action_tests,
    activate_model,
    build,
    checkout,
    deploy_actions,
    nlu_gate,
    push,
    smoke,
    test,
    train,
    validate,
)
from agent.targets.base import ActionServerDeployment, DeployError
from agent.targets.factory import Targets, build_targets, rasa_argv
from hooks.core.errors import FatalError

GATES: tuple[ModuleType, ...] = (checkout, validate, train, test, action_tests, nlu_gate)
# Docker action-server targets also build and push an image, after the gates.
IMAGE_STEPS: tuple[ModuleType, ...] = (build, push)
SWITCHES = {order.ACTION_SERVER: deploy_actions, order.MODEL: activate_model}
MAX_ATTEMPTS = 2  # an interrupted release is retried once, then left failed
DEPLOY_LOCK = "deploy"


class ReleaseStopped(Exception):
    def __init__(self, step: str, summary: str) -> None:
        super().__init__(f"{step}: {summary}")
        self.step = step
        self.summary = summary


@dataclass
class Agent:
    config: AgentConfig
    journal: Journal
    mirror: Mirror
    targets: Targets
    progress: Progress
    stop_requested: bool = False
    in_long_step: bool = False

    @classmethod
    def open(cls, config: AgentConfig, progress: Progress | None = None) -> Agent:
        redact = Redactor(secret.reveal() for secret in config.secrets.values())
        progress = progress or Progress(redact=redact)
        progress.redact = redact
        targets = build_targets(config)
        token = getattr(targets.model, "_token", None)
        if token is not None:
            redact.add(token.reveal())
        work = config.work_dir
        work.mkdir(parents=True, exist_ok=True)
        journal = Journal(work / "journal.sqlite")
        mirror = Mirror(config.repo, config.branch, work / "repo.git")
        return cls(config, journal, mirror, targets, progress)

    @property
    def environment(self) -> Environment:
        # Releases flow into the first environment; later ones are promoted to.
        return self.config.environments[0]

    def close(self) -> None:
        self.journal.close()


@dataclass(frozen=True)
class TickResult:
    outcome: str  # idle | released | busy | error
    release_id: int | None = None
    status: str | None = None
    message: str = ""
    skipped: tuple[int, ...] = field(default=())


# ------------------------------------------------------------------ recovery


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


def restore_production(agent: Agent, environment: str) -> None:
    """Make the live model what the journal says is in production."""
    production = agent.journal.production_release(environment)
    if production is None or not production.model_path or not production.model_id:
        return
    model = agent.targets.model
    try:
        live = model.live_model_id()
    except DeployError:
        return  # the server is down; when it starts it loads the production link
    if live == production.model_id:
        return
    try:
        ref = model.upload(str(production.id), Path(production.model_path), agent.progress.info)
        model.activate(ref, agent.progress.info)
    except DeployError as exc:
        agent.journal.event("production.restore_failed", production.id, environment,
                            detail=str(exc))
        agent.progress.info(f"could not restore production model: {exc}")
        return
    agent.journal.event("production.restored", production.id, environment,
                        detail=f"live model was {live}")
    agent.progress.info(f"restored release {production.id}'s model as the live one")


def _attempts(journal: Journal, release: Release) -> int:
    count, current = 1, release
    while current.retry_of is not None:
        count += 1
        current = journal.release(current.retry_of)
    return count


# ---------------------------------------------------------------------- tick


def tick(agent: Agent) -> TickResult:
    journal = agent.journal
    # Recovery comes first: it also frees the lock a crashed agent held.
    recover_orphans(agent)
    try:
        journal.acquire_lock(DEPLOY_LOCK, "release pipeline")
    except LockHeld as exc:
        return TickResult("busy", message=str(exc))
    try:
        # Every tick (not only after a crash of a release: also after a crashed
        # `agent promote`) puts what serves back to what the journal says.
        reconcile.production(agent, agent.environment.name)
        try:
            head = agent.mirror.fetch()
        except FatalError as exc:
            journal.event("fetch.failed", detail=str(exc))
            agent.progress.info(str(exc))
            return TickResult("error", message=str(exc))

        retry_of: int | None = None
        existing = [r for r in journal.releases_of_commit(head) if r.status != SKIPPED]
        if existing:
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
        skipped = []
        last = journal.last_release()
        for sha in agent.mirror.superseded(last.commit if last else None, head):
            if not journal.releases_of_commit(sha):
                info = agent.mirror.commit(sha)
                skipped.append(journal.record_skipped(
                    environment=env, commit=sha, branch=agent.config.branch,
                    author=info.author, message=info.message, superseded_by=head).id)
        if skipped:
            agent.progress.info(f"skipped {len(skipped)} superseded commit(s); "
                                f"releasing {head[:8]}")
        info = agent.mirror.commit(head)
        release = journal.new_release(environment=env, commit=head, branch=agent.config.branch,
                                      author=info.author, message=info.message,
                                      retry_of=retry_of)
        status = run_release(agent, release)
        done = journal.release(release.id)
        return TickResult("released", release.id, status, done.reason, tuple(skipped))
    finally:
        journal.release_lock(DEPLOY_LOCK)


# ------------------------------------------------------------------- release


def run_step(agent: Agent, ctx: StepContext, step: ModuleType) -> None:
    journal, progress = agent.journal, agent.progress
    name: str = step.NAME
    if agent.stop_requested and step.LONG:
        raise Abandoned()  # a deploy switch, once begun, is finished instead
    lines: list[str] = []
    noise = NoiseFilter()

    def log(line: str) -> None:
        if noise.drop(line):
            return
        clean = progress.redact(line)
        lines.append(clean)
        progress.line(clean)

    ctx.log = log
    journal.start_step(ctx.release_id, name)
    faults.kill_point(f"step.{name}.start")
    progress.step_started(ctx.release_id, name)
    agent.in_long_step = bool(step.LONG)
    failure: str | None = None
    status, summary = FAILED, ""
    try:
        outcome = step.run(ctx)
        status, summary = outcome.status, outcome.summary
    except StepFailed as exc:
        failure = exc.summary
    except FatalError as exc:
        failure = str(exc)
    except Abandoned:
        agent.in_long_step = False
        _finish_step(agent, ctx, name, ABANDONED, "abandoned: the agent was asked to stop",
                     lines)
        raise
    except Exception as exc:  # a bug must not leave the release `running`
        failure = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        agent.in_long_step = False
    if failure is not None:
        summary = progress.redact(failure)
        _finish_step(agent, ctx, name, FAILED, summary, lines)
        raise ReleaseStopped(name, summary)
    _finish_step(agent, ctx, name, status, summary, lines)
    faults.kill_point(f"step.{name}.end")


class NoiseFilter:
    """Drops the Python warnings Rasa's dependencies print on every start-up
    (a `file.py:N: SomeWarning: ...` line and the source line under it), so
    that logs and journal excerpts keep what matters."""

    WARNING = re.compile(r"^\S.*\.py:\d+: \w*(Warning|Deprecated)\w*:")
    KNOWN = ("Implementing implicit namespace packages", "declare_namespace(pkg)")

    def __init__(self) -> None:
        self._after_warning = False

    def drop(self, line: str) -> bool:
        if self.WARNING.search(line):
            self._after_warning = True
            return True
        if self._after_warning and line[:1].isspace():
            return True
        self._after_warning = False
        return any(known in line for known in self.KNOWN)


def _finish_step(agent: Agent, ctx: StepContext, name: str, status: str, summary: str,
                 lines: list[str]) -> None:
    text = "\n".join(lines)
    log_dir = agent.config.work_dir / "logs" / f"release-{ctx.release_id}"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{name}.log").write_text(text + "\n", encoding="utf-8")
    except OSError as exc:  # a full disk must not hide the step's verdict
        text += f"\n(could not write the full log: {exc.strerror})"
    agent.journal.finish_step(ctx.release_id, name, status, summary, text)
    step = next(s for s in agent.journal.steps(ctx.release_id) if s.name == name)
    agent.progress.step_finished(ctx.release_id, name, status, step.duration or 0.0, summary)


def promotion_decision(agent: Agent, release: Release, production: Release | None) -> str | None:
    """Why the release waits (`staged`) instead of going live; None: promote now."""
    env = agent.environment
    pointer = agent.journal.production(env.name)
    if pointer is not None and pointer.paused:
        return f"auto-promotion of {env.name} is paused ({pointer.paused_reason}); " \
               "`agent resume` or `agent promote`"
    if env.promote == "manual":
        return f"{env.name} is promoted manually; `agent promote {release.id}`"
    if env.promote == "auto_unless_action_code" and production is not None and (
        production.action_code_fingerprint != release.action_code_fingerprint
    ):
        return (f"the release changes action code and {env.name} auto-promotes only "
                f"without such changes; `agent promote {release.id}`")
    return None


def deploy_plan(agent: Agent, release: Release, production: Release | None) -> order.Plan:
    live_server = agent.targets.action_server.live()
    served = live_server.served_actions if live_server else frozenset()
    new_served: frozenset[str] | None = frozenset(release.required_actions)
    if live_server is not None:
        try:
            live_release = agent.journal.release(int(live_server.release_id))
            if live_release.action_code_fingerprint == release.action_code_fingerprint:
                new_served = None
        except (ValueError, FatalError):
            pass
    model_actions = frozenset(production.required_actions) if production else frozenset()
    return order.plan(order.LiveState(model_actions, served),
                      frozenset(release.required_actions), new_served)


def run_release(agent: Agent, release: Release) -> str:
    journal = agent.journal
    env = agent.environment.name
    journal.start_release(release.id)
    production = journal.production_release(env)
    ctx = StepContext(
        config=agent.config, journal=journal, mirror=agent.mirror, targets=agent.targets,
        release_id=release.id, commit=release.commit, rasa_argv=rasa_argv(agent.config),
        log=agent.progress.line, production=production,
    )
    agent.progress.info(f"release {release.id}: {release.short} {release.message!r} "
                        f"by {release.author}")
    try:
        for step in (*GATES, *(IMAGE_STEPS if build.uses_images(ctx.config) else ())):
            run_step(agent, ctx, step)
        current = journal.release(release.id)
        waiting = promotion_decision(agent, current, production)
        if waiting is not None:
            journal.finish_release(release.id, STAGED, waiting)
            agent.progress.info(f"release {release.id} staged: {waiting}")
            return STAGED
        try:
            plan = deploy_plan(agent, current, production)
        except order.NoSafeOrder as exc:
            journal.start_step(release.id, "order")
            journal.finish_step(release.id, "order", FAILED, str(exc), "")
            raise ReleaseStopped("order", str(exc)) from None
        journal.event("release.order", release.id, env, detail=" then ".join(plan.switches)
                      + f" ({plan.why})")
        for switch in plan.switches:
            run_step(agent, ctx, SWITCHES[switch])
        smoke_failure = run_smoke(agent, ctx)
        faults.kill_point("release.promoting")
        journal.finish_release(release.id, PROMOTED, smoke_failure, promote_environment=env)
        agent.progress.info(f"release {release.id} ({release.short}) is in {env}")
        return PROMOTED
    except ReleaseStopped as stop:
        _undo_switches(agent, ctx, production)
        journal.finish_release(release.id, FAILED, f"{stop.step}: {stop.summary}")
        agent.progress.info(f"release {release.id} failed at {stop.step}; "
                            f"{env} is unchanged")
        return FAILED
    except Abandoned:
        journal.finish_release(release.id, INTERRUPTED,
                               "the agent was stopped during the release")
        agent.progress.info(f"release {release.id} abandoned; it is retried at the next start")
        return INTERRUPTED
    finally:
        cleanup(agent)


def run_smoke(agent: Agent, ctx: StepContext) -> str:
    """The post-switch smoke test. A failure rolls back (ReleaseStopped) unless
    `smoke.rollback` is off; then it returns the failure to keep on record."""
    try:
        run_step(agent, ctx, smoke)
    except ReleaseStopped as stop:
        if agent.config["smoke.rollback"]:
            agent.journal.event("release.rolled_back", ctx.release_id,
                                agent.environment.name, detail=stop.summary)
            raise
        agent.journal.event("smoke.failed_kept", ctx.release_id, agent.environment.name,
                            detail=stop.summary)
        return f"smoke test failed (kept: smoke.rollback is off): {stop.summary}"
    return ""


def _undo_switches(agent: Agent, ctx: StepContext, production: Release | None) -> None:
    """A failed deploy stage puts back whatever it had switched."""
    if production is None:
        return
    if ctx.notes.get("model_switched"):
        restore_production(agent, agent.environment.name)
    server = production.action_server
    if ctx.notes.get("action_server_switched") and server:
        deployment = ActionServerDeployment(
            str(production.id), str(server.get("url", "")),
            frozenset(server.get("served_actions", [])), dict(server.get("handle", {})),
        )
        try:
            agent.targets.action_server.reactivate(deployment, agent.progress.info)
            agent.journal.event("action_server.restored", production.id)
        except DeployError as exc:
            agent.journal.event("action_server.restore_failed", production.id,
                                detail=str(exc))


def cleanup(agent: Agent) -> None:
    """Keep the worktrees and models of recent, production and live releases only."""
    keep = int(agent.config["keep_releases"])
    journal = agent.journal
    recent = [r for r in journal.releases(limit=500) if r.status != SKIPPED]
    kept: set[int] = {r.id for r in recent[:keep]}
    kept |= {r.id for r in recent if r.status in {RUNNING, STAGED}}
    kept |= set([r.id for r in recent if r.status == PROMOTED][:keep])  # rollback targets
    for env in agent.config.environments:
        pointer = journal.production(env.name)
        if pointer is not None:
            kept.add(pointer.release_id)
    live = agent.targets.action_server.live()
    if live is not None and live.release_id.isdigit():
        kept.add(int(live.release_id))
    kept_models = {journal.release(i).model_path for i in kept}
    for release in recent:
        if release.id in kept:
            continue
        if release.worktree and Path(release.worktree).exists():
            agent.mirror.remove_worktree(Path(release.worktree))
        if release.model_path and release.model_path not in kept_models:
            Path(release.model_path).unlink(missing_ok=True)
    results = agent.config.work_dir / "results"
    if results.is_dir():
        for folder in results.iterdir():
            number = folder.name.removeprefix("release-")
            if number.isdigit() and int(number) not in kept:
                shutil.rmtree(folder, ignore_errors=True)
