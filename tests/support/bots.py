"""Copies of the example bots, and the deploy host's bare repo to push them to.

Tests change bots freely, so each works on its own copy, without the models and
caches a local run may have left in examples/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.git import git
from tests.support.paths import COFFEEBOT


def copy_bot(source: Path, dest: Path) -> Path:
    """A copy of the bot at `source` in `dest` (not a git repo), without models or caches."""
    shutil.copytree(
        source,
        dest,
        ignore=shutil.ignore_patterns("models", ".rasa", "results", "__pycache__"),
    )
    return dest


# The example bot's training data under Rasa's light components only: no
# TensorFlow, so a model trains in about 10 s and a Rasa server loads it in
# 0.1 s, where the DIET/TED config takes about 60 s for each (2 cores). The
# deploy tests (pipeline, crashes, Docker, hostile commits) are about which
# release is live, not how well a model generalises, and so are the story hook's
# tests (which stories run, the model cache, the report); the real config is
# trained by the NLU hooks' tests and the DIET/TED serving-stall test.
LIGHT_CONFIG = """\
recipe: default.v1
assistant_id: coffeebot
language: en
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 2
    max_ngram: 4
  - name: LogisticRegressionClassifier
    random_state: 42
  - name: CRFEntityExtractor
  - name: EntitySynonymMapper
policies:
  - name: MemoizationPolicy
    max_history: 3
  - name: RulePolicy
"""


def light_config(assistant_id: str) -> str:
    """LIGHT_CONFIG for another bot than the example, under that bot's own assistant_id."""
    return LIGHT_CONFIG.replace("assistant_id: coffeebot", f"assistant_id: {assistant_id}")


# A second custom action for the example bot's actions/actions.py (its imports
# are there): a release that adds an action its model may call.
MENU_ACTION = '''

class ActionTellMenu(Action):
    def name(self) -> Text:
        return "action_tell_menu"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Espresso, latte, cappuccino.")
        return []
'''


def deploy_repo(root: Path) -> tuple[Path, Path]:
    """A bare repo on the "deploy host" and a copy of the example bot (with the
    light config) that pushes to it."""
    bare = root / "coffeebot.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    src = copy_bot(COFFEEBOT, root / "src")
    (src / "config.yml").write_text(LIGHT_CONFIG, encoding="utf-8")
    git(src, "init", "-q", "-b", "main")
    git(src, "config", "commit.gpgsign", "false")
    git(src, "remote", "add", "deploy", str(bare))
    return bare, src


def set_hours(src: Path, hours: str) -> None:
    """The example bot's custom action (actions/actions.py) answers `hours`: a
    change to the action code alone, which a test can tell from a chat reply."""
    actions = src / "actions" / "actions.py"
    code = actions.read_text(encoding="utf-8")
    start = code.index('text="') + len('text="')
    actions.write_text(code[:start] + hours + code[code.index('"', start):], encoding="utf-8")


def push_all(src: Path, message: str) -> str:
    """Every change in `src` committed and pushed to its `deploy` remote; the commit's sha."""
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", message)
    git(src, "push", "-q", "deploy", "main")
    return git(src, "rev-parse", "HEAD")


def light_coffeebot(dest: Path) -> Path:
    """A copy of the example bot with LIGHT_CONFIG (not a git repo)."""
    bot = copy_bot(COFFEEBOT, dest)
    (bot / "config.yml").write_text(LIGHT_CONFIG, encoding="utf-8")
    return bot
