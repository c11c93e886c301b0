"""What the Swarm fleet reads from Swarm (agent/targets/docker/fleet_watch.py):
in-memory stand-ins shaped like docker-py's node and service objects (their
`attrs` and `tasks()` as the Engine API returns them). The real Swarm runs in
test_rasa_fleet.py and test_rasa_fleet_pipeline.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.targets.base import DeployError, ModelRef
from agent.targets.docker.fleet_service import LABEL_RELEASE, FleetSettings
from agent.targets.docker.fleet_watch import (
    Update,
    confirm_replicas,
    missing_image,
    node_addresses,
    replica_endpoints,
    running_count,
    task_error,
    wait_for_update,
)


@dataclass
class Node:
    id: str
    attrs: dict[str, Any]


@dataclass
class Nodes:
    found: list[Node]

    def list(self) -> list[Node]:
        return self.found

    def get(self, node_id: str) -> Node:
        return next(node for node in self.found if node.id == node_id)


@dataclass
class Client:
    nodes: Nodes


@dataclass
class Service:
    found: list[dict[str, Any]] = field(default_factory=list)

    def tasks(self, filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        wanted = (filters or {}).get("desired-state")
        return [t for t in self.found if not wanted or t["DesiredState"] == wanted]


def task(release: str, node: str, slot: int, state: str = "running", err: str = "",
         desired: str = "running") -> dict[str, Any]:
    return {"NodeID": node, "Slot": slot, "DesiredState": desired,
            "UpdatedAt": f"2026-11-30T00:00:0{slot}Z",
            "Status": {"State": state, "Err": err, "Message": state},
            "Spec": {"ContainerSpec": {"Labels": {LABEL_RELEASE: release}}}}


CLIENT = Client(Nodes([
    Node("n1", {"Status": {"Addr": "10.0.0.1"}, "Description": {"Hostname": "bot-1"}}),
    # A manager whose node address reads 0.0.0.0: its raft address says where it is.
    Node("n2", {"Status": {"Addr": "0.0.0.0"}, "ManagerStatus": {"Addr": "10.0.0.2:2377"},
                "Description": {"Hostname": "bot-2"}}),
]))


def test_each_node_is_reached_at_its_address() -> None:
    assert node_addresses(CLIENT) == {"n1": "10.0.0.1", "n2": "10.0.0.2"}


def test_each_running_replica_of_the_release_is_on_its_node_at_its_slots_port() -> None:
    service = Service([task("2", "n1", 1), task("2", "n2", 2), task("1", "n1", 2),
                       task("2", "n1", 2, state="shutdown", desired="shutdown")])
    assert replica_endpoints(service, "2", 6010, node_addresses(CLIENT)) == [
        ("10.0.0.1", 6010), ("10.0.0.2", 6011)]
    # Pinned to the engine's node: every replica at model.public_host.
    assert replica_endpoints(service, "2", 6010, {"": "bot.example.com"}) == [
        ("bot.example.com", 6010), ("bot.example.com", 6011)]


def test_a_new_service_counts_the_replicas_swarm_runs_on_every_node() -> None:
    # `starting`: its container's health check has not passed yet; the last one
    # still runs, but Swarm is stopping it.
    tasks = [task("1", "n1", 1), task("1", "n2", 2, state="starting"), task("1", "n2", 3),
             task("1", "n1", 4, desired="shutdown")]
    assert running_count(tasks, "1") == 2
    assert running_count(tasks, "2") == 0


def test_a_replica_on_a_node_without_an_address_is_named() -> None:
    with pytest.raises(DeployError, match="Swarm node n9 runs a replica of release 2"):
        replica_endpoints(Service([task("2", "n9", 1)]), "2", 6010, {"n1": "10.0.0.1"})


def test_a_rejected_task_is_named_with_its_node() -> None:
    service = Service([task("2", "n2", 1, state="rejected", err="No such image: r/x@sha256:0"),
                       task("1", "n1", 1)])
    problem = task_error(CLIENT, service.found, "2")
    assert problem == "task rejected on node bot-2: No such image: r/x@sha256:0"
    assert missing_image(problem)
    assert task_error(CLIENT, service.found, "1") == "no failed task; slot 1: running (running)"


def test_a_replica_that_ended_by_itself_is_a_failure_with_the_likely_cause() -> None:
    # Rasa's Sanic exits 0 after "Unable to start server" (its port was taken).
    service = Service([task("2", "n1", 2, state="complete")])
    assert task_error(CLIENT, service.found, "2").startswith(
        "a replica exited by itself (code 0) on node bot-1, slot 2: Rasa does so when its "
        "port is taken")


@dataclass
class Api:
    answers: str | None

    def model_id(self, *, attempts: int) -> str | None:
        return self.answers


def test_every_replica_must_answer_with_the_release_model() -> None:
    ref = ModelRef("2", "model-2", "/m", "")
    lines: list[str] = []
    confirm_replicas(ref, [("h", 1), ("h", 2)], 2, lambda url: Api("model-2"), lines.append)
    assert lines == ["2 replica(s) report model_id model-2"]
    with pytest.raises(DeployError, match="Swarm runs 1 of 2 replica"):
        confirm_replicas(ref, [("h", 1)], 2, lambda url: Api("model-2"), lines.append)
    with pytest.raises(DeployError, match=r"replica on h:1 reports model_id model-1, not "
                                          r"release 2's model-2"):
        confirm_replicas(ref, [("h", 1)], 1, lambda url: Api("model-1"), lines.append)


@dataclass
class Rolling:
    """A service whose UpdateStatus moves on with each read (one poll): Swarm's
    update of release 3 failing and rolling back."""

    states: list[str]
    reads: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)

    def read(self, client: Any) -> Rolling:
        state = self.states[min(self.reads, len(self.states) - 1)]
        self.reads += 1
        self.attrs = {"UpdateStatus": {"State": state, "StartedAt": "ours",
                                       "Message": f"{state} message"}}
        return self

    def tasks(self, filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return [task("2", "n1", 1)]


def test_a_rollback_gets_time_of_its_own_before_the_release_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A poll every 50 simulated seconds. The update's budget (2 replicas, 15 s
    # load) is 114 s: the rollback starts at 50 s and completes at 150 s, past
    # the update's own budget but within the rollback's.
    now = [0.0]
    monkeypatch.setattr("agent.targets.docker.fleet_watch.time.monotonic", lambda: now[0])
    monkeypatch.setattr("agent.targets.docker.fleet_watch.time.sleep",
                        lambda seconds: now.__setitem__(0, now[0] + 50))
    settings = FleetSettings("image", 2, (31000, 32000), "127.0.0.1", load_timeout=15,
                             monitor=2.0)
    update = Update(ModelRef("3", "broken-model", "/releases/3"), True, "before", 2)
    service = Rolling(["updating", "rollback_started", "rollback_started",
                       "rollback_completed"])
    with pytest.raises(DeployError, match=r"rolled the Rasa service back.*broken-model"
                       r".*rollback_started message.*serve again"):
        wait_for_update(CLIENT, settings, update, service.read, lambda line: None)

    # A rollback that never completes is named as one, not as a slow update.
    now[0] = 0.0
    stuck = Rolling(["updating", "rollback_started"])
    with pytest.raises(DeployError, match=r"started rolling .* back \(rollback_started "
                       r"message\) and did not finish.*docker service ps"):
        wait_for_update(CLIENT, settings, update, stuck.read, lambda line: None)
