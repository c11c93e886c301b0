"""CI runs the suite in two parts: `--ci-part heavy` serially, then `--ci-part
light` with two pytest-xdist workers, one test file per worker at a time
(.ci/test). Without the option every test runs, as before.

A test is heavy, and never shares the machine with a second worker, when it
- uses a session service (dockerd and its images, the registry, sshd, Redis, the
  shared deploy host, a blue/green host): each xdist worker would start its own,
  and two dockerd on the one data root would clash;
- is a deploy-side test with real Rasa (marked `rasa` or using `rasa_bin`, outside
  tests/hooks/: it trains or serves: serving latency, the blue/green switches and
  the live pipelines time what they see), or is marked `serial`;
- lives in tests/reliability/ (supervision restarts, crashes, faults: timing).
A test with real Rasa that times nothing and uses no session service may say
so with the `light` marker (the demo: it only checks that the README's
command works end to end; the NLU gate step's training; the hostile commits,
which never serve). Everything else is light: unit tests, in-process
fakes, short subprocesses on free ports and tmp_path, and the commit-time hooks'
tests with real Rasa (each on its own copy of a bot with its own caches;
nothing there is timed). The two parts together are exactly the whole suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Fixtures (tests/conftest.py) that make a test heavy: services, one per session.
SESSION_SERVICES = frozenset({
    "host", "blue_green_host", "docker_engine", "sdk_base_image", "rasa_image",
    "auth_registry", "sshd", "redis_server",
})
# Fixtures that run real Rasa (slow, but safe beside a second worker in tests/hooks/).
REAL_RASA = frozenset({"rasa_bin", "trained_coffeebot", "shared_bots", "hook_repo"})
TESTS = Path(__file__).resolve().parent.parent


def is_heavy(item: pytest.Item) -> bool:
    if item.get_closest_marker("serial"):
        return True
    fixtures = set(getattr(item, "fixturenames", ()))
    if SESSION_SERVICES & fixtures:
        return True
    if item.get_closest_marker("light"):
        return False
    path = Path(str(item.path)).resolve()
    where = path.relative_to(TESTS).parts if path.is_relative_to(TESTS) else ("",)
    if where[0] == "reliability":
        return True
    uses_rasa = bool(item.get_closest_marker("rasa")) or "rasa_bin" in fixtures
    return uses_rasa and where[0] != "hooks"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--ci-part", choices=("heavy", "light"), default=None,
                     help="run only the serial (heavy) or only the xdist-safe (light) tests")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "serial: never runs beside another xdist worker (timing-sensitive)")
    config.addinivalue_line(
        "markers", "light: real Rasa, but nothing timed and no session service: may run "
        "beside another xdist worker")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    part = config.getoption("--ci-part")
    if part is None:
        return
    keep = [item for item in items if is_heavy(item) == (part == "heavy")]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    if part == "light":
        # The files with real Rasa take minutes (installing Rasa into a pre-commit
        # env the longest), the rest seconds: handing them out first keeps one
        # worker from finishing alone with a long file.
        rank: dict[Path, int] = {}
        for item in keep:
            rank[item.path] = min(rank.get(item.path, 2), _cost_rank(item))
        keep.sort(key=lambda item: rank[item.path])  # stable: files stay whole
    items[:] = keep


def _cost_rank(item: pytest.Item) -> int:
    """0: builds a pre-commit env with Rasa, or the demo (minutes each); 1: runs
    real Rasa; 2: the rest."""
    fixtures = set(getattr(item, "fixturenames", ()))
    if "pre_commit_home" in fixtures or item.get_closest_marker("light"):
        return 0
    if item.get_closest_marker("rasa") or REAL_RASA & fixtures:
        return 1
    return 2
