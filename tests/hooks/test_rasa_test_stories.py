"""rasa-test-stories with real git, real pre-commit and real Rasa 3.6.21.

Training is the expensive part, so the whole module shares one model cache:
it starts with the session's `trained_coffeebot` model filed under the
fingerprint of the tree it was trained from (a real model of exactly that
tree, which is what the hook looks up), plus that training's own Rasa cache.
Only the response-change test trains again, incrementally, through the hook.
The bots train with the light config (tests/support/bots.py): which stories
run, the model cache and the report do not depend on how good the model is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hooks.project.fingerprint import rasa_identity, tree_fingerprint
from hooks.project.layout import layout_for
from hooks.project.load import load_project
from hooks.rasa_test_stories import main, pick_stories
from hooks.stories.results import parse_failed_stories
from tests.support.bots import LIGHT_CONFIG, copy_bot, light_config
from tests.support.git import git, init_repo
from tests.support.hook_main import call_main
from tests.support.precommit import use_hook
from tests.support.seeds import append, replace

TEST_FILE = "tests/test_stories.yml"
# Fixture set-up (training the example bot, building the hook's pre-commit
# env) counts against pytest-timeout; on a loaded 2-core machine it takes minutes.
SLOW = pytest.mark.timeout(2400)
COFFEE = "a coffee order, end to end"
HOURS = "opening hours, end to end"


@pytest.fixture(scope="session")
def story_cache(
    tmp_path_factory: pytest.TempPathFactory, trained_coffeebot: tuple[Path, Path],
    rasa_bin: Path,
) -> Path:
    bot, model = trained_coffeebot
    cache = tmp_path_factory.mktemp("story-cache")
    fingerprint = tree_fingerprint(layout_for(bot), rasa_identity([str(rasa_bin)]))
    (cache / "models").mkdir()
    shutil.copy2(model, cache / "models" / f"{fingerprint}.tar.gz")
    if (bot / ".rasa" / "cache").is_dir():
        shutil.copytree(bot / ".rasa" / "cache", cache / "rasa-cache")
    return cache


@pytest.fixture()
def light_repo(coffeebot: Path) -> Path:
    """The tree `trained_coffeebot` was trained from (the example bot with the light
    config), as a one-commit git repo."""
    (coffeebot / "config.yml").write_text(LIGHT_CONFIG, encoding="utf-8")
    return init_repo(coffeebot)


@pytest.fixture()
def hook_env(story_cache: Path, rasa_bin: Path, pre_commit_home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PRE_COMMIT_HOME": str(pre_commit_home),
        "RASA_GITOPS_RASA": str(rasa_bin),
        "RASA_GITOPS_CACHE_DIR": str(story_cache),
    }


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    return done.returncode, done.stdout + done.stderr


def _use_hook(repo: Path, hook_repo: Path, env: dict[str, str], extra: str = "",
              hook_type: str = "pre-commit") -> None:
    use_hook(repo, hook_repo, "rasa-test-stories", extra)
    code, output = _run(["pre-commit", "install", "--hook-type", hook_type], repo, env)
    assert code == 0, output


def _models(cache: Path) -> set[str]:
    return {p.name for p in (cache / "models").glob("*.tar.gz")}


# ------------------------------------------------------------- through pre-commit


@pytest.mark.rasa
@SLOW
def test_a_commit_that_breaks_a_test_story_fails_and_names_the_story_and_turn(
    hook_repo: Path, light_repo: Path, hook_env: dict[str, str], story_cache: Path
) -> None:
    # The README's config for teams that want the stories checked at commit time.
    _use_hook(light_repo, hook_repo, hook_env, "        stages: [pre-commit]\n")
    models = _models(story_cache)
    replace(light_repo / TEST_FILE, "      - action: utter_confirm_order\n",
            "      - action: utter_goodbye\n")
    git(light_repo, "add", TEST_FILE)

    code, output = _run(["git", "commit", "-m", "expect a goodbye"], light_repo, hook_env)

    assert code != 0, output
    assert "rasa test stories (changed conversations)" in output
    # Only the edited story runs; the other one in the same file is unchanged.
    assert "picked 1 of 2 test stories" in output
    assert f"{TEST_FILE}:3 '{COFFEE}': the story changed in {TEST_FILE}" in output
    assert "no training" in output
    assert (f"{TEST_FILE}:12: story '{COFFEE}' (line 3) failed at turn 4: expected action "
            "'utter_goodbye', predicted ") in output
    assert HOURS not in output
    assert "1 of 1 test stories failed" in output
    report = next(line.split(": ", 1)[1] for line in output.splitlines()
                  if line.startswith("Rasa's report of the failed stories: "))
    assert report.endswith("failed_test_stories.yml")
    failed = parse_failed_stories(Path(report).read_text(encoding="utf-8"))
    assert [f.name for f in failed] == [COFFEE]
    assert "Traceback" not in output
    assert _models(story_cache) == models  # a test-story edit never trains


@pytest.mark.rasa
@SLOW
def test_a_response_change_reruns_the_story_that_uses_it_then_nothing_retrains(
    hook_repo: Path, light_repo: Path, hook_env: dict[str, str], story_cache: Path,
    tmp_path: Path,
) -> None:
    # The manifest's own stage: pre-push, with the remote's commit as the base.
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(light_repo, "remote", "add", "origin", str(remote))
    # verbose: pre-commit shows a passing hook's report only when asked.
    _use_hook(light_repo, hook_repo, hook_env, extra="        verbose: true\n",
              hook_type="pre-push")
    git(light_repo, "push", "-q", "--no-verify", "origin", "main")

    # utter_goodbye: only the opening-hours story (which Rasa passes) uses it.
    pushed = git(light_repo, "rev-parse", "HEAD")
    replace(light_repo / "domain.yml", "Bye, see you soon.", "Goodbye, see you!")
    git(light_repo, "commit", "-q", "-am", "friendlier goodbye")
    models = _models(story_cache)

    code, output = _run(["git", "push", "origin", "main"], light_repo, hook_env)

    assert code == 0, output
    assert "picked 1 of 2 test stories" in output
    assert (f"{TEST_FILE}:17 '{HOURS}': uses action 'utter_goodbye', whose definition "
            "changed in domain.yml") in output
    assert f"'{COFFEE}'" not in output
    assert "model: none for this tree yet; training" in output and "model: trained in" in output
    assert "all 1 picked test stories passed" in output
    trained = _models(story_cache) - models
    assert len(trained) == 1, output

    # The same push checked again, nothing changed since: the model just made is reused.
    code, output = _run(["pre-commit", "run", "rasa-test-stories", "--hook-stage", "pre-push",
                         "--from-ref", pushed, "--to-ref", "HEAD"], light_repo, hook_env)
    assert code == 0, output
    assert "picked 1 of 2 test stories" in output
    assert f"reusing {story_cache / 'models' / next(iter(trained))}" in output
    assert "model: none for this tree yet" not in output and "model: trained" not in output
    assert _models(story_cache) == models | trained


# ------------------------------------------------------------- selection


def _picked(bot: Path) -> dict[str, str]:
    layout = layout_for(bot)
    project = load_project(layout, with_tests=True)
    names = git(bot, "diff", "--name-only", "HEAD").splitlines()
    changed = frozenset((bot / name).resolve() for name in names)
    tests = [s for s in project.stories if s.kind == "test"]
    picks = pick_stories(layout, tests, changed, "HEAD")
    return {p.story.name: p.reason for p in picks}


def test_selection_follows_the_names_a_change_touched(coffeebot_repo: Path) -> None:
    bot = coffeebot_repo
    replace(bot / "domain.yml", "Bye, see you soon.", "Goodbye!")
    assert _picked(bot) == {HOURS: "uses action 'utter_goodbye', whose definition changed "
                                   "in domain.yml"}
    git(bot, "checkout", "-q", "domain.yml")

    # An NLU change to an intent only the coffee story uses.
    replace(bot / "data/nlu.yml", "      - coffee to go\n",
            "      - coffee to go\n      - one flat white please\n")
    assert _picked(bot) == {COFFEE: "uses intent 'order_coffee', whose definition changed in "
                                    "data/nlu.yml"}
    git(bot, "checkout", "-q", "data/nlu.yml")

    # A training story touches every name it uses, before and after the edit.
    replace(bot / "data/stories.yml", "      - intent: goodbye\n      - action: utter_goodbye\n",
            "")
    assert set(_picked(bot)) == {COFFEE, HOURS}
    git(bot, "checkout", "-q", "data/stories.yml")

    # A new response nobody tests, and a version bump, pick nothing.
    replace(bot / "domain.yml", "responses:\n", "responses:\n  utter_extra:\n    - text: extra\n")
    replace(bot / "domain.yml", 'version: "3.1"', 'version: "3.0"')
    assert _picked(bot) == {}
    git(bot, "checkout", "-q", "domain.yml")

    # The session config and the config affect every prediction.
    replace(bot / "domain.yml", "session_expiration_time: 60", "session_expiration_time: 30")
    assert all("session_config" in r for r in _picked(bot).values()) and len(_picked(bot)) == 2
    git(bot, "checkout", "-q", "domain.yml")
    replace(bot / "config.yml", "epochs: 40", "epochs: 41")
    assert set(_picked(bot).values()) == {"config.yml changed (the config affects every "
                                          "prediction)"}


def test_an_edited_test_story_is_picked_alone(coffeebot_repo: Path) -> None:
    tests = coffeebot_repo / "tests" / "test_stories.yml"
    replace(tests, "      - user: |\n          bye\n", "      - user: |\n          goodbye\n")
    assert _picked(coffeebot_repo) == {HOURS: "the story changed in tests/test_stories.yml"}
    # Moving a story changes no verdict: the same block is still in the file.
    git(coffeebot_repo, "checkout", "-q", str(tests))
    text = tests.read_text(encoding="utf-8")
    first, second = text.split("  - story: opening hours")
    tests.write_text(first.replace("stories:\n", "stories:\n  - story: opening hours"
                                   + second.rstrip("\n") + "\n"), encoding="utf-8")
    assert _picked(coffeebot_repo) == {}


def test_selection_of_an_entity_change(coffeebot_repo: Path) -> None:
    replace(coffeebot_repo / "data/nlu.yml", "[large](size)", "[big](size)")
    picked = _picked(coffeebot_repo)
    assert set(picked) == {COFFEE}
    assert "data/nlu.yml" in picked[COFFEE]


# ------------------------------------------------------------- bad input


def _hook(bot: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    return call_main(main, bot, args, capsys)


@pytest.fixture()
def no_rasa(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A hook environment without Rasa: no rasa beside python, none configured."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("RASA_GITOPS_RASA", raising=False)


def test_rasa_missing_is_a_clear_error(
    coffeebot_repo: Path, no_rasa: None, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    code, output = _hook(coffeebot_repo, "--all", "--cache-dir", str(tmp_path / "c"),
                         capsys=capsys)
    assert code == 1
    assert "Rasa is not installed in this hook's environment" in output
    assert "RASA_GITOPS_RASA" in output and "Traceback" not in output


def test_no_test_stories_is_nothing_to_test(
    coffeebot_repo: Path, no_rasa: None, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(coffeebot_repo / "tests")
    code, output = _hook(coffeebot_repo, "data/nlu.yml", capsys=capsys)
    assert code == 0, output
    assert "nothing to test" in output and "no test stories" in output


def test_a_change_no_test_story_uses_is_nothing_to_test(
    coffeebot_repo: Path, no_rasa: None, capsys: pytest.CaptureFixture[str]
) -> None:
    append(coffeebot_repo / "data/nlu.yml", "  - synonym: big\n    examples: |\n      - huge\n")
    replace(coffeebot_repo / "domain.yml", "  utter_greet:\n",
            "  utter_spare:\n    - text: spare\n  utter_greet:\n")
    code, output = _hook(coffeebot_repo, "domain.yml", capsys=capsys)
    assert code == 0, output
    assert "no test story uses what changed" in output
    code, output = _hook(coffeebot_repo, "README.md", capsys=capsys)
    assert code == 0, output
    assert "nothing to test: no file of a Rasa bot changed" in output


def test_a_broken_test_story_file_is_a_located_error(
    coffeebot_repo: Path, no_rasa: None, capsys: pytest.CaptureFixture[str]
) -> None:
    replace(coffeebot_repo / TEST_FILE, "      - action: utter_greet\n",
            "      - action: [utter_greet\n")
    code, output = _hook(coffeebot_repo, TEST_FILE, capsys=capsys)
    assert code == 1
    assert f"{TEST_FILE}:" in output and "YAML syntax error" in output
    assert "Traceback" not in output

    (coffeebot_repo / TEST_FILE).write_text("- just\n- a list\n", encoding="utf-8")
    code, output = _hook(coffeebot_repo, TEST_FILE, capsys=capsys)
    assert code == 1
    assert f"{TEST_FILE}:1: this test file holds no `stories:` list" in output


def test_a_model_that_fails_to_train_is_a_clear_error(
    coffeebot_repo: Path, rasa_bin: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RASA_GITOPS_RASA", str(rasa_bin))
    replace(coffeebot_repo / "config.yml", "  - name: EntitySynonymMapper\n",
            "  - name: NoSuchComponent\n")
    code, output = _hook(coffeebot_repo, "config.yml", "--cache-dir", str(tmp_path / "cache"),
                         capsys=capsys)
    assert code == 1, output
    assert "`rasa train` failed" in output and "NoSuchComponent" in output
    assert "no story was tested" in output
    assert not list((tmp_path / "cache").glob("models/*.tar.gz"))


def test_the_cache_is_pruned_to_its_bound(tmp_path: Path) -> None:
    from hooks.stories.model_cache import ModelCache

    cache = ModelCache(tmp_path, max_bytes=2500)
    cache.models.mkdir()
    for index in range(4):
        path = cache.models / f"m{index}.tar.gz"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1000 + index, 1000 + index))
    cache.find("m0")  # used just now: kept over older ones
    removed = cache.prune()
    assert sorted(p.name for p in removed) == ["m1.tar.gz", "m2.tar.gz"]
    assert sorted(p.name for p in cache.models.iterdir()) == ["m0.tar.gz", "m3.tar.gz"]


# ------------------------------------------------------------- verdict parity


PER_STORY = """
import asyncio, json, sys
from pathlib import Path
from rasa.core.agent import Agent
from rasa.core.test import WrongPredictionException, test

async def main(model, folder):
    agent = Agent.load(model_path=model)
    verdicts = {}
    for story in sorted(Path(folder).iterdir()):
        (story / "out").mkdir()
        try:
            await test(str(story / "test_one.yml"), agent, e2e=True, disable_plotting=True,
                       fail_on_prediction_errors=True, out_directory=str(story / "out"))
            verdicts[story.name] = False
        except WrongPredictionException:
            verdicts[story.name] = True
    print(json.dumps(verdicts))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _formbot(shared_bots: Path, dest: Path) -> Path:
    bot = copy_bot(shared_bots / "rasa-examples-formbot", dest / "formbot")
    # The parity holds on any model, so the bot trains with the light config:
    # its own (DIET and TED, 100 epochs each) took about 5 minutes on 2 cores.
    # The test still checks that some, not all, of its stories fail on it.
    (bot / "config.yml").write_text(light_config("form_bot"), encoding="utf-8")
    # One story made to fail, so both verdicts are exercised.
    replace(bot / "tests/test_stories.yml", "  - action: utter_chitchat\n",
            "  - action: utter_greet\n")
    return init_repo(bot)


@pytest.mark.rasa
@SLOW
@pytest.mark.corpus
def test_verdicts_equal_rasa_fail_on_prediction_errors_per_story_on_formbot(
    shared_bots: Path, tmp_path: Path, story_cache: Path, rasa_bin: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    bot = _formbot(shared_bots, tmp_path)
    monkeypatch.setenv("RASA_GITOPS_RASA", str(rasa_bin))
    code, output = _hook(bot, "--all", "--cache-dir", str(story_cache), capsys=capsys)
    ours_failed = {f.name for f in parse_failed_stories(
        next(Path(line.split(": ", 1)[1]) for line in output.splitlines()
             if line.startswith("Rasa's report")).read_text(encoding="utf-8"))}
    assert code == 1, output
    model = story_cache / "models" / (tree_fingerprint(
        layout_for(bot), rasa_identity([str(rasa_bin)])) + ".tar.gz")

    project = load_project(layout_for(bot), with_tests=True)
    source = yaml.safe_load((bot / "tests/test_stories.yml").read_text(encoding="utf-8"))
    folder = tmp_path / "one"
    for number, item in enumerate(source["stories"]):
        single = folder / f"story{number}" / "test_one.yml"
        single.parent.mkdir(parents=True)
        single.write_text(yaml.safe_dump({"version": "3.1", "stories": [item]}),
                          encoding="utf-8")
    # What `rasa test core --e2e --fail-on-prediction-errors --stories FILE` runs,
    # once per story, in one process: Rasa raises at a story's first wrong
    # prediction, so each story needs a run of its own, and loading the model
    # once instead of once per story saves about a minute a story.
    done = subprocess.run(
        [str(rasa_bin.parent / "python"), "-c", PER_STORY, str(model), str(folder)],
        cwd=bot, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "RASA_TELEMETRY_ENABLED": "false"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    verdicts = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(verdicts) == len(source["stories"])
    rasa_failed = {source["stories"][int(name.removeprefix("story"))]["story"]
                   for name, failed in verdicts.items() if failed}
    tests = [s for s in project.stories if s.kind == "test"]
    assert len(tests) > len(rasa_failed) > 0
    assert ours_failed == rasa_failed


def test_files_passed_but_unchanged_touch_nothing(coffeebot_repo: Path) -> None:
    """`pre-commit run --all-files` passes every file; only real changes count."""
    layout = layout_for(coffeebot_repo)
    tests = [s for s in load_project(layout, with_tests=True).stories if s.kind == "test"]
    every_file = frozenset((*layout.files, *layout.tests))
    assert pick_stories(layout, tests, every_file, "HEAD") == []
