"""rasa-validate on the real public bots in ../shared/bots (where present).

The verdicts are the defects MANIFEST.md measured with `rasa data validate`;
the bots are copied at run time and never committed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hooks.rasa_validate import main
from tests.support.bots import copy_bot

pytestmark = pytest.mark.corpus

FINDING = re.compile(r"^(?P<path>[^:\s]+):(?P<line>\d+): \[(?P<check>[\w-]+)\] (?P<msg>.*)$")

# {check: count} per bot, as MANIFEST.md measured them.
EXPECTED = [
    ("helpdesk-assistant", {
        "example-multiple-intents": 1, "config-keys": 1, "intent-without-examples": 2,
        "format-version": 5, "intent-unused": 2, "utterance-unused": 12,
    }),
    ("rasa-examples-formbot", {"intent-unused": 1, "utterance-unused": 10}),
]


@pytest.mark.parametrize(("name", "expected"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_shared_bots_get_the_verdict_their_defects_deserve(
    name: str, expected: dict[str, int], shared_bots: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot = copy_bot(shared_bots / name, tmp_path / name)
    monkeypatch.chdir(bot)
    code = main(["--all"])
    output = capsys.readouterr()
    lines = [m for m in map(FINDING.match, (output.out + output.err).splitlines()) if m]
    counts: dict[str, int] = {}
    for match in lines:
        counts[match["check"]] = counts.get(match["check"], 0) + 1
    assert code == 1
    assert counts == expected
    assert bot.joinpath("config.yml").exists()  # nothing was modified or removed
    if name == "helpdesk-assistant":
        clash = [m for m in lines if m["check"] == "example-multiple-intents"]
        assert clash[0]["path"] == "data/nlu.yml" and "'yes thanks'" in clash[0]["msg"]


def test_memoization_max_history_is_read_from_the_bot(shared_bots: Path) -> None:
    from hooks.project.layout import layout_for
    from hooks.project.load import load_project

    assert load_project(layout_for(shared_bots / "helpdesk-assistant")).max_history == 4
    assert load_project(layout_for(shared_bots / "rasa-examples-formbot")).max_history == 5
