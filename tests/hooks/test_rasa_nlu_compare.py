"""rasa-nlu-compare against real Rasa 3.6.21 on examples/nlubot (4 intents x 8).

Training is shared: one module-scoped run compares the bot's first commit with a
working tree that moves four `greet` examples to `goodbye`. Every later test
reuses its cache, so only that run and the split run train anything.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from hooks.nlu.compare import (
    HEATMAP_PNG,
    REPORT_JSON,
    REPORT_MD,
    Options,
    _notes,
    compare,
    write_report,
)
from hooks.nlu.data import (
    cv_folds,
    load_nlu_inputs,
    nlu_yaml,
    read_nlu_file,
    unseeded_components,
)
from hooks.nlu.metrics import intent_scores
from hooks.nlu.report import Comparison, Side, Thresholds, build, gate, markdown
from hooks.rasa_nlu_compare import main
from tests.support.bots import copy_bot
from tests.support.ci import need
from tests.support.git import git, init_repo
from tests.support.nlu import MOVED, move_greetings
from tests.support.paths import NLUBOT
from tests.support.precommit import use_hook

FOLDS = "4"


@dataclass
class Run:
    bot: Path
    out: Path
    cache: Path
    rc: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict:  # type: ignore[type-arg]
        return json.loads((self.out / REPORT_JSON).read_text())

    def args(self, *extra: str) -> list[str]:
        return ["--project", str(self.bot), "--folds", FOLDS, "--out", str(self.out),
                "--cache-dir", str(self.cache), *extra]


@pytest.fixture(scope="module")
def rasa_env(rasa_bin: Path) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RASA_GITOPS_RASA", str(rasa_bin))
        mp.setenv("PATH", f"{rasa_bin.parent}{os.pathsep}{os.environ['PATH']}")
        yield


@pytest.fixture(scope="module")
def moved_run(
    tmp_path_factory: pytest.TempPathFactory, rasa_env: None
) -> Iterator[Run]:
    """Compare the first commit (base) with the greet->goodbye move (working tree)."""
    bot = init_repo(copy_bot(NLUBOT, tmp_path_factory.mktemp("moved") / "nlubot"))
    move_greetings(bot)
    out, cache = bot / "results" / "nlu-compare", bot / ".rasa" / "nlu-compare"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["--project", str(bot), "--folds", FOLDS, "--out", str(out),
                   "--cache-dir", str(cache), "--base", "main"])
    yield Run(bot, out, cache, rc, stdout.getvalue(), stderr.getvalue())


def _intent(report: dict, name: str) -> dict:  # type: ignore[type-arg]
    return next(row for row in report["intents"] if row["intent"] == name)


# ----------------------------------------------------------------- real Rasa


@pytest.mark.rasa
def test_moving_examples_shows_the_new_confusion_and_a_negative_delta(moved_run: Run) -> None:
    assert moved_run.rc == 0, moved_run.stderr
    assert "training and testing 8 NLU model(s) for base and head" in moved_run.stdout
    report = moved_run.report
    assert report["mode"]["kind"] == "cv" and report["mode"]["folds"] == 4
    assert report["mode"]["rasa"] == "3.6.21"
    assert report["before"]["examples"] == report["after"]["examples"] == 32
    greet = _intent(report, "greet")
    assert greet["f1_delta"] < 0
    # worst first: greet, which lost half its examples to goodbye, leads the table
    assert report["intents"][0]["intent"] == "greet"
    pair = next(p for p in report["confused_more"]
                if p["truth"] == "greet" and p["predicted"] == "goodbye")
    assert pair["after"] > pair["before"]
    assert pair["examples"], "a confused pair comes with example utterances"
    markdown = (moved_run.out / REPORT_MD).read_text()
    assert "| greet | goodbye |" in markdown
    assert "### Per intent (worst first)" in markdown
    macro = next(r for r in report["overall"] if r["metric"] == "intent macro F1")
    assert macro["delta"] < 0
    assert report["before"]["entity"]["micro_avg"]["support"] > 0  # entities are scored too


@pytest.mark.rasa
def test_heatmap_is_a_real_png_of_the_changed_side(moved_run: Run) -> None:
    png = moved_run.out / HEATMAP_PNG
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert width >= 300 and height >= 300
    matplotlib_image = pytest.importorskip("matplotlib.image")
    pixels = matplotlib_image.imread(str(png))
    assert pixels.shape[:2] == (height, width)
    # the changed cells are framed in red: some pixels are strongly red
    red = (pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)
    assert red.sum() > 50
    assert moved_run.report["changed_cells"]


@pytest.mark.rasa
def test_unchanged_tree_reports_zero_deltas_and_trains_nothing(
    moved_run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    git(moved_run.bot, "checkout", "--", "data/nlu.yml")  # back to the base's data
    try:
        cache_before = sorted(p.name for p in moved_run.cache.iterdir())
        assert main(moved_run.args("--base", "main")) == 0
        assert "unchanged" in capsys.readouterr().out
        assert not (moved_run.out / REPORT_MD).exists()

        assert main(moved_run.args("--base", "main", "--force")) == 0
        out = capsys.readouterr().out
        assert "training and testing" not in out
        assert sorted(p.name for p in moved_run.cache.iterdir()) == cache_before
        report = moved_run.report
        assert report["unchanged"] is True
        assert report["before"]["cached"] and report["after"]["cached"]
        assert all(abs(row["delta"]) < 1e-12 for row in report["overall"])
        assert all(abs(row["f1_delta"]) < 1e-12 for row in report["intents"])
        assert report["confused_more"] == []
    finally:
        move_greetings(moved_run.bot)


@pytest.mark.rasa
def test_gate_fails_above_thresholds_and_passes_below(
    moved_run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(moved_run.args("--max-intent-f1-drop", "1", "--max-macro-f1-drop", "1")) == 0
    assert moved_run.report["gate"] == {"passed": True, "failures": []}
    assert "Gate passed" in (moved_run.out / REPORT_MD).read_text()
    greet_drop = -_intent(moved_run.report, "greet")["f1_delta"]
    assert greet_drop > 0.05

    # just above the drop passes, just below it fails
    assert main(moved_run.args("--max-intent-f1-drop", f"{greet_drop + 0.001:.3f}")) == 0
    assert main(moved_run.args("--max-intent-f1-drop", f"{greet_drop - 0.001:.3f}")) == 1
    err = capsys.readouterr().err
    assert "gate: intent 'greet' F1 dropped by" in err
    assert moved_run.report["gate"]["passed"] is False
    assert "Gate failed" in (moved_run.out / REPORT_MD).read_text()

    assert main(moved_run.args("--max-macro-f1-drop", "0.01")) == 1
    assert "intent macro F1 dropped by" in capsys.readouterr().err


@pytest.mark.rasa
def test_gate_function_for_the_agent(moved_run: Run, tmp_path: Path) -> None:
    base = tmp_path / "base"
    git(moved_run.bot, "worktree", "add", "-q", "--detach", str(base), "main")
    try:
        comparison = compare(base, moved_run.bot,
                             Options(folds=4, cache_dir=moved_run.cache))
    finally:
        git(moved_run.bot, "worktree", "remove", "--force", str(base))
    assert comparison.base.cached and comparison.head.cached  # the hook's cache, reused
    greet = next(r for r in comparison.intents if r.intent == "greet")
    assert greet.f1_delta is not None and greet.f1_delta < 0
    assert gate(comparison, Thresholds()) == []
    assert gate(comparison, Thresholds(max_intent_f1_drop=1.0, max_macro_f1_drop=1.0)) == []
    failures = gate(comparison, Thresholds(max_intent_f1_drop=0.0))
    assert any("'greet'" in f for f in failures)


@pytest.mark.rasa
def test_split_mode_makes_one_rasa_split_and_reuses_it(moved_run: Run, tmp_path: Path) -> None:
    base = tmp_path / "base"
    git(moved_run.bot, "worktree", "add", "-q", "--detach", str(base), "main")
    cache = tmp_path / "cache"
    try:
        comparison = compare(base, moved_run.bot, Options(split=True, cache_dir=cache))
    finally:
        git(moved_run.bot, "worktree", "remove", "--force", str(base))
    assert comparison.mode["kind"] == "split"
    assert len(list(cache.glob("split-*.json"))) == 1
    base_texts = sorted(str(p["text"]) for p in comparison.base.predictions)
    head_texts = sorted(str(p["text"]) for p in comparison.head.predictions)
    assert base_texts == head_texts, "both sides are tested on the same utterances"
    assert 0 < len(base_texts) < 32
    moved_in_test = [p for p in comparison.head.predictions if p["text"] in MOVED]
    assert all(p["intent"] == "goodbye" for p in moved_in_test)


# ----------------------------------------------------------------- bad input


def _quiet_run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.err


@pytest.fixture()
def small_repo(tmp_path: Path) -> Path:
    return init_repo(copy_bot(NLUBOT, tmp_path / "nlubot"))


def test_base_revision_that_does_not_exist(
    small_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_repo / "results" / "nlu-compare"
    out.mkdir(parents=True)
    (out / REPORT_MD).write_text("## NLU comparison\nold report that looks like success\n")
    rc, err = _quiet_run(["--project", str(small_repo), "--base", "no-such-rev"], capsys)
    assert rc == 1
    assert "base revision 'no-such-rev' does not exist" in err
    assert not (out / REPORT_MD).exists(), "a stale report must not survive a failed run"


def test_base_whose_data_does_not_parse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rasa_env: None
) -> None:
    bot = copy_bot(NLUBOT, tmp_path / "nlubot")
    good = (bot / "data" / "nlu.yml").read_text()
    (bot / "data" / "nlu.yml").write_text('version: "3.1"\nnlu:\n  - intent: greet\n   bad: [\n')
    init_repo(bot)
    (bot / "data" / "nlu.yml").write_text(good)
    rc, err = _quiet_run(["--project", str(bot), "--base", "HEAD", "--folds", FOLDS], capsys)
    assert rc == 1
    assert "(HEAD)" in err and "data/nlu.yml" in err
    assert "Traceback" not in err
    assert not (bot / "results" / "nlu-compare" / REPORT_MD).exists()


def test_too_few_examples_for_the_folds(
    small_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    move_greetings(small_repo)  # greet keeps 4 examples
    rc, err = _quiet_run(["--project", str(small_repo), "--base", "main", "--folds", "5"], capsys)
    assert rc == 1
    assert "intent 'greet' has 4 example(s)" in err
    assert "5-fold cross-validation needs at least 5 per intent" in err
    assert "data/nlu.yml:" in err


def test_empty_nlu_set(small_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (small_repo / "data" / "nlu.yml").write_text('version: "3.1"\nnlu: []\n')
    rc, err = _quiet_run(["--project", str(small_repo), "--base", "main"], capsys)
    assert rc == 1
    assert "working tree: no NLU examples found" in err
    assert not (small_repo / "results" / "nlu-compare").exists()


def test_not_a_git_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bot = copy_bot(NLUBOT, tmp_path / "nlubot")
    rc, err = _quiet_run(["--project", str(bot)], capsys)
    assert rc == 1
    assert "not inside a git repository" in err


def test_thresholds_out_of_range(small_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _quiet_run(["--project", str(small_repo), "--max-intent-f1-drop", "5"], capsys)
    assert rc == 1 and "F1 points from 0 to 1" in err


# ----------------------------------------------------------------- pure parts


def test_folds_are_shared_stratified_and_seeded(tmp_path: Path) -> None:
    base_bot = copy_bot(NLUBOT, tmp_path / "base")
    head_bot = copy_bot(NLUBOT, tmp_path / "head")
    move_greetings(head_bot)
    base, head = load_nlu_inputs(base_bot), load_nlu_inputs(head_bot)
    base_folds = cv_folds(base, 4, seed=7)
    head_folds = cv_folds(head, 4, seed=7, reuse=base_folds)
    assert base_folds == cv_folds(base, 4, seed=7)
    assert base_folds != cv_folds(base, 4, seed=8)
    assert all(head_folds[t] == base_folds[t] for t in base_folds)
    for intent in base.intent_counts():
        folds = [base_folds[e.text] for e in base.examples if e.intent == intent]
        assert sorted(folds) == [0, 0, 1, 1, 2, 2, 3, 3]  # eight examples, two per fold


def test_fold_files_keep_entity_markup_and_read_back(tmp_path: Path) -> None:
    inputs = load_nlu_inputs(NLUBOT)
    path = tmp_path / "fold.yml"
    path.write_text(nlu_yaml(list(reversed(inputs.examples)), inputs.extras))
    examples, _ = read_nlu_file(path)
    assert sorted((e.intent, e.raw) for e in examples) == sorted(
        (e.intent, e.raw) for e in inputs.examples)
    assert any("[large](size)" in e.raw for e in examples)


def test_intent_scores_match_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(3)
    labels = ["a", "b", "c", "d"]
    pairs = [(rng.choice(labels), rng.choice(labels[:3])) for _ in range(200)]
    ours, accuracy = intent_scores(pairs)
    truth, predicted = zip(*pairs, strict=True)
    theirs = metrics.classification_report(truth, predicted, output_dict=True, zero_division=0)
    for label, scores in ours.items():
        assert scores.precision == pytest.approx(theirs[label]["precision"])
        assert scores.recall == pytest.approx(theirs[label]["recall"])
        assert scores.f1 == pytest.approx(theirs[label]["f1-score"])
    assert accuracy == pytest.approx(theirs["accuracy"])


def test_missing_rasa_is_a_clear_message(
    small_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    need(shutil.which("git") is not None, "git is needed")
    move_greetings(small_repo)
    monkeypatch.setenv("RASA_GITOPS_RASA", str(small_repo / "no-rasa-here"))
    rc, err = _quiet_run(["--project", str(small_repo), "--base", "main", "--folds", "3"], capsys)
    assert rc == 1
    assert "no-rasa-here" in err and "Traceback" not in err


def _predictions(pairs: list[tuple[str, str, str]]) -> tuple[dict, ...]:  # type: ignore[type-arg]
    return tuple({"text": t, "intent": i, "predicted": p, "confidence": 0.9,
                  "entities": [], "predicted_entities": []} for t, i, p in pairs)


def _synthetic() -> Comparison:
    before = _predictions([("hi", "greet", "greet"), ("hey", "greet", "greet"),
                           ("bye", "goodbye", "goodbye"), ("ciao", "goodbye", "goodbye")])
    after = _predictions([("hi", "greet", "goodbye"), ("hey", "greet", "greet"),
                          ("bye", "goodbye", "goodbye"), ("ciao", "goodbye", "goodbye")])
    return build({"kind": "cv", "folds": 2, "seed": 1}, Side("base", "a", True, before),
                 Side("head", "b", False, after), unchanged=False)


def test_gate_on_a_known_comparison() -> None:
    comparison = _synthetic()
    greet = next(r for r in comparison.intents if r.intent == "greet")
    assert comparison.intents[0].intent == "greet"  # worst first
    assert greet.f1_delta == pytest.approx(2 / 3 - 1)
    assert gate(comparison, Thresholds(max_intent_f1_drop=0.34)) == []
    assert len(gate(comparison, Thresholds(max_intent_f1_drop=0.33))) == 1
    macro_drop = comparison.before.macro.f1 - comparison.after.macro.f1
    assert gate(comparison, Thresholds(max_macro_f1_drop=macro_drop + 0.001)) == []
    assert gate(comparison, Thresholds(max_macro_f1_drop=macro_drop - 0.001))
    pair = comparison.confused_more[0]
    assert (pair.truth, pair.predicted, pair.before, pair.after) == ("greet", "goodbye", 0, 1)
    assert pair.examples == ("hi",)


def test_report_without_matplotlib_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hooks.nlu.compare as nlu_compare

    monkeypatch.setattr(nlu_compare, "matplotlib_available", lambda: False)
    written, skipped = write_report(_synthetic(), tmp_path, [])
    assert [p.name for p in written] == [REPORT_MD, REPORT_JSON]
    assert skipped is not None and "matplotlib" in skipped and "rasa-gitops[report]" in skipped
    assert not (tmp_path / HEATMAP_PNG).exists()
    assert "Gate passed" in (tmp_path / REPORT_MD).read_text()
    assert json.loads((tmp_path / REPORT_JSON).read_text())["gate"]["passed"] is True


def test_unseeded_pipeline_is_called_out_in_the_report() -> None:
    inputs = load_nlu_inputs(NLUBOT)
    assert unseeded_components(inputs) == []
    diet = replace(inputs, config={**inputs.config, "pipeline": [
        {"name": "WhitespaceTokenizer"}, {"name": "DIETClassifier", "epochs": 5}]})
    assert unseeded_components(diet) == ["DIETClassifier"]
    notes = _notes(inputs, diet, Options(head_label="working tree"))
    assert notes[0].startswith("the NLU pipeline itself changed")
    assert "working tree: DIETClassifier has no fixed random_seed" in notes[1]
    comparison = _synthetic()
    comparison.notes = notes
    assert "> ⚠️ working tree: DIETClassifier" in markdown(comparison)


# ----------------------------------------------------------------- the range to compare


@pytest.fixture()
def moved_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bot with the greet->goodbye move committed on main: HEAD~1 -> HEAD."""
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF"):
        monkeypatch.delenv(name, raising=False)
    bot = init_repo(copy_bot(NLUBOT, tmp_path / "nlubot"))
    move_greetings(bot)
    git(bot, "commit", "-q", "-am", "move greetings")
    return bot


def test_the_range_pre_commit_gives_is_the_range_compared(moved_commit: Path) -> None:
    from hooks.nlu.revisions import WORKING_TREE, resolve_range

    parent, head = git(moved_commit, "rev-parse", "HEAD~1"), git(moved_commit, "rev-parse", "HEAD")
    given = {"PRE_COMMIT_FROM_REF": "HEAD~1", "PRE_COMMIT_TO_REF": "HEAD"}
    exact = resolve_range(moved_commit, env=given)
    assert (exact.base, exact.head) == (parent, head)
    assert "(HEAD~1)" in exact.base_label and "(HEAD)" in exact.head_label
    # The command line names a range too, and wins over the environment.
    flags = resolve_range(moved_commit, base=head, head=head, env=given)
    assert (flags.base, flags.head) == (head, head)
    # Only a head: the base is its merge base with main.
    only_head = resolve_range(moved_commit, env={"PRE_COMMIT_TO_REF": "HEAD~1"})
    assert (only_head.base, only_head.head) == (parent, parent)
    # No range: today's default, the merge base with main against the working tree.
    default = resolve_range(moved_commit, env={})
    assert (default.base, default.head, default.head_label) == (head, None, WORKING_TREE)


def test_without_a_range_a_committed_change_is_nothing_to_compare(
    moved_commit: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Why the range matters: on main, the merge base is HEAD itself, so the
    # default compares HEAD with HEAD. pre-commit's range must not do that.
    rc = main(["--project", str(moved_commit), "--folds", FOLDS])
    out = capsys.readouterr().out
    assert rc == 0 and "nothing to compare" in out, out


def test_pre_push_range_compares_the_pushed_commits(
    moved_run: Run, moved_commit: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The same change as moved_run, committed: with its cache, nothing trains.
    monkeypatch.setenv("PRE_COMMIT_FROM_REF", "HEAD~1")
    monkeypatch.setenv("PRE_COMMIT_TO_REF", "HEAD")
    (moved_commit / "data" / "nlu.yml").write_text("not even YAML: [\n")  # the tree is unused
    out = moved_commit / "results" / "nlu-compare"
    rc = main(["--project", str(moved_commit), "--folds", FOLDS, "--out", str(out),
               "--cache-dir", str(moved_run.cache)])
    printed = capsys.readouterr()
    assert rc == 0, printed.out + printed.err
    assert "nothing to compare" not in printed.out
    assert "training and testing" not in printed.out
    report = json.loads((out / REPORT_JSON).read_text())
    assert _intent(report, "greet")["f1_delta"] < 0
    assert report["intents"][0]["intent"] == "greet"
    assert any(p["truth"] == "greet" and p["predicted"] == "goodbye"
               for p in report["confused_more"])


def test_pre_commit_passes_its_range_and_the_hook_compares_it(
    moved_run: Run, hook_repo: Path, pre_commit_home: Path, rasa_bin: Path, tmp_path: Path
) -> None:
    # Through real pre-commit: `--from-ref/--to-ref` (as at pre-push) reach the
    # hook as PRE_COMMIT_FROM_REF/PRE_COMMIT_TO_REF. Rasa comes from
    # RASA_GITOPS_RASA, so the hook's own env needs none; the cache of
    # moved_run holds both sides, so nothing trains.
    bot = init_repo(copy_bot(NLUBOT, tmp_path / "nlubot"))
    use_hook(bot, hook_repo, "rasa-nlu-compare",
             f"        args: [--folds, '{FOLDS}', --cache-dir, '{moved_run.cache}']\n")
    move_greetings(bot)
    git(bot, "commit", "-q", "-am", "move greetings")
    env = {**os.environ, "PRE_COMMIT_HOME": str(pre_commit_home),
           "RASA_GITOPS_RASA": str(rasa_bin)}
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF"):
        env.pop(name, None)
    done = subprocess.run(
        ["pre-commit", "run", "rasa-nlu-compare", "--hook-stage", "manual", "--verbose",
         "--from-ref", "HEAD~1", "--to-ref", "HEAD"],
        cwd=bot, env=env, capture_output=True, text=True, timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "nothing to compare" not in output and "intent macro F1" in output, output
    report = json.loads((bot / "results" / "nlu-compare" / REPORT_JSON).read_text())
    assert _intent(report, "greet")["f1_delta"] < 0
    assert "(HEAD~1)" in report["before"]["label"] and "(HEAD)" in report["after"]["label"]
    assert report["before"]["cached"] and report["after"]["cached"]
