"""agent/retry.py: bounded attempts, exponential waits with a cap, a log line per retry,
and only transient failures retried. The real faults: tests/reliability/test_faults_docker.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from agent.retry import Backoff, retrying
from agent.targets.base import DeployError
from agent.targets.docker.engine import EngineUnreachable, engine_gone, engine_gone_error


def flaky(failures: list[Exception]) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return calls, call


def test_transient_failures_are_retried_with_exponential_waits_then_succeed() -> None:
    waits: list[float] = []
    lines: list[str] = []
    calls, call = flaky([EngineUnreachable("down"), EngineUnreachable("down")])
    result = retrying(call, what="deploy", transient=engine_gone, log=lines.append,
                      sleep=waits.append)
    assert result == "done" and len(calls) == 3
    assert waits == [1.0, 2.0]
    assert lines == ["deploy: attempt 1/4 failed (the Docker engine is unreachable); "
                     "retrying in 1 s",
                     "deploy: attempt 2/4 failed (the Docker engine is unreachable); "
                     "retrying in 2 s"]


def test_the_attempts_are_bounded_the_waits_capped_and_the_last_failure_raised() -> None:
    waits: list[float] = []
    lines: list[str] = []
    calls, call = flaky([requests.ConnectionError(f"cut {n}") for n in range(10)])
    with pytest.raises(requests.ConnectionError, match="cut 4"):
        retrying(call, what="build", transient=engine_gone, log=lines.append,
                 backoff=Backoff(attempts=5, first=1.0, cap=3.0), sleep=waits.append)
    assert len(calls) == 5
    assert waits == [1.0, 2.0, 3.0, 3.0]
    assert lines[-1] == ("build: giving up after 5 attempt(s) "
                         "(the connection to the Docker engine broke)")


def test_a_failure_that_is_not_transient_is_raised_at_once() -> None:
    waits: list[float] = []
    calls, call = flaky([DeployError("the new server does not serve action_x")])
    with pytest.raises(DeployError, match="does not serve"):
        retrying(call, what="deploy", transient=engine_gone, log=lambda line: None,
                 sleep=waits.append)
    assert len(calls) == 1 and waits == []


def test_an_engine_that_went_away_is_reported_with_the_attempts() -> None:
    error = engine_gone_error(requests.ConnectionError("Connection aborted."), 4)
    assert error is not None
    assert str(error) == ("the connection to the Docker engine broke: ConnectionError: "
                          "Connection aborted. (gave up after 4 attempt(s))")
    assert engine_gone_error(DeployError("port 5056 is already in use"), 1) is None
