"""`agent`: the deploy agent's command line.

The CLI reads the journal or asks the tick to act; it never drives a target
itself, except `agent stop` (which ends the processes the agent started) and
`agent doctor` (which only asks whether things answer).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from agent.config import AgentConfig, load_config
from agent.journal import Journal, Release, ReleaseStatus, owner_alive
from agent.progress import Progress
from agent.runtime import Agent
from agent.steps import Abandoned
from agent.tick import TickResult, tick
from agent.watch import Watcher, request_sync
from hooks.core.errors import FatalError, fatal_errors_to_exit_codes

DEFAULT_CONFIGS = ("agent.yml", "/etc/rasa-gitops/agent.yml")


def _config_path(given: str | None) -> Path:
    if given:
        return Path(given)
    env = os.environ.get("RASA_GITOPS_AGENT_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_CONFIGS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise FatalError("no config file: pass --config FILE, set RASA_GITOPS_AGENT_CONFIG, or "
                     "create ./agent.yml (the README's 'The deploy agent' section has one)")


def _load(args: argparse.Namespace) -> AgentConfig:
    config = load_config(_config_path(args.config))
    for warning in config.warnings:
        print(f"agent: warning: {warning}", file=sys.stderr)
    return config


def _journal(config: AgentConfig) -> Journal:
    path = config.work_dir / "journal.sqlite"
    if not path.is_file():
        raise FatalError(f"no journal yet at {path}; `agent once` or `agent run` makes one")
    return Journal(path)


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _duration(release: Release) -> str:
    return f"{release.duration:.0f}s" if release.duration is not None else "-"


def _print_result(result: TickResult) -> None:
    if result.outcome == "released":
        skipped = f"; skipped {len(result.skipped)} superseded" if result.skipped else ""
        reason = f": {result.message}" if result.message else ""
        print(f"release {result.release_id}: {result.status}{reason}{skipped}")
    elif result.outcome == "idle":
        print(f"nothing new: {result.message}")
    else:
        print(f"{result.outcome}: {result.message}")


# ------------------------------------------------------------------ commands


def cmd_once(args: argparse.Namespace) -> int:
    agent = Agent.open(_load(args), Progress(quiet=args.quiet))
    try:
        result = tick(agent)
    finally:
        agent.close()
    _print_result(result)
    return 1 if result.outcome == "error" or result.status == "failed" else 0


def _pid_file(config: AgentConfig) -> Path:
    return config.work_dir / "agent.pid"


def daemon_running(config: AgentConfig) -> int | None:
    try:
        pid = int(_pid_file(config).read_text(encoding="utf-8").split(":")[-1])
    except (FileNotFoundError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    running = daemon_running(config)
    if running:
        raise FatalError(f"an agent already runs for {config.work_dir} (pid {running})")
    agent = Agent.open(config, Progress())
    local = Path(config.repo) if config.is_local_repo else None
    if local is not None and not (local / "HEAD").is_file():
        raise FatalError(f"{config.path}: repo: {local} is not a bare git repository")
    watcher = Watcher(config.work_dir, local_repo=local, branch=config.branch,
                      poll_interval=float(config["poll_interval"]))
    def on_signal(signum: int, frame: FrameType | None) -> None:
        agent.stop_requested = True
        watcher.wakeup.set("stop")
        if agent.in_long_step:
            raise Abandoned()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watcher.start()
    _pid_file(config).write_text(f"{os.getpid()}\n", encoding="utf-8")
    how = "watching the bare repo" if local else f"polling every {config['poll_interval']} s"
    agent.progress.info(f"agent started: {config.repo} branch {config.branch}, {how}")
    try:
        while not agent.stop_requested:
            try:
                result = tick(agent)
            except FatalError as exc:  # e.g. a full disk: say so, keep serving, retry
                agent.progress.info(f"tick failed: {exc}")
                result = TickResult("error", message=str(exc))
            if result.outcome in {"released", "busy"}:  # errors were logged by the tick
                _print_result(result)
            if agent.stop_requested:
                break
            if result.outcome == "released":
                continue  # more commits may have arrived while it ran
            reasons = watcher.wait()
            if reasons != ["poll"] and "stop" not in reasons:
                agent.progress.info(f"woken by {', '.join(reasons)}")
    finally:
        watcher.stop()
        agent.close()
        _pid_file(config).unlink(missing_ok=True)
    agent.progress.info("agent stopped")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    config = _load(args)
    if daemon_running(config):
        request_sync(config.work_dir)
        print("asked the running agent to fetch now")
        return 0
    return cmd_once(args)


def cmd_status(args: argparse.Namespace) -> int:
    config = _load(args)
    journal = _journal(config)
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
        out["environments"][env.name] = entry
    for release in journal.in_flight():
        steps = journal.steps(release.id)
        current = steps[-1].name if steps else "-"
        alive = owner_alive(release.owner) if release.owner else True
        out["in_flight"].append({"release": release.id, "commit": release.commit,
                                 "status": release.status, "step": current,
                                 "owner_alive": alive})
    failure = journal.last_failure()
    if failure is not None:
        out["last_failure"] = {"release": failure.id, "commit": failure.commit,
                               "status": failure.status, "reason": failure.reason,
                               "at": failure.finished_at}
    lock = journal.lock_holder("deploy")
    out["lock"] = lock
    running = daemon_running(config)
    out["daemon_pid"] = running
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"agent: {f'running (pid {running})' if running else 'not running'}; "
          f"{config.repo} branch {config.branch}")
    for name, entry in out["environments"].items():
        if "release" in entry:
            paused = f"  [auto-promotion paused: {entry['paused_reason']}]" if entry[
                "paused"] else ""
            print(f"{name}: release {entry['release']} {entry['commit'][:8]} "
                  f"{entry['message']!r} since {_when(entry['since'])}; model "
                  f"{(entry['model_id'] or '-')[:12]}{paused}")
        else:
            print(f"{name}: nothing promoted yet")
        if entry["staged"]:
            print(f"  staged (waiting for `agent promote`): "
                  f"{', '.join(str(i) for i in entry['staged'])}")
    if out["in_flight"]:
        for item in out["in_flight"]:
            ghost = "" if item["owner_alive"] else " (its agent is gone: interrupted)"
            print(f"in flight: release {item['release']} {item['commit'][:8]} "
                  f"{item['status']} at {item['step']}{ghost}")
    else:
        print("in flight: nothing")
    if failure is not None:
        print(f"last failure: release {failure.id} {failure.short} {failure.status} "
              f"at {_when(failure.finished_at)}: {failure.reason}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    journal = _journal(_load(args))
    releases = journal.releases(limit=args.limit)
    if args.json:
        data = []
        for release in releases:
            item = release.as_dict()
            item["steps"] = [
                {"name": s.name, "status": s.status, "duration": s.duration,
                 "summary": s.summary} for s in journal.steps(release.id)
            ]
            data.append(item)
        print(json.dumps(data, indent=2, default=str))
        return 0
    if not releases:
        print("no releases yet")
        return 0
    print(f"{'id':>4}  {'status':<11} {'commit':<8}  {'took':>5}  {'created':<19}  message")
    for r in releases:
        reason = f"  ({r.reason})" if r.reason else ""
        print(f"{r.id:>4}  {r.status:<11} {r.short:<8}  {_duration(r):>5}  "
              f"{_when(r.created_at):<19}  {r.message[:50]}{reason[:120]}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    config = _load(args)
    journal = _journal(config)
    release = journal.release(_release_number(args.release))
    print(f"release {release.id}: {release.status} {release.commit} by {release.author}")
    print(f"  {release.message}")
    if release.reason:
        print(f"  reason: {release.reason}")
    if release.model_path:
        reused = " (reused)" if release.model_reused else ""
        print(f"  model: {release.model_path}{reused} model_id {release.model_id}")
    for step in journal.steps(release.id):
        took = f"{step.duration:.1f}s" if step.duration is not None else "-"
        print(f"\n== {step.name}: {step.status} in {took}: {step.summary}")
        if step.log_excerpt.strip() and not args.summary:
            for line in step.log_excerpt.splitlines()[-args.lines:]:
                print(f"   {line}")
    print(f"\nfull logs: {config.work_dir / 'logs' / f'release-{release.id}'}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop the servers the agent started (action servers, forwarder, Rasa server)."""
    from agent.targets.factory import build_targets

    config = _load(args)
    targets = build_targets(config)
    for target in (targets.action_server, targets.model):
        for method in ("stop_all", "stop_server"):
            stopper = getattr(target, method, None)
            if callable(stopper):
                stopper(print)
    return 0


def _release_number(text: str) -> int:
    try:
        return int(str(text).lstrip("r#"))
    except ValueError:
        raise FatalError(f"{text!r} is not a release number; "
                         "`agent history` lists them") from None


def _env_name(config: AgentConfig, given: str | None) -> str:
    return config.environment(given).name if given else config.environments[0].name


def cmd_promote(args: argparse.Namespace) -> int:
    from agent.promote import promote

    config = _load(args)
    agent = Agent.open(config, Progress())
    try:
        env = _env_name(config, args.env)
        plan = promote(agent, _release_number(args.release), env, args.reason or "")
    finally:
        agent.close()
    print(f"release {args.release} is in {env} ({' then '.join(plan.switches) or 'no switch'})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from agent.promote import rollback

    config = _load(args)
    agent = Agent.open(config, Progress())
    try:
        env = _env_name(config, args.env)
        to = _release_number(args.to) if args.to else None
        target = rollback(agent, env, to, args.reason or "")
    finally:
        agent.close()
    print(f"{env} is back on release {target.id} ({target.short} {target.message!r}); "
          f"auto-promotion of {env} is paused until `agent resume`")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from agent.promote import actor

    config = _load(args)
    journal = _journal(config)
    env = _env_name(config, args.env)
    pointer = journal.production(env)
    if pointer is None or not pointer.paused:
        print(f"auto-promotion of {env} is not paused")
        return 0
    journal.set_paused(env, False, "", actor())
    print(f"auto-promotion of {env} resumed")
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    from agent.journal import owner_alive as alive
    from agent.promote import actor

    journal = _journal(_load(args))
    holder = journal.lock_holder("deploy")
    if holder is None:
        print("the deploy lock is free")
        return 0
    if alive(holder["owner"]) and not args.force:
        raise FatalError(f"the deploy lock is held by {holder['owner']}, which is still "
                         f"running ({holder['purpose']}); stop it, or pass --force")
    journal.force_unlock("deploy", actor())
    print(f"released the deploy lock held by {holder['owner']} ({holder['purpose']})")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.doctor import run_doctor

    return run_doctor(_config_path(args.config))


# ---------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent", description="Turn every commit on a branch into a tested Rasa release.")
    parser.add_argument("--config", "-c", help="the agent's YAML file (default: ./agent.yml, "
                        "then /etc/rasa-gitops/agent.yml, or $RASA_GITOPS_AGENT_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="the daemon: watch the branch and release every new commit")
    once = sub.add_parser("once", help="one tick: release the newest commit if it is new")
    once.add_argument("--quiet", "-q", action="store_true")
    sync = sub.add_parser("sync", help="fetch now (asks the daemon, or runs one tick)")
    sync.add_argument("--quiet", "-q", action="store_true")
    status = sub.add_parser("status", help="production, in flight, last failure")
    status.add_argument("--json", action="store_true")
    history = sub.add_parser("history", help="releases, newest first")
    history.add_argument("--json", action="store_true")
    history.add_argument("--limit", type=int, default=30)
    logs = sub.add_parser("logs", help="the steps of one release and their logs")
    logs.add_argument("release")
    logs.add_argument("--lines", type=int, default=30, help="log lines per step")
    logs.add_argument("--summary", action="store_true", help="steps only, no log lines")
    promote = sub.add_parser("promote", help="put a staged (or earlier) release in production")
    promote.add_argument("release")
    promote.add_argument("--env", help="environment (default: the first one)")
    promote.add_argument("--reason", help="recorded in the journal")
    rollback = sub.add_parser("rollback", help="go back to an earlier release; pauses "
                              "auto-promotion until `agent resume`")
    rollback.add_argument("--env", help="environment (default: the first one)")
    rollback.add_argument("--to", help="release number (default: the previous production)")
    rollback.add_argument("--reason", help="recorded in the journal with who did it")
    resume = sub.add_parser("resume", help="resume auto-promotion after a rollback")
    resume.add_argument("--env")
    unlock = sub.add_parser("unlock", help="release a deploy lock left by a crashed agent")
    unlock.add_argument("--force", action="store_true",
                        help="even if its owner still runs (dangerous)")
    sub.add_parser("doctor", help="check config, git, rasa, docker, registry, SSH")
    sub.add_parser("stop", help="stop the servers the agent started")
    return parser


COMMANDS = {
    "run": cmd_run, "once": cmd_once, "sync": cmd_sync, "status": cmd_status,
    "history": cmd_history, "logs": cmd_logs, "doctor": cmd_doctor, "stop": cmd_stop,
    "promote": cmd_promote, "rollback": cmd_rollback, "resume": cmd_resume,
    "unlock": cmd_unlock,
}


@fatal_errors_to_exit_codes("agent")
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main(None))
