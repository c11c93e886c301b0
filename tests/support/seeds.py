"""Defects seeded into a copy of the example bot, one per kind of finding.

Each seed edits the bot in place and names the check that must catch it, the
file the finding must point at, and the text Rasa's own validator prints for
it (None where Rasa 3.6 reports nothing: our extra checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def replace(path: Path, old: str, new: str) -> None:
    content = path.read_text(encoding="utf-8")
    assert old in content, f"seed anchor {old!r} not in {path}"
    path.write_text(content.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, text: str) -> int:
    """The 1-based line where `text` first appears, so tests survive edits to the bot."""
    content = path.read_text(encoding="utf-8")
    assert text in content, f"{text!r} not in {path}"
    return content[: content.index(text)].count("\n") + 1


STORY = """
  - story: seeded story
    steps:
      - intent: thank
      - action: utter_you_are_welcome
{steps}"""


def _story(bot: Path, steps: str) -> None:
    append(bot / "data" / "stories.yml", STORY.format(steps=steps))


@dataclass(frozen=True)
class Seed:
    name: str
    check: str
    file: str  # relative to the bot
    apply: Callable[[Path], None]
    rasa_says: str | None  # a fragment of Rasa's message, None for our extras


SEEDS: tuple[Seed, ...] = (
    Seed("nlu intent missing from domain", "intent-not-in-domain", "data/nlu.yml",
         lambda b: append(b / "data/nlu.yml",
                          "  - intent: orphan\n    examples: |\n      - orphaned text\n"),
         "labeled with intent 'orphan'"),
    Seed("domain intent without examples", "intent-without-examples", "domain.yml",
         lambda b: replace(b / "domain.yml", "  - thank\n", "  - thank\n  - lonely\n"),
         "The intent 'lonely' is listed in the domain file, but is not found"),
    Seed("example with two intents", "example-multiple-intents", "data/nlu.yml",
         lambda b: replace(b / "data/nlu.yml", "      - cheers\n", "      - cheers\n      - bye\n"),
         "The example 'bye' was found labeled with multiple"),
    Seed("story intent missing from domain", "story-intent-not-in-domain", "data/stories.yml",
         lambda b: _story(b, "      - intent: ghost_intent\n      - action: utter_goodbye\n"),
         "The intent 'ghost_intent' is used in your stories"),
    Seed("intent not used in stories", "intent-unused", "domain.yml",
         lambda b: (replace(b / "domain.yml", "  - thank\n", "  - thank\n  - chitchat\n"),
                    append(b / "data/nlu.yml",
                           "  - intent: chitchat\n    examples: |\n      - how is it going\n")),
         "The intent 'chitchat' is not used in any story or rule"),
    Seed("utterance missing from domain", "utterance-not-in-domain", "data/stories.yml",
         lambda b: _story(b, "      - intent: goodbye\n      - action: utter_ghost\n"),
         "The action 'utter_ghost' is used in the stories, but is not a valid utterance"),
    Seed("response not used", "utterance-unused", "domain.yml",
         lambda b: replace(b / "domain.yml", "responses:\n",
                           "responses:\n  utter_unused:\n    - text: nobody says this\n"),
         "The utterance 'utter_unused' is not used in any story or rule"),
    Seed("action missing from domain", "action-not-in-domain", "data/stories.yml",
         lambda b: _story(b, "      - intent: goodbye\n      - action: action_ghost\n"),
         "The action 'action_ghost' is used in the"),
    Seed("form missing from domain", "form-not-in-domain", "data/stories.yml",
         lambda b: _story(b, "      - intent: goodbye\n      - action: utter_goodbye\n"
                             "      - active_loop: ghost_form\n"),
         "The form 'ghost_form' is used in the"),
    Seed("form slot missing from domain", "form-slot-not-in-domain", "domain.yml",
         lambda b: append(b / "domain.yml",
                          "\nforms:\n  order_form:\n    required_slots:\n      - ghost_slot\n"),
         "The form slot 'ghost_slot' in form 'order_form'"),
    Seed("slot mapping names an unknown form", "slot-mapping-form", "domain.yml",
         lambda b: replace(b / "domain.yml", "        entity: size\n",
                           "        entity: size\n        conditions:\n"
                           "          - active_loop: ghost_form\n"),
         "has a mapping condition for form 'ghost_form'"),
    Seed("story structure conflict", "story-structure", "data/stories.yml",
         lambda b: append(b / "data/stories.yml", "  - story: rude greeting\n    steps:\n"
                          "      - intent: greet\n      - action: utter_goodbye\n"),
         "Story structure conflict"),
    Seed("config without assistant_id", "config-keys", "config.yml",
         lambda b: replace(b / "config.yml", "assistant_id: coffeebot\n", ""),
         "missing the 'assistant_id' mandatory key"),
    Seed("old format version", "format-version", "data/rules.yml",
         lambda b: replace(b / "data/rules.yml", 'version: "3.1"', 'version: "3.0"'),
         "has a lower format version"),
    Seed("schema violation in a story", "schema", "data/stories.yml",
         lambda b: _story(b, "      - intent: goodbye\n        confidence: high\n"),
         "Failed to validate"),
    Seed("entity missing from domain", "entity-not-in-domain", "data/nlu.yml",
         lambda b: replace(b / "data/nlu.yml", "      - coffee to go\n",
                           "      - coffee to [go](ghost_entity)\n"),
         None),
    Seed("slot missing from domain", "slot-not-in-domain", "data/stories.yml",
         lambda b: _story(b, "      - intent: goodbye\n      - slot_was_set:\n"
                             "          - ghost_slot: yes\n      - action: utter_goodbye\n"),
         None),
    Seed("slot mapping from an unknown entity", "slot-mapping-reference", "domain.yml",
         lambda b: replace(b / "domain.yml", "        entity: size\n", "        entity: sise\n"),
         None),
    Seed("declared twice", "domain-duplicate", "domain.yml",
         lambda b: replace(b / "domain.yml", "  - thank\n", "  - thank\n  - greet\n"),
         None),
    Seed("MappingPolicy triggers", "mapping-policy", "domain.yml",
         lambda b: replace(b / "domain.yml", "  - thank\n",
                           "  - thank:\n      triggers: utter_you_are_welcome\n"),
         "is using the MappingPolicy format"),
)
