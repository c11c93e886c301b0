"""`agent status`, `history`, `events`, `logs`: read-only views over the journal.

These commands only read: they never take the deploy lock, never talk to a
target and never create a journal (a missing one is an error that says how to
make it), so they are safe to run at any moment, beside a running daemon.
Statuses print as their plain words, in tables and in `--json` alike.
"""

from __future__ import annotations

import json
import time
from typing import Any

from agent.config import AgentConfig
from agent.daemon import daemon_running
from agent.journal import Journal, Release, ReleaseStatus, owner_alive
from agent.journal.records import WAITING
from agent.runtime import DEPLOY_LOCK, PIPELINE_LOCK
from agent.secrets import public_url
from hooks.core.errors import FatalError


def open_journal(config: AgentConfig) -> Journal:
    """The existing journal of this config; reading never creates one."""
    path = config.work_dir / "journal.sqlite"
    if not path.is_file():
        raise FatalError(f"no journal yet at {path}; `agent once` or `agent run` makes one")
    return Journal(path)


def release_number(text: str) -> int:
    """`12`, `r12` or `#12` -> 12."""
    try:
        return int(str(text).lstrip("r#"))
    except ValueError:
        raise FatalError(f"{text!r} is not a release number; "
                         "`agent history` lists them") from None


def when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def duration(release: Release) -> str:
    return f"{release.duration:.0f}s" if release.duration is not None else "-"


def status_data(config: AgentConfig, journal: Journal) -> dict[str, Any]:
    """What `agent status` shows, as plain JSON-ready values."""
    out: dict[str, Any] = {"environments": {}, "in_flight": [], "last_failure": None}
    for env in config.environments:
        pointer = journal.production(env.name)
        entry: dict[str, Any] = {"promote": env.promote}
        if pointer is not None:
            release = journal.release(pointer.release_id)
            entry.update(release=release.id, commit=release.commit, message=release.message,
                         model_id=release.model_id, since=pointer.since,
                         paused=pointer.paused, paused_reason=pointer.paused_reason)
        staged = [r.id for r in journal.releases(limit=20, status=ReleaseStatus.STAGED)
                  if r.environment == env.name]
        entry["staged"] = staged
        entry["after"] = env.after
        # Releases verified in the environment before, waiting for this one (and why).
        live = entry.get("release")
        entry["waiting"] = [{"release": e.release_id, "why": e.detail}
                            for e in journal.events(limit=200, environment=env.name,
                                                    kind=WAITING)
                            if e.release_id is not None
                            and (live is None or e.release_id > live)]
        out["environments"][env.name] = entry
    for release in journal.in_flight():
        steps = journal.steps(release.id)
        current = steps[-1].name if steps else "-"
        alive = owner_alive(release.owner) if release.owner else True
        out["in_flight"].append({"release": release.id, "commit": release.commit,
                                 "status": release.status.value, "step": current,
                                 "owner_alive": alive})
    failure = journal.last_failure()
    if failure is not None:
        out["last_failure"] = {"release": failure.id, "commit": failure.commit,
                               "status": failure.status.value, "reason": failure.reason,
                               "at": failure.finished_at}
    superseded = journal.releases(limit=1, status=ReleaseStatus.SUPERSEDED)
    out["last_superseded"] = ({"release": superseded[0].id, "commit": superseded[0].commit,
                               "reason": superseded[0].reason, "at": superseded[0].finished_at}
                              if superseded else None)
    out["lock"] = journal.lock_holder(DEPLOY_LOCK)
    out["pipeline_lock"] = journal.lock_holder(PIPELINE_LOCK)
    out["daemon_pid"] = daemon_running(config)
    return out


def show_status(config: AgentConfig, *, as_json: bool = False) -> int:
    journal = open_journal(config)
    try:
        out = status_data(config, journal)
    finally:
        journal.close()
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    running = out["daemon_pid"]
    print(f"agent: {f'running (pid {running})' if running else 'not running'}; "
          f"{public_url(config.repo)} branch {config.branch}")
    for name, entry in out["environments"].items():
        if "release" in entry:
            paused = f"  [auto-promotion paused: {entry['paused_reason']}]" if entry[
                "paused"] else ""
            print(f"{name}: release {entry['release']} {entry['commit'][:8]} "
                  f"{entry['message']!r} since {when(entry['since'])}; model "
                  f"{(entry['model_id'] or '-')[:12]}{paused}")
        else:
            print(f"{name}: nothing promoted yet")
        if entry["staged"]:
            print(f"  staged (waiting for `agent promote`): "
                  f"{', '.join(str(i) for i in entry['staged'])}")
        for waiting in entry["waiting"]:
            print(f"  waiting: release {waiting['release']} (verified in {entry['after']}): "
                  f"{waiting['why']}")
    if out["in_flight"]:
        for item in out["in_flight"]:
            ghost = "" if item["owner_alive"] else " (its agent is gone: interrupted)"
            print(f"in flight: release {item['release']} {item['commit'][:8]} "
                  f"{item['status']} at {item['step']}{ghost}")
    else:
        print("in flight: nothing")
    failure = out["last_failure"]
    if failure is not None:
        print(f"last failure: release {failure['release']} {failure['commit'][:8]} "
              f"{failure['status']} at {when(failure['at'])}: {failure['reason']}")
    newer = out["last_superseded"]
    if newer is not None:
        print(f"last superseded: release {newer['release']} {newer['commit'][:8]} at "
              f"{when(newer['at'])}: {newer['reason']}")
    return 0


def history_data(journal: Journal, limit: int) -> list[dict[str, Any]]:
    """Releases newest first, each with its steps and its events (each with its
    environment: where the release went live, waited, was verified or failed),
    as plain JSON-ready values."""
    data = []
    for release in journal.releases(limit=limit):
        item = release.as_dict()
        item["steps"] = [
            {"name": s.name, "status": s.status.value, "duration": s.duration,
             "summary": s.summary} for s in journal.steps(release.id)
        ]
        item["events"] = [
            {"at": e.at, "kind": e.kind, "environment": e.environment or release.environment,
             "actor": e.actor, "why": e.detail}
            for e in reversed(journal.events(limit=200, release_id=release.id))
        ]
        data.append(item)
    return data


def show_history(config: AgentConfig, *, limit: int = 30, as_json: bool = False) -> int:
    journal = open_journal(config)
    try:
        if as_json:
            print(json.dumps(history_data(journal, limit), indent=2, default=str))
            return 0
        releases = journal.releases(limit=limit)
    finally:
        journal.close()
    if not releases:
        print("no releases yet")
        return 0
    print(f"{'id':>4}  {'status':<11} {'commit':<8}  {'took':>5}  {'created':<19}  message")
    for r in releases:
        reason = f"  ({r.reason})" if r.reason else ""
        print(f"{r.id:>4}  {r.status:<11} {r.short:<8}  {duration(r):>5}  "
              f"{when(r.created_at):<19}  {r.message[:50]}{reason[:120]}")
    return 0


def events_data(journal: Journal, *, environment: str | None = None,
                limit: int = 50) -> list[dict[str, Any]]:
    """The audit trail, newest first: who did what, when and why. An event journaled
    without an environment (a release's own outcome) shows its release's."""
    envs: dict[int, str] = {}
    data = []
    for event in journal.events(limit=limit, environment=environment):
        env = event.environment
        if env is None and event.release_id is not None:
            if event.release_id not in envs:
                envs[event.release_id] = journal.release(event.release_id).environment
            env = envs[event.release_id]
        data.append({"id": event.id, "at": event.at, "kind": event.kind, "environment": env,
                     "release": event.release_id, "actor": event.actor, "why": event.detail})
    return data


def show_events(config: AgentConfig, *, environment: str | None = None, limit: int = 50,
                as_json: bool = False) -> int:
    journal = open_journal(config)
    try:
        data = events_data(journal, environment=environment, limit=limit)
    finally:
        journal.close()
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    if not data:
        print("no events yet")
        return 0
    print(f"{'when':<19}  {'environment':<12} {'who':<14} {'what':<26} {'release':>7}  why")
    for item in data:
        release = f"r{item['release']}" if item["release"] is not None else "-"
        print(f"{when(item['at']):<19}  {item['environment'] or '-':<12} "
              f"{item['actor'][:14]:<14} {item['kind']:<26} {release:>7}  {item['why'][:120]}")
    return 0


def show_logs(config: AgentConfig, release: str, *, lines: int = 30,
              summary_only: bool = False) -> int:
    """One release, its steps and the tail of each step's log excerpt."""
    journal = open_journal(config)
    try:
        found = journal.release(release_number(release))
        steps = journal.steps(found.id)
    finally:
        journal.close()
    print(f"release {found.id}: {found.status} {found.commit} by {found.author}")
    print(f"  {found.message}")
    if found.reason:
        print(f"  reason: {found.reason}")
    if found.model_path:
        reused = " (reused)" if found.model_reused else ""
        print(f"  model: {found.model_path}{reused} model_id {found.model_id}")
    for step in steps:
        took = f"{step.duration:.1f}s" if step.duration is not None else "-"
        print(f"\n== {step.name}: {step.status} in {took}: {step.summary}")
        if step.log_excerpt.strip() and not summary_only:
            for line in step.log_excerpt.splitlines()[-lines:]:
                print(f"   {line}")
    print(f"\nfull logs: {config.work_dir / 'logs' / f'release-{found.id}'}")
    return 0
