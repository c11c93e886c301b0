"""The lock CI installs (.ci/requirements-lock.txt) pins what .ci/requirements-test.txt
asks for: editing one without the other fails here, not in a fresh CI machine's
tests."""

from __future__ import annotations

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.paths import REPO_ROOT

CI = REPO_ROOT / ".ci"


def _lines(name: str) -> list[str]:
    """The file's requirements, without comments and blank lines."""
    text = (CI / name).read_text(encoding="utf-8")
    return [kept for line in text.splitlines() if (kept := line.split("#")[0].strip())]


def test_the_lock_pins_every_requirement_at_a_version_it_allows() -> None:
    pinned: dict[str, str] = {}
    for line in _lines("requirements-lock.txt"):
        name, _, version = line.partition("==")
        assert version, f".ci/requirements-lock.txt: {line!r} is not pinned with =="
        pinned[canonicalize_name(name)] = version
    for line in _lines("requirements-test.txt"):
        wanted = Requirement(line)
        version = pinned.get(canonicalize_name(wanted.name))
        assert version is not None, (
            f".ci/requirements-lock.txt has no {wanted.name}: write the lock again as its "
            "header says (pip freeze --all of a venv pip built from .ci/requirements-test.txt)")
        assert wanted.specifier.contains(version, prereleases=True), (
            f".ci/requirements-lock.txt pins {wanted.name}=={version}, outside {wanted.specifier}")
