"""Read Rasa's `failed_test_stories.yml` back into turns a person can act on.

Rasa writes each failed story with every step it predicted differently marked
by a trailing `# predicted: ...` comment (for intents: `intent: text`). A YAML
parser drops comments, so this reads the file line by line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hooks.project.model import Story

STORY_LINE = re.compile(r"^- (?:story|rule): (?P<name>.*?)(?: \((?P<source>[^()]*)\))?\s*$")
STEP_LINE = re.compile(
    r"^\s*- (?P<kind>intent|action): (?P<expected>.*?)(?:\s+# predicted: (?P<predicted>.*))?$"
)
LISTEN = "action_listen"


@dataclass(frozen=True)
class Turn:
    kind: str  # intent or action
    expected: str
    predicted: str | None  # None when the prediction was right


@dataclass(frozen=True)
class FailedStory:
    name: str
    source: Path | None  # the file Rasa read the story from
    turns: tuple[Turn, ...]

    def first_wrong(self) -> tuple[int, Turn] | None:
        """(index among intent and action turns, ignoring action_listen, turn)."""
        index = 0
        for turn in self.turns:
            if turn.predicted is not None:
                return index, turn
            if not (turn.kind == "action" and turn.expected == LISTEN):
                index += 1
        return None


def parse_failed_stories(text: str) -> list[FailedStory]:
    stories: list[FailedStory] = []
    name: str | None = None
    source: Path | None = None
    turns: list[Turn] = []

    def close() -> None:
        if name is not None:
            stories.append(FailedStory(name, source, tuple(turns)))

    for line in text.splitlines():
        story = STORY_LINE.match(line)
        if story:
            close()
            name = story.group("name")
            source = Path(story.group("source")) if story.group("source") else None
            turns = []
            continue
        step = STEP_LINE.match(line)
        if step and name is not None:
            predicted = step.group("predicted")
            expected = _unquote(step.group("expected").strip())
            turns.append(Turn(step.group("kind"), expected,
                              predicted.strip() if predicted else None))
    close()
    return stories


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def predicted_intent(turn: Turn) -> str:
    """The intent part of an intent prediction (`goodbye: bye` -> `goodbye`)."""
    assert turn.predicted is not None
    return turn.predicted.split(": ", 1)[0]


def turn_line(story: Story, index: int) -> int:
    """The line in the test file of the index-th intent or action turn."""
    turns = [s for s in story.steps
             if s.kind in {"intent", "user", "action"} and s.name != LISTEN]
    if 0 <= index < len(turns):
        return turns[index].line
    return turns[-1].line if turns else story.line


def describe(failed: FailedStory) -> str:
    wrong = failed.first_wrong()
    if wrong is None:
        return "Rasa marked it failed but no turn carries a prediction comment"
    index, turn = wrong
    number = index + 1
    if turn.kind == "intent":
        said = turn.predicted.split(": ", 1)[1] if turn.predicted and ": " in turn.predicted \
            else ""
        text = f" for \"{said}\"" if said else ""
        return (f"turn {number}: expected intent '{turn.expected}', "
                f"predicted '{predicted_intent(turn)}'{text}")
    if turn.expected == LISTEN:
        return (f"after turn {index}: expected the bot to wait for the user "
                f"(action_listen), predicted '{turn.predicted}'")
    return f"turn {number}: expected action '{turn.expected}', predicted '{turn.predicted}'"
