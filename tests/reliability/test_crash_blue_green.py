"""Crash safety of the blue/green switch: the real agent (`model.serving:
blue_green`, real HAProxy, real `rasa run` servers with the light model) is
SIGKILLed at each point of the switch, then started again.

The points (agent/targets/rasa_blue_green.py, armed through
`RASA_GITOPS_KILL_AT`, agent/faults.py): `rasa.started` (the new server was
spawned and recorded, it is still loading), `rasa.warmed` (it answered a parse
and the warm-up, HAProxy still routes to the old one) and `rasa.switched`
(HAProxy routes to the new one, the old one still runs, the journal's
production pointer has not moved). agent/switch.py has no points of its own:
it reaches these through the `activate_model` step.

One host, four releases in order (one test function, so the order is its
own): the first release (nothing serves yet) is killed at `rasa.switched`,
then three later releases (one serves) at `rasa.started`, `rasa.warmed` and
`rasa.switched`. A first release killed before its switch (`rasa.started`,
`rasa.warmed`) needs a host where nothing served yet: one more host each.

Releases flip the greeting, so releases 3 and 4 reuse the models of releases
1 and 2 (the journal's `reusable_model`): that host trains only two models.
Right after each crash, what the stable port serves is what
the switch had reached; after each restart (one `agent once`) exactly one
`rasa run` of the host's target is alive, the stable port reports the model of
the release the journal calls production and answers a REST conversation with
that release's greeting, and the interrupted release was retried and promoted.
"""

from __future__ import annotations

import pytest
import requests

from agent.journal import INTERRUPTED, PROMOTED
from tests.support.blue_green_host import BlueGreenHost, assert_one_server_serves_production

pytestmark = [pytest.mark.rasa, pytest.mark.timeout(900)]

# The points killed during a release that has one to replace, in push order.
LATER_POINTS = ["rasa.started", "rasa.warmed", "rasa.switched"]


def _crash(host: BlueGreenHost, sha: str, point: str) -> int:
    """A release of `sha` killed at `point`; returns its id."""
    crashed = host.agent("once", kill_at=point)
    assert crashed.returncode == -9, (point, crashed.stdout[-2000:], crashed.stderr[-2000:])
    journal = host.journal()
    try:
        (killed,) = journal.releases_of_commit(sha)
        assert killed.status == "running"  # what a SIGKILL leaves
        assert killed.model_id
        return killed.id
    finally:
        journal.close()


def _restart(host: BlueGreenHost, sha: str, killed: int) -> None:
    """One `agent once`: the killed release is marked interrupted and its retry promoted."""
    restarted = host.agent("once")
    assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
    journal = host.journal()
    try:
        assert journal.release(killed).status == INTERRUPTED
        retry = journal.releases_of_commit(sha)[-1]
        assert retry.retry_of == killed
        assert retry.status == PROMOTED, retry.reason
        assert journal.production_release("production").id == retry.id  # type: ignore[union-attr]
    finally:
        journal.close()


def _restored(host: BlueGreenHost) -> list[int | None]:
    """The releases `switch.restore` put back so far (`production.restored`), oldest first."""
    journal = host.journal()
    try:
        return [e.release_id for e in reversed(journal.events(limit=100_000))
                if e.kind == "production.restored"]
    finally:
        journal.close()


def _later_release(host: BlueGreenHost, point: str, restored: list[int | None]) -> None:
    """A release pushed while one serves, killed at `point`, checked right after
    the crash and after the restart (`restored`: the `production.restored` so far)."""
    journal = host.journal()
    try:
        old = journal.production_release("production")
    finally:
        journal.close()
    assert old is not None
    sha = host.push(f"release killed at {point}")
    killed = _crash(host, sha, point)
    journal = host.journal()
    try:
        assert journal.production_release("production").id == old.id  # type: ignore[union-attr]
        new_model = journal.release(killed).model_id
    finally:
        journal.close()
    assert new_model != old.model_id
    # Right after the crash the old and the new server both run; the stable
    # port serves the old release until HAProxy switched, then the new one.
    assert len(host.servers()) == 2
    switched = point == "rasa.switched"
    assert host.live_model_id() == (new_model if switched else old.model_id)
    assert host.say("hello", f"crashed-{point}") == [
        host.expected[sha if switched else old.commit]]
    _restart(host, sha, killed)
    new = assert_one_server_serves_production(host, f"later-{point}")
    assert new != old.id
    # Only a crash after the switch left a model serving that the journal does
    # not call production: the restart put the old release back before the retry.
    assert _restored(host) == restored + ([old.id] if switched else [])


def test_crashes_inside_the_blue_green_switch_leave_one_server_serving_production(
        blue_green_host: BlueGreenHost) -> None:
    host = blue_green_host

    # Release 1, killed once HAProxy routes to it: nothing served before it, so
    # the new server is the only one and the stable port already serves it.
    first_sha = host.push("first release")
    killed = _crash(host, first_sha, "rasa.switched")
    journal = host.journal()
    try:
        assert journal.production_release("production") is None
        new_model = journal.release(killed).model_id
    finally:
        journal.close()
    # The new server outlives the agent (its own session) and is on record.
    assert len(host.servers()) == 1
    assert host.live_model_id() == new_model
    assert host.say("hello", "crashed-first") == [host.expected[first_sha]]
    _restart(host, first_sha, killed)
    assert_one_server_serves_production(host, "first")
    # Nothing was production before the first release: nothing to put back.
    assert _restored(host) == []

    # Releases 2 to 4, each replacing the one before.
    for point in LATER_POINTS:
        _later_release(host, point, _restored(host))


@pytest.mark.parametrize("point", ["rasa.started", "rasa.warmed"])
def test_a_first_release_killed_before_its_switch_serves_nobody_until_its_retry(
        blue_green_host: BlueGreenHost, point: str) -> None:
    host = blue_green_host
    sha = host.push(f"first release killed at {point}")
    killed = _crash(host, sha, point)
    journal = host.journal()
    try:
        assert journal.production_release("production") is None
    finally:
        journal.close()
    # Its server outlives the agent and is on record, but no user reaches it:
    # HAProxy was never switched to it (refused, or 503 without a server).
    assert len(host.servers()) == 1
    with pytest.raises(requests.RequestException):
        host.live_model_id()
    _restart(host, sha, killed)
    assert_one_server_serves_production(host, f"first-{point}")
    assert _restored(host) == []  # nothing was production: nothing to put back
