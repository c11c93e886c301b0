"""The checks that need Rasa's own code: schema and story structure.

Both import only `rasa.shared` (about 0.5 s, no TensorFlow), and only when the
files they look at changed. Without Rasa in the hook's environment they fail
with a finding that names the check and the fix, rather than pass silently;
the finding involves every file the check would have read, so it is reported
for any commit that touches one of them. `--skip CHECK` is the explicit way out.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hooks.checks.nlu_schema import is_plain_nlu_file, nlu_schema_problems
from hooks.core.problems import Problem
from hooks.core.yaml_lines import LDict, LList, line_of, load_yaml
from hooks.project.model import Project, Story

NEEDS_RASA = (
    "not checked: this check needs Rasa, which cannot be imported in the hook's environment. "
    "Add `additional_dependencies: [\"rasa==3.6.21\"]` (your bot's Rasa pin, with "
    "`language_version: python3.10`) to this hook in .pre-commit-config.yaml, or run the "
    "hook in the bot's own environment (`repo: local`, `language: system`); "
    "`--skip {check}` switches the check off."
)

DOMAIN_SCHEMA = "shared/utils/schemas/domain.yml"
STORIES_SCHEMA = "shared/utils/schemas/stories.yml"
NLU_SCHEMA = "shared/nlu/training_data/schemas/nlu.yml"


def rasa_available() -> bool:
    try:
        return importlib.util.find_spec("rasa.shared") is not None
    except ModuleNotFoundError:
        return False


def missing_rasa(check: str, project: Project, unchecked: Iterable[Path]) -> Problem:
    """The failure that stands in for a check Rasa's absence stopped; it
    involves the files left unchecked so that scoping keeps it."""
    return Problem(
        check, NEEDS_RASA.format(check=check), project.layout.config, 0, frozenset(unchecked)
    )


@contextmanager
def _quiet_rasa() -> Iterator[None]:
    """Silence Rasa's warnings, logs and progress bars for one call, and put
    everything back: the agent calls these checks in a long-lived process."""
    # Rasa reads LOG_LEVEL to decide whether to draw tqdm progress bars.
    saved_level = os.environ.get("LOG_LEVEL")
    os.environ["LOG_LEVEL"] = "ERROR"
    logger = logging.getLogger("rasa")
    saved_logger_level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(saved_logger_level)
        if saved_level is None:
            os.environ.pop("LOG_LEVEL", None)
        else:
            os.environ["LOG_LEVEL"] = saved_level


# ----------------------------------------------------------------- schema


def _line_for_schema_path(tree: Any, path: str) -> int:
    line = line_of(tree, 1)
    node = tree
    for part in [p for p in path.split("/") if p]:
        if isinstance(node, LDict) and part in node:
            line = node.line_of(part)
            node = node[part]
        elif isinstance(node, LList) and part.isdigit() and int(part) < len(node):
            line = node.line_of(int(part))
            node = node[int(part)]
        else:
            break
    return line


def _schemas_for(path: Path, tree: Any, project: Project) -> list[str]:
    if path in project.layout.domain:
        return [DOMAIN_SCHEMA]
    if not isinstance(tree, LDict):
        return []
    schemas = []
    if "nlu" in tree or "responses" in tree:
        schemas.append(NLU_SCHEMA)
    if "stories" in tree or "rules" in tree:
        schemas.append(STORIES_SCHEMA)
    return schemas


def schema_problems(project: Project, files: Iterable[Path]) -> Iterator[Problem]:
    """Rasa's own pykwalify schemas, with errors mapped to file lines."""
    needs_rasa: list[tuple[Path, Any]] = []
    for path in files:
        if path == project.layout.config:
            continue
        tree = load_yaml(path)
        if path not in project.layout.domain and is_plain_nlu_file(tree):
            yield from nlu_schema_problems(path, tree)
        else:
            needs_rasa.append((path, tree))
    if not needs_rasa:
        return
    if not rasa_available():
        yield missing_rasa("schema", project, [path for path, _ in needs_rasa])
        return
    with _quiet_rasa():
        found = list(_rasa_schema_problems(project, needs_rasa))
    yield from found


def _rasa_schema_problems(
    project: Project, needs_rasa: list[tuple[Path, Any]]
) -> Iterator[Problem]:
    from rasa.shared.exceptions import YamlException
    from rasa.shared.utils.validation import YamlValidationException, validate_yaml_schema

    for path, tree in needs_rasa:
        for schema in _schemas_for(path, tree, project):
            try:
                validate_yaml_schema(path.read_text(encoding="utf-8-sig"), schema)
            except YamlValidationException as exc:
                entries = exc.validation_errors or []
                for entry in entries:
                    yield Problem(
                        "schema", f"{entry}; see Rasa's training data format docs.",
                        path, _line_for_schema_path(tree, getattr(entry, "path", "")),
                    )
                if not entries:
                    yield Problem("schema", exc.message, path, 0)
            except YamlException as exc:
                yield Problem("schema", str(exc).splitlines()[0], path, 0)


# ----------------------------------------------------------------- story structure


def _story_lookup(stories: Iterable[Story]) -> dict[str, Story]:
    return {s.name: s for s in stories}


def story_structure_problems(project: Project, max_history: int | None) -> Iterator[Problem]:
    """Rasa's verify_story_structure: the same trackers, the same sliced
    states, the same conflicts, without Rasa's TensorFlow-bound featurizer."""
    if not rasa_available():
        layout = project.layout
        story_files = {s.path for s in project.stories if s.kind in {"story", "rule"}}
        unchecked = {layout.config, *layout.domain, *story_files}
        yield missing_rasa("story-structure", project, unchecked)
        return
    with _quiet_rasa():
        found = list(_rasa_story_structure(project, max_history))
    yield from found


def _rasa_story_structure(project: Project, max_history: int | None) -> Iterator[Problem]:
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted
    from rasa.shared.core.generator import TrainingDataGenerator
    from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
    from rasa.shared.core.training_data.structures import StoryGraph
    from rasa.shared.exceptions import RasaException

    story_files = sorted({s.path for s in project.stories if s.kind in {"story", "rule"}})
    try:
        domain = Domain.load([str(p) for p in project.layout.domain])
        steps = []
        for path in story_files:
            steps.extend(YAMLStoryReader(domain, source_name=str(path)).read_from_file(path))
        graph = StoryGraph(steps)
        trackers = TrainingDataGenerator(
            graph, domain=domain, remove_duplicates=False, augmentation_factor=0
        ).generate_story_trackers()
    except (RasaException, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        yield Problem(
            "story-structure",
            f"not checked: Rasa could not load the stories ({first_line}). Fix that first.",
            project.layout.root, 0, frozenset(project.layout.files),
        )
        return

    def sliced() -> Iterator[tuple[Any, Any, list[Any]]]:
        for tracker in trackers:
            states = tracker.past_states(domain)
            index = 0
            for event in tracker.events:
                if isinstance(event, ActionExecuted):
                    window = states[: index + 1]
                    if max_history:
                        window = window[-max_history:]
                    yield tracker, event, window
                    index += 1

    actions_by_state: dict[str, list[int]] = defaultdict(list)
    for _tracker, event, window in sliced():
        key = json.dumps(window, sort_keys=True)
        event_hash = hash(event)
        if event_hash not in actions_by_state[key] or event.action_name == "action_unlikely_intent":
            actions_by_state[key].append(event_hash)
    conflicting = {k for k, v in actions_by_state.items() if len(v) > 1}

    found: dict[str, tuple[list[Any], dict[str, list[str]]]] = {}
    for tracker, event, window in sliced():
        key = json.dumps(window, sort_keys=True)
        if key in conflicting:
            entry = found.setdefault(key, (window, defaultdict(list)))
            entry[1][str(event)].append(tracker.sender_id)

    by_name = _story_lookup(project.stories)
    involved_base = frozenset(project.layout.domain) | {project.layout.config}
    for window, actions in found.values():
        after = _previous_event(window[-1])
        if after is None:
            continue  # Rasa ignores conflicts at the very start of stories
        parts = [f"{action} predicted in {_names(stories)}" for action, stories in actions.items()]
        names = [n for stories in actions.values() for n in stories]
        stories = [by_name[n] for n in names if n in by_name]
        where = stories[0] if stories else None
        yield Problem(
            "story-structure",
            f"conflict after {after}: " + "; ".join(parts)
            + ". Make the stories agree or tell them apart earlier.",
            where.path if where else project.layout.root,
            where.line if where else 0,
            involved_base | {s.path for s in stories},
        )


def _names(stories: list[str]) -> str:
    unique = list(dict.fromkeys(stories))
    if len(unique) > 3:
        return f"'{unique[0]}', '{unique[1]}' and {len(unique) - 2} other trackers"
    return " and ".join(f"'{s}'" for s in unique)


def _previous_event(state: dict[str, Any] | None) -> str | None:
    if not state:
        return None
    prev = state.get("prev_action", {})
    if prev.get("action_name") and prev["action_name"] != "action_listen":
        return f"action '{prev['action_name']}'"
    if "action_text" in prev:
        return f"bot utterance '{prev['action_text']}'"
    user = state.get("user", {})
    if "intent" in user:
        return f"intent '{user['intent']}'"
    if "text" in user:
        return f"user utterance '{user['text']}'"
    return None
