"""`agent`: the deploy agent's command line: parse the arguments, dispatch.

Each command is a few lines over the module that does the work: `daemon.py`
(`run`, `once`), `views.py` (`status`, `history`, `events`, `logs`, read-only), the
switch's `promote`/`rollback`, `doctor.py`. The CLI never drives a target
itself, except `agent stop` (which ends the processes the agent started
through the targets' own `stop_all`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from agent import daemon, notify, views
from agent.config import AgentConfig, config_path, load_config
from agent.journal import owner_alive
from agent.progress import Progress
from agent.runtime import PIPELINE_LOCK, Agent
from agent.watch import request_sync
from hooks.core.errors import FatalError, fatal_errors_to_exit_codes


def _load(args: argparse.Namespace) -> AgentConfig:
    config = load_config(config_path(args.config))
    for warning in config.warnings:
        print(f"agent: warning: {warning}", file=sys.stderr)
    return config


def _env_name(config: AgentConfig, given: str | None) -> str:
    return config.environment(given).name if given else config.environments[0].name


# ------------------------------------------------------------------ commands


def cmd_run(args: argparse.Namespace) -> int:
    return daemon.run_daemon(_load(args))


def cmd_once(args: argparse.Namespace) -> int:
    return daemon.run_once(_load(args), quiet=args.quiet)


def cmd_sync(args: argparse.Namespace) -> int:
    config = _load(args)
    if daemon.daemon_running(config):
        request_sync(config.work_dir)
        print("asked the running agent to fetch now")
        return 0
    return daemon.run_once(config, quiet=args.quiet)


def cmd_status(args: argparse.Namespace) -> int:
    return views.show_status(_load(args), as_json=args.json)


def cmd_history(args: argparse.Namespace) -> int:
    return views.show_history(_load(args), limit=args.limit, as_json=args.json)


def cmd_events(args: argparse.Namespace) -> int:
    config = _load(args)
    env = config.environment(args.env).name if args.env else None
    return views.show_events(config, environment=env, limit=args.limit, as_json=args.json)


def cmd_logs(args: argparse.Namespace) -> int:
    return views.show_logs(_load(args), args.release, lines=args.lines,
                           summary_only=args.summary)


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop every process the agent started: the servers its targets record (their
    own `stop_all`), then whatever a crash left that no record names (agent/owned.py)."""
    from agent.owned import stop_owned, stop_process
    from agent.targets.factory import build_targets

    config = _load(args)
    running = daemon.daemon_running(config)
    if running and not args.daemon:
        raise FatalError(f"the agent daemon (pid {running}) runs for {config.work_dir} and "
                         "restarts the servers it watches: stop it first (e.g. systemctl "
                         "stop rasa-gitops-agent), or pass --daemon to stop it too")
    if running:
        stop_process(running, print, what="the agent daemon", grace=120.0)
    for environment in config.environments:  # each place's own servers
        targets = build_targets(config.for_environment(environment.name))
        targets.action_server.stop_all(print)
        targets.model.stop_all(print)
    left = stop_owned(config.work_dir, print)
    if left:
        print(f"stopped {len(left)} more process(es) of {config.work_dir} that no record named")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from agent.placement import promote_through

    config = _load(args)
    agent = Agent.open(config, Progress())
    try:
        env = _env_name(config, args.env)
        with notify.notifying(config, agent.journal, agent.progress.info,
                              daemon_pid=daemon.daemon_running(config)):
            plan, onward = promote_through(agent, views.release_number(args.release), env,
                                           args.reason or "", force=args.force)
    finally:
        agent.close()
    print(f"release {args.release} is in {env} ({' then '.join(plan.switches) or 'no switch'})")
    for line in onward:
        print(line)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from agent.promote import rollback

    config = _load(args)
    agent = Agent.open(config, Progress())
    try:
        env = _env_name(config, args.env)
        to = views.release_number(args.to) if args.to else None
        with notify.notifying(config, agent.journal, agent.progress.info,
                              daemon_pid=daemon.daemon_running(config)):
            target = rollback(agent, env, to, args.reason or "")
    finally:
        agent.close()
    print(f"{env} is back on release {target.id} ({target.short} {target.message!r}); "
          f"auto-promotion of {env} is paused until `agent resume`")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from agent.promote import actor

    config = _load(args)
    journal = views.open_journal(config)
    env = _env_name(config, args.env)
    pointer = journal.production(env)
    if pointer is None or not pointer.paused:
        print(f"auto-promotion of {env} is not paused")
        return 0
    journal.set_paused(env, False, "", actor())
    print(f"auto-promotion of {env} resumed")
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    from agent.deploy_lock import lock_name
    from agent.promote import actor

    config = _load(args)
    journal = views.open_journal(config)
    names = [*(lock_name(config, env.name) for env in config.environments), PIPELINE_LOCK]
    held = [(name, h) for name in names if (h := journal.lock_holder(name)) is not None]
    if not held:
        print("the deploy lock is free")
        return 0
    for name, holder in held:
        if owner_alive(holder["owner"]) and not args.force:
            raise FatalError(f"the {name} lock is held by {holder['owner']}, which is still "
                             f"running ({holder['purpose']}); stop it, or pass --force")
    for name, holder in held:
        journal.force_unlock(name, actor())
        print(f"released the {name} lock held by {holder['owner']} ({holder['purpose']})")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.doctor import run_doctor

    return run_doctor(config_path(args.config))


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
    events = sub.add_parser("events", help="who did what, when and why (the audit trail)")
    events.add_argument("--env", help="only this environment's events")
    events.add_argument("--json", action="store_true")
    events.add_argument("--limit", type=int, default=50)
    logs = sub.add_parser("logs", help="the steps of one release and their logs")
    logs.add_argument("release")
    logs.add_argument("--lines", type=int, default=30, help="log lines per step")
    logs.add_argument("--summary", action="store_true", help="steps only, no log lines")
    promote = sub.add_parser("promote", help="put a staged (or earlier) release in production")
    promote.add_argument("release")
    promote.add_argument("--env", help="environment (default: the first one)")
    promote.add_argument("--reason", help="recorded in the journal")
    promote.add_argument("--force", action="store_true",
                         help="promote although the environment before did not verify it "
                         "(needs --reason; journaled)")
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
    stop = sub.add_parser("stop", help="stop every process the agent started (its servers)")
    stop.add_argument("--daemon", action="store_true",
                      help="also stop the running daemon (`agent run`) first")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run, "once": cmd_once, "sync": cmd_sync, "status": cmd_status,
    "history": cmd_history, "events": cmd_events, "logs": cmd_logs, "doctor": cmd_doctor,
    "stop": cmd_stop,
    "promote": cmd_promote, "rollback": cmd_rollback, "resume": cmd_resume,
    "unlock": cmd_unlock,
}


@fatal_errors_to_exit_codes("agent")
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main(None))
