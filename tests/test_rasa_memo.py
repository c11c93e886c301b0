"""The session memo of `rasa train` (tests/support/rasa_memo.py), without Rasa:
a fake trainer, or a fake `rasa.__main__`, stands in for the real training."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from tests.support.bots import LIGHT_CONFIG
from tests.support.rasa_memo import (
    REUSED,
    STORE,
    main,
    memo_key,
    memo_rasa,
    parse_train,
    train_with_memo,
)

VERSION = "3.6.21"


def _bot(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "config.yml").write_text(LIGHT_CONFIG, encoding="utf-8")
    (root / "domain.yml").write_text("version: '3.1'\nintents: [greet]\n", encoding="utf-8")
    (root / "data" / "nlu.yml").write_text("version: '3.1'\nnlu: []\n", encoding="utf-8")
    return root


def _args(bot: Path, out: Path, name: str) -> list[str]:
    """As hooks/stories/train.py's `train_model` calls it: absolute paths, cwd the bot."""
    return ["--config", str(bot / "config.yml"), "--domain", str(bot / "domain.yml"),
            "--data", "data", "--out", str(out), "--fixed-model-name", name]


class FakeTrainer:
    def __init__(self, out: Path, name: str, code: int = 0) -> None:
        self.model, self.code, self.calls = out / f"{name}.tar.gz", code, 0

    def __call__(self) -> int:
        self.calls += 1
        self.model.parent.mkdir(parents=True, exist_ok=True)
        self.model.write_bytes(f"model {self.calls}".encode())
        return self.code


def _train(bot: Path, store: Path, name: str, code: int = 0,
           said: list[str] | None = None) -> FakeTrainer:
    out = bot / "models"
    trainer = FakeTrainer(out, name, code)
    done = train_with_memo(_args(bot, out, name), store, version=VERSION, train=trainer,
                           say=(said if said is not None else []).append)
    assert done == code
    return trainer


def test_a_second_host_with_the_same_files_reuses_the_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    first = _bot(tmp_path / "host-1" / "worktree")
    monkeypatch.chdir(first)
    assert _train(first, store, "release-1").calls == 1
    second = _bot(tmp_path / "host-2" / "worktree")  # another absolute path, the same files
    monkeypatch.chdir(second)
    said: list[str] = []
    trainer = _train(second, store, "release-3", said=said)
    assert trainer.calls == 0
    assert trainer.model.read_bytes() == b"model 1"
    assert said == [f"{REUSED}: {trainer.model}"]


def test_a_changed_data_file_or_argument_trains_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    bot = _bot(tmp_path / "bot")
    monkeypatch.chdir(bot)
    _train(bot, store, "release-1")
    (bot / "data" / "nlu.yml").write_text("version: '3.1'\nnlu: [] # changed\n")
    assert _train(bot, store, "release-2").calls == 1
    key = memo_key(parse_train(_args(bot, bot, "x")) or pytest.fail("not memoized"), VERSION)
    forced = parse_train([*_args(bot, bot, "x"), "--force"])
    assert forced is not None and memo_key(forced, VERSION) != key
    assert memo_key(forced._replace(other=[]), "3.6.20") != key  # another Rasa


def test_a_failed_training_stores_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    bot = _bot(tmp_path / "bot")
    monkeypatch.chdir(bot)
    assert _train(bot, store, "release-1", code=1).calls == 1
    assert not store.exists() or list(store.iterdir()) == []
    assert _train(bot, store, "release-2").calls == 1


def test_a_config_with_a_component_of_its_own_always_trains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    bot = _bot(tmp_path / "bot")
    (bot / "config.yml").write_text(LIGHT_CONFIG.replace(
        "  - name: WhitespaceTokenizer\n",
        "  - name: WhitespaceTokenizer\n  - name: slow_training.SlowTraining\n"))
    monkeypatch.chdir(bot)
    assert _train(bot, store, "release-1").calls == 1
    assert _train(bot, store, "release-2").calls == 1
    assert not store.exists()


def test_without_a_fixed_model_name_every_training_runs(tmp_path: Path) -> None:
    bot, store = _bot(tmp_path / "bot"), tmp_path / "store"
    out = bot / "models"
    args = _args(bot, out, "unused")[:-2]  # no --fixed-model-name: Rasa names the file
    trainer = FakeTrainer(out, "made-up")
    for _ in range(2):
        assert train_with_memo(args, store, version=VERSION, train=trainer, say=print) == 0
    assert trainer.calls == 2
    assert not store.exists()


def test_what_the_memo_never_answers() -> None:
    assert parse_train(["core"]) is None
    assert parse_train(["--finetune"]) is None
    assert parse_train(["--dry-run"]) is None
    assert parse_train(["--some-new-flag"]) is None
    parsed = parse_train(["--data", "a", "b", "--out=o", "-c", "c.yml", "--num-threads", "2"])
    assert parsed is not None
    assert (parsed.config, parsed.domain, parsed.data, parsed.out, parsed.name, parsed.other) \
        == ("c.yml", "domain.yml", ["a", "b"], "o", None, ["--num-threads", "2"])


def _fake_rasa(monkeypatch: pytest.MonkeyPatch, run: Callable[[], None]) -> None:
    """`rasa.__main__.main` replaced by `run` for this test (no Rasa imported)."""
    package, module = types.ModuleType("rasa"), types.ModuleType("rasa.__main__")
    module.main = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rasa", package)
    monkeypatch.setitem(sys.modules, "rasa.__main__", module)


def test_every_command_runs_rasa_in_process_with_argv_as_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    _fake_rasa(monkeypatch, lambda: seen.append(list(sys.argv)))
    argv = ["/memo/rasa", "run", "--enable-api", "--auth-token=not-on-a-command-line"]
    monkeypatch.setattr(sys, "argv", argv)
    assert main(tmp_path / STORE) == 0
    assert seen == [argv]


def test_a_miss_trains_in_process_and_only_a_success_is_stored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bot, store = _bot(tmp_path / "bot"), tmp_path / STORE
    monkeypatch.chdir(bot)
    monkeypatch.setattr("tests.support.rasa_memo.installed_version", lambda _name: VERSION)
    runs: list[list[str]] = []

    def rasa_train() -> None:  # Rasa's `main`: exits 1 the first time, then trains
        runs.append(list(sys.argv))
        if len(runs) == 1:
            raise SystemExit(1)
        (bot / "m").mkdir(exist_ok=True)
        (bot / "m" / "r1.tar.gz").write_bytes(b"trained")

    _fake_rasa(monkeypatch, rasa_train)
    argv = ["/memo/rasa", "train", *_args(bot, bot / "m", "r1")]
    monkeypatch.setattr(sys, "argv", argv)
    assert main(store) == 1
    assert not store.exists()
    assert main(store) == 0
    assert runs == [argv, argv]  # Rasa saw the command line as given
    (bot / "m" / "r1.tar.gz").unlink()
    assert main(store) == 0  # the third time: from the store
    assert len(runs) == 2 and (bot / "m" / "r1.tar.gz").read_bytes() == b"trained"


def test_the_script_answers_a_hit_without_rasa_also_through_runpy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        rasa_version = version("rasa")
    except PackageNotFoundError:
        pytest.skip("rasa is not installed in the test environment")
    script = memo_rasa(tmp_path / "no-such-rasa")  # its #! line: this Python
    bot = _bot(tmp_path / "bot")
    monkeypatch.chdir(bot)
    parsed = parse_train(_args(bot, bot / "models", "r"))
    assert parsed is not None
    store = script.parent / STORE
    store.mkdir(exist_ok=True)
    (store / f"{memo_key(parsed, rasa_version)}.tar.gz").write_bytes(b"stored model")
    launcher = ("import runpy, sys; sys.argv = sys.argv[1:]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')")  # as rasa_launch.py does
    for name, runner in (("direct", []), ("runpy", [sys.executable, "-c", launcher])):
        done = subprocess.run([*runner, str(script), "train",
                               *_args(bot, bot / "models", name)],
                              cwd=bot, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert REUSED in done.stdout
        assert (bot / "models" / f"{name}.tar.gz").read_bytes() == b"stored model"
    shutil.rmtree(script.parent)
