"""The one NLU change the NLU-comparison tests make to examples/nlubot.

Moving half of `greet`'s examples to `goodbye` is a change whose effect
(greet's F1 drops, greet is confused with goodbye) both the hook's and the
agent's gate tests assert.
"""

from __future__ import annotations

from pathlib import Path

MOVED = ("hello friend", "hey", "hi there", "good evening")  # greet -> goodbye


def move_greetings(bot: Path) -> None:
    """Move the `MOVED` examples of `greet` to `goodbye` in the bot's data/nlu.yml."""
    nlu = bot / "data" / "nlu.yml"
    text = nlu.read_text()
    for utterance in MOVED:
        text = text.replace(f"      - {utterance}\n", "", 1)
    moved = "".join(f"      - {u}\n" for u in MOVED)
    text = text.replace("      - farewell\n", "      - farewell\n" + moved, 1)
    nlu.write_text(text)
