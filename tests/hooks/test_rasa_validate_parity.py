"""Parity with the real `rasa data validate --fail-on-warnings` (Rasa 3.6.21).

On every seeded copy of the example bot, each finding Rasa prints is mapped to
one of our checks and the name it is about; our report must contain it. A Rasa
message we cannot map fails the test, so a new kind of finding cannot slip by.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from hooks.rasa_validate import main
from tests.support.bots import copy_bot
from tests.support.paths import COFFEEBOT
from tests.support.seeds import SEEDS, Seed

# Rasa's message -> (our check, the group holding the name it is about).
RASA_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), check) for pattern, check in [
        (r"The intent '(?P<name>[^']+)' is listed in the domain file, but is not found",
         "intent-without-examples"),
        (r"labeled with intent '(?P<name>[^']+)'\. This intent is not listed",
         "intent-not-in-domain"),
        (r"The example '(?P<name>[^']+)' was found labeled with multiple",
         "example-multiple-intents"),
        (r"The intent '(?P<name>[^']+)' is used in your stories, but it is not listed",
         "story-intent-not-in-domain"),
        (r"Found intent '(?P<name>[^']+)' in stories which is not part of the domain",
         "story-intent-not-in-domain"),
        (r"The intent '(?P<name>[^']+)' is not used in any story or rule", "intent-unused"),
        (r"The action '(?P<name>utter_[^']+)' is used in the stories, but is not a valid",
         "utterance-not-in-domain"),
        (r"The utterance '(?P<name>[^']+)' is not used in any story or rule",
         "utterance-unused"),
        (r"The form '(?P<name>[^']+)' is used in the '.*' block", "form-not-in-domain"),
        (r"The action '(?P<name>[^']+)' is used in the '.*' block", "action-not-in-domain"),
        (r"Story structure conflict after \w+ '(?P<name>[^']+)'", "story-structure"),
        (r"The form slot '(?P<name>[^']+)' in form", "form-slot-not-in-domain"),
        (r"Slot '\w+' has a mapping condition for form '(?P<name>[^']+)'", "slot-mapping-form"),
        (r"missing the '(?P<name>[^']+)' mandatory key", "config-keys"),
        (r"Training data file .*/(?P<name>[^/]+) has a lower format version", "format-version"),
        (r"Failed to validate '.*/(?P<name>[^/']+)'", "schema"),
        (r"The intent (?P<name>\w+) in the domain file is using the MappingPolicy",
         "mapping-policy"),
        (r"(?P<name>Encountered empty domain)", "domain-empty"),
        (r"Found multiple \w+ with name\(s\) \['(?P<name>[^']+)'\]", "domain-duplicate"),
        (r"Tried to set non existent slot '(?P<name>[^']+)'", "slot-not-in-domain"),
    ]
)
# Lines of Rasa's output that are findings rather than progress or library noise.
FINDING_LINE = re.compile(r"UserWarning: |WARNING\s+rasa\.|ERROR\s+rasa\.|Failed to validate")
ISSUE_HEADER = "Issue found in"


def rasa_findings(output: str) -> list[tuple[str, str]]:
    """(check, name) for every finding in Rasa's output; unknown ones raise."""
    lines = output.splitlines()
    found: list[tuple[str, str]] = []
    for index, line in enumerate(lines):
        if not FINDING_LINE.search(line):
            continue
        text = line
        if ISSUE_HEADER in line and index + 1 < len(lines):
            text += " " + lines[index + 1]  # the message follows on the next line
        for pattern, check in RASA_MESSAGES:
            match = pattern.search(text)
            if match:
                found.append((check, match["name"]))
                break
        else:
            if "Project validation completed with errors" in text:
                continue
            raise AssertionError(f"a Rasa finding we do not map: {text}")
    if any(check == "domain-duplicate" for check, _ in found):
        # Rasa then validates an empty domain, and everything else it says
        # follows from that.
        found = [f for f in found if f[0] == "domain-duplicate"]
    return found


def rasa_validate(rasa_bin: Path, bot: Path) -> tuple[int, str]:
    done = subprocess.run(
        [str(rasa_bin), "data", "validate", "--fail-on-warnings", "--max-history", "3"],
        cwd=bot, capture_output=True, text=True,
        env={**os.environ, "RASA_TELEMETRY_ENABLED": "false"},
    )
    return done.returncode, done.stdout + done.stderr


def our_validate(bot: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    cwd = Path.cwd()
    os.chdir(bot)
    try:
        code = main(["--all"])
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.rasa
@pytest.mark.parametrize("seed", [None, *SEEDS], ids=lambda s: s.check if s else "clean")
def test_we_report_everything_rasa_reports(
    seed: Seed | None, rasa_bin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = copy_bot(COFFEEBOT, tmp_path / "bot")
    if seed:
        seed.apply(bot)
    rasa_code, rasa_output = rasa_validate(rasa_bin, bot)
    our_code, our_output = our_validate(bot, capsys)
    assert "Traceback" not in our_output
    theirs = rasa_findings(rasa_output)
    for check, name in theirs:
        ours = [line for line in our_output.splitlines() if f"[{check}]" in line]
        assert any(name in line or check == "story-structure" for line in ours), (
            f"Rasa reports {check} about {name!r}; we do not:\n{our_output}"
        )
    if rasa_code != 0:
        assert our_code == 1, f"Rasa fails, we pass:\n{rasa_output[-2000:]}"
    if seed is None:
        assert (rasa_code, our_code, theirs) == (0, 0, [])
    elif seed.rasa_says:
        assert seed.rasa_says in rasa_output, "Rasa no longer says this; update the seed"
