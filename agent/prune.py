"""Bounds on what the agent writes for ever: logs and journal events.

`keep_releases` bounds worktrees and models (release.cleanup). Here:
- `keep_logs`: the step logs of the newest N releases (`logs/release-N/`) and
  their action servers' logs (`action-server/actions-N.log`) are kept, plus
  those of every production and in-flight release and of every release whose
  action server may be live (`server_releases`); older ones are deleted;
- `log_max_mb`: a server's own log (HAProxy, the forwarder, the Rasa servers),
  which grows as long as the server runs, is cut to its newest half once it
  passes the bound, in place: the servers write with O_APPEND, so their next
  line lands at the new end;
- `journal.keep_events`: the newest N events are kept (releases and steps
  are bounded by their own cleanup: a release row is history, and small).

Run after every release (release.cleanup) and every few minutes by the daemon's
supervisor.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Collection
from pathlib import Path

from agent.config import legacy_environment
from agent.runtime import Agent
from agent.server_records import server_record

# Folders of the work dir whose *.log files are servers' own logs.
SERVER_LOG_DIRS = ("action-server", "rasa-blue-green", "rasa-blue-green/proxy", "rasa-server",
                   "model-server")
RELEASE_LOG = re.compile(r"^(?:release-(\d+)|actions-(\d+)\.log)$")


def _number(path: Path) -> int | None:
    match = RELEASE_LOG.match(path.name)
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def prune_release_logs(work_dir: Path, keep: int, protect: Collection[int]) -> list[Path]:
    """Delete the release log folders and action-server logs beyond the newest
    `keep` releases, but never those of `protect`; what was deleted."""
    found = [(number, path)
             for folder in (work_dir / "logs", work_dir / "action-server") if folder.is_dir()
             for path in folder.iterdir() if (number := _number(path)) is not None]
    newest = sorted({number for number, _ in found}, reverse=True)[:keep]
    removed = []
    for number, path in found:
        if number in newest or number in protect:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def trim_log(path: Path, max_bytes: int) -> bool:
    """Cut `path` to its newest half of `max_bytes` (from a line start) once it is
    longer than `max_bytes`; whether it was cut."""
    try:
        size = path.stat().st_size
        if size <= max_bytes:
            return False
        with open(path, "r+b") as log:
            log.seek(size - max_bytes // 2)
            tail = log.read()
            newline = tail.find(b"\n")
            tail = tail[newline + 1:] if 0 <= newline < len(tail) - 1 else tail
            log.seek(0)
            log.write(b"[... older lines cut by the agent (log_max_mb) ...]\n" + tail)
            log.truncate()
    except OSError:
        return False  # gone meanwhile, or not ours: the next round tries again
    return True


def trim_server_logs(work_dir: Path, max_bytes: int) -> list[Path]:
    return [path for folder in SERVER_LOG_DIRS if (work_dir / folder).is_dir()
            for path in sorted((work_dir / folder).glob("*.log")) if trim_log(path, max_bytes)]


def server_releases(agent: Agent) -> set[int]:
    """The releases whose action server may serve now: the one the target reports,
    and, for each production, the newest release up to it with its action code
    that started a server. A release with unchanged action code keeps that
    older release's server (and a switch back reuses it: serving_state.deployment_for),
    and the target's report is None while a busy server answers late."""
    found: set[int] = set()
    for place in agent.places.values():
        live = place.action_server.live()
        if live is not None and live.release_id.isdigit():
            found.add(int(live.release_id))
    releases = agent.journal.releases(limit=500)  # newest first
    for environment in agent.config.environments:
        current = agent.journal.production_release(environment.name)
        if current is None:
            continue
        for release in releases:
            if (release.id <= current.id and server_record(
                    release.action_server, environment.name, legacy_environment(agent.config))
                    and release.action_code_fingerprint == current.action_code_fingerprint):
                found.add(release.id)
                break
    return found


def prune(agent: Agent) -> str:
    """Every bound of the config applied once; a summary ("" when nothing was due)."""
    config, journal = agent.config, agent.journal
    protect = {release.id for release in journal.in_flight()}
    for environment in config.environments:
        pointer = journal.production(environment.name)
        if pointer is not None:
            protect.add(pointer.release_id)
    protect |= server_releases(agent)  # actions-M.log of a server still live
    removed = prune_release_logs(config.work_dir, int(config["keep_logs"]), protect)
    trimmed: list[Path] = []
    # Each environment's servers keep their logs in its own state dir.
    # (and the work dir itself: the one model server of every environment is there)
    for state_dir in sorted({config.work_dir, *(config.for_environment(e.name).state_dir
                                                for e in config.environments)}):
        if state_dir != config.work_dir:
            removed += prune_release_logs(state_dir, int(config["keep_logs"]), protect)
        trimmed += trim_server_logs(state_dir, int(float(config["log_max_mb"]) * 1024 * 1024))
    events = journal.prune_events(int(config["journal.keep_events"]))
    done = [f"{len(removed)} release log(s) deleted" if removed else "",
            f"{len(trimmed)} server log(s) cut" if trimmed else "",
            f"{events} journal event(s) deleted" if events else ""]
    return ", ".join(part for part in done if part)
