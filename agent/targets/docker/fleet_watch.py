"""Following a Swarm update of a Rasa fleet (agent/targets/docker/rasa_fleet.py)
until every replica serves the release, or Swarm rolled it back; and where
each replica is reached.

Swarm decides when tasks start and stop; the agent only reads: the service's
UpdateStatus and its tasks (their node, slot, state and error; with a health
check a task is `running` only once healthy). What it reports names the failed
task's node and its error."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.targets.base import DeployError, LogSink, ModelRef
from agent.targets.docker.fleet_image import no_image_message
from agent.targets.docker.fleet_service import LABEL_RELEASE, MIXED, FleetSettings
from agent.targets.fleet_proxy import bracketed
from agent.targets.rasa_api import RasaApi

# Replicas reached only at these bind 127.0.0.1 (else 0.0.0.0).
LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Update:
    """The update the agent just asked Swarm for."""

    ref: ModelRef
    updating: bool  # False: the service was just created (nothing to roll back to)
    previous: str  # the previous update's StartedAt, still shown until ours starts
    replicas: int


def node_addresses(client: Any) -> dict[str, str]:
    """Each Swarm node's id and the address its host-network ports are reached at."""
    found: dict[str, str] = {}
    for node in client.nodes.list():
        address = str((node.attrs.get("Status") or {}).get("Addr") or "")
        if address in ("", "0.0.0.0"):  # some managers report their raft address only
            manager = str((node.attrs.get("ManagerStatus") or {}).get("Addr") or "")
            address = manager.rsplit(":", 1)[0]
        if address:
            found[node.id] = address
    return found


def wait_for_update(client: Any, settings: FleetSettings, update: Update,
                    get_service: Any, log: LogSink) -> None:
    """Until Swarm completed the update (a new service: every replica healthy);
    a rollback, a pause or the time running out is a DeployError naming why."""
    # One replica after the other: each may take its start period (the load
    # timeout), Swarm's monitor and a few health checks. A rollback is a second
    # update of the same kind (the previous release's replicas start and load
    # again), so once Swarm starts one it gets a budget of its own: failing the
    # release before the previous replicas serve again would say less than it knows.
    budget = update.replicas * (settings.load_timeout + settings.monitor + 10) + 60
    deadline = time.monotonic() + budget
    last, why, ref, rolling_back = "", "", update.ref, False
    while time.monotonic() < deadline:
        service = get_service(client)
        if service is None:
            raise DeployError(f"Swarm service {settings.service} went away")
        status = service.attrs.get("UpdateStatus") or {}
        if update.updating and str(status.get("StartedAt", "")) == update.previous:
            status = {}  # not our update yet
        state = str(status.get("State", ""))
        tasks = service.tasks()  # one read per poll, for every question below
        if state and state != last:
            # The reason a rollback started is in this message only until the
            # rollback completes: keep it for the error.
            message = str(status.get("Message", ""))
            log(f"Swarm update: {state} ({message})")
            last = state
            if state == "rollback_started":
                why, rolling_back = message, True
                deadline = time.monotonic() + budget
        if state in MIXED:
            raise DeployError(
                f"Swarm stopped the update of {settings.service} half-way ({state}: "
                f"{status.get('Message', '')}; {task_error(client, tasks)}); its replicas "
                "serve more than one release: see `docker service ps`, then `docker service "
                "rollback` or a new release")
        problem = task_error(client, tasks, ref.release_id)
        if state == "rollback_completed":
            if missing_image(problem):
                raise DeployError(no_image_message("", "", ref.release_id, problem)
                                  + "; Swarm rolled the update back: the previous release's "
                                  "replicas serve again")
            raise DeployError(
                f"Swarm rolled the Rasa service back: a replica of release "
                f"{ref.release_id} did not report model_id {ref.model_id} "
                f"({why or status.get('Message', '')}; {problem}); "
                "the previous release's replicas serve again")
        if not update.updating and missing_image(problem):  # no rollback to wait for
            raise DeployError(no_image_message("", "", ref.release_id, problem))
        if (update.updating and state == "completed") or (
                not update.updating and running_count(tasks, ref.release_id)
                >= update.replicas):
            return
        time.sleep(0.5)
    service = get_service(client)
    problem = task_error(client, None if service is None else service.tasks())
    if rolling_back:
        raise DeployError(
            f"Swarm started rolling the Rasa service back ({why or 'no reason given'}) and "
            f"did not finish within {budget:.0f} s: its replicas may serve more than one "
            f"release; see `docker service ps {settings.service}` ({problem})")
    raise DeployError(
        f"the replicas of release {ref.release_id} did not report model_id "
        f"{ref.model_id} within {budget:.0f} s (model.load_timeout per replica; {problem})")


# Task states that still hold (or will hold) a running container.
LIVE_TASK_STATES = frozenset({"new", "pending", "assigned", "accepted", "preparing", "ready",
                              "starting", "running"})


def wait_for_old_replicas(client: Any, settings: FleetSettings, release_id: str,
                          get_service: Any, log: LogSink) -> None:
    """Until no replica of another release runs: Swarm calls an update completed
    once the last new replica is healthy, while the old one may still drain
    (stop_grace_period). Only then does every request reach the release."""
    deadline = time.monotonic() + settings.drain_timeout + 30
    while time.monotonic() < deadline:
        service = get_service(client)
        old = [] if service is None else [
            task for task in service.tasks() if _release_of(task) != release_id
            and (task.get("Status") or {}).get("State") in LIVE_TASK_STATES]
        if not old:
            return
        time.sleep(0.5)
    log(f"a replica of an earlier release still runs {settings.drain_timeout + 30:.0f} s "
        "after the update completed; HAProxy's check keeps users off it once it stops "
        "answering")


def replica_endpoints(service: Any, release_id: str, base: int,
                      host_of: Mapping[str, str]) -> list[tuple[str, int]]:
    """(host, port) of each running task of the release: its node's address
    (`host_of` by node id, or "" for every node) and its slot's port."""
    endpoints = []
    for task in service.tasks(filters={"desired-state": "running"}):
        if _release_of(task) != release_id:
            continue
        host = host_of.get(str(task.get("NodeID")), host_of.get("", ""))
        if not host:
            raise DeployError(f"Swarm node {task.get('NodeID')} runs a replica of release "
                              f"{release_id} but reports no address the agent can reach")
        endpoints.append((host, base + int(task.get("Slot", 1)) - 1))
    return sorted(endpoints)


def confirm_replicas(ref: ModelRef, endpoints: list[tuple[str, int]], replicas: int,
                     api_of: Any, log: LogSink) -> None:
    """Each replica of the release answers with its model (not only Swarm's word)."""
    if len(endpoints) < replicas:
        raise DeployError(f"Swarm runs {len(endpoints)} of {replicas} replica(s) of release "
                          f"{ref.release_id}")
    for host, port in endpoints:
        api: RasaApi = api_of(f"http://{bracketed(host)}:{port}")
        found = api.model_id(attempts=3)
        if found != ref.model_id:
            raise DeployError(f"the replica on {host}:{port} reports model_id {found}, not "
                              f"release {ref.release_id}'s {ref.model_id}")
    log(f"{len(endpoints)} replica(s) report model_id {ref.model_id}")


def running_count(tasks: list[Mapping[str, Any]], release_id: str) -> int:
    """The release's tasks (of a service's `tasks()`) Swarm calls running, on any
    node: with a health check, a task is `starting` until its container is healthy."""
    return sum(1 for task in tasks
               if _release_of(task) == release_id and task.get("DesiredState") == "running"
               and (task.get("Status") or {}).get("State") == "running")


def task_error(client: Any, tasks: list[Mapping[str, Any]] | None,
               release_id: str = "") -> str:
    """The newest failed task (of a service's `tasks()`; None: no service) with its
    error and node, of the release when named; else what the release's tasks do."""
    if tasks is None:
        return "no service"
    seen = []
    for task in sorted(tasks, key=lambda t: str(t.get("UpdatedAt", "")), reverse=True):
        status = task.get("Status", {})
        if release_id and _release_of(task) != release_id:
            continue
        if status.get("Err") or status.get("State") in ("failed", "rejected"):
            return (f"task {status.get('State')} on node {_node_name(client, task)}: "
                    f"{status.get('Err') or status.get('Message')}")
        if release_id and status.get("State") == "complete":
            # A replica never ends by itself: Rasa (Sanic) exits 0 when it
            # can't bind its port ("Unable to start server" in the task's log).
            return (f"a replica exited by itself (code 0) on node {_node_name(client, task)}, "
                    f"slot {task.get('Slot')}: Rasa does so when its port is taken; "
                    "see its log (docker service logs) and keep model.fleet_ports below "
                    "the ephemeral port range")
        seen.append(f"slot {task.get('Slot')}: {status.get('State')} ({status.get('Message')})")
    return "no failed task" + (f"; {', '.join(seen[:4])}" if seen else "")


def missing_image(task_error: str) -> bool:
    text = task_error.lower()
    return "no such image" in text or ("image" in text and "not found" in text)


def _release_of(task: Mapping[str, Any]) -> str:
    labels = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels") or {}
    return str(labels.get(LABEL_RELEASE, ""))


def _node_name(client: Any, task: Mapping[str, Any]) -> str:
    """The node's hostname (its id when it can't be read)."""
    import docker.errors

    node_id = str(task.get("NodeID") or "")
    if not node_id:
        return "(none yet)"
    try:
        return str(client.nodes.get(node_id).attrs["Description"]["Hostname"])
    except (docker.errors.DockerException, KeyError):
        return node_id
