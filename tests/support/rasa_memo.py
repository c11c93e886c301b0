"""`rasa train`, once per test session for the same inputs: a memo for deploy hosts.

Why: the guide's "train each test bot once per session". Several end-to-end
tests stand up a fresh deploy host (work dir, bare repo, `agent once` or the
daemon) whose first release trains exactly the bot an earlier host of the
same session trained already (the example bot with the light config), and the
agent's own model reuse (its journal) cannot see across hosts. A host that
opts in gets `memo_rasa(rasa_bin)` as its `rasa_command`: a `rasa` script
that runs real Rasa in-process for every command, and for `rasa train` first
looks in a per-session store keyed by the Rasa version, the train arguments
(but --out and --fixed-model-name) and the bytes and relative paths of the
config, the domain and every data file. A hit copies the stored model to
where `rasa train` would have written it and says so on one line; a miss
trains for real and stores the model only if that training succeeded.

What stays real: the first training of each input set in the session; every
config naming a component of its own (a dotted path: the slow-training and
spy bots), and a recipe other than default.v1; `train core`/`train nlu`,
--finetune, --dry-run and any flag this file does not know; every other Rasa
command (`run`, `test`, `--version`...), run in this same process with
`sys.argv` untouched, as Rasa's console script does (rasa_launch.py appends
the auth token to `sys.argv` in-process: it must never reach a command line).
Hosts whose tests are about training itself (its duration, priority, output,
being killed, the training cache) keep the real `rasa`.

This file is also that script: `memo_rasa` copies it behind a `#!` line of
Rasa's Python, so it imports only the standard library at module level.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any, NamedTuple

SCHEME = "rasa-gitops-test-memo-v1"
STORE = "memo-models"  # beside the script; a hyphen: never an importable name
REUSED = "rasa-gitops test memo: model reused (trained earlier this session from the same files)"
SINGLE = {"-c": "config", "--config": "config", "-d": "domain", "--domain": "domain",
          "--out": "out", "--fixed-model-name": "name"}
# `rasa train` options that only go into the key (with their value, if any).
FLAGS = frozenset({"--force", "--skip-validation", "--fail-on-validation-warnings",
                   "--persist-nlu-data", "--debug-plots", "-v", "--verbose", "-vv", "--debug",
                   "--quiet"})
VALUED = frozenset({"--augmentation", "--num-threads", "--validation-max-history",
                    "--epoch-fraction", "--logging-config-file"})


class TrainArgs(NamedTuple):
    config: str
    domain: str
    data: list[str]
    out: str
    name: str | None
    other: list[str]  # the rest, in order: part of the key as given


def parse_train(args: Sequence[str]) -> TrainArgs | None:
    """The arguments after `train`, with Rasa's defaults; None when this memo
    must not answer (a sub-command, --finetune, --dry-run, an unknown token)."""
    found: dict[str, str] = {}
    data: list[str] | None = None
    other: list[str] = []
    rest = list(args)
    while rest:
        token = rest.pop(0)
        name, eq, value = token.partition("=")
        if not token.startswith("-"):
            return None  # `train core`, `train nlu`, or something unforeseen
        if name == "--data":
            data = [value] if eq else []
            while rest and not rest[0].startswith("-"):
                data.append(rest.pop(0))
            if not data:
                return None
        elif name in SINGLE or name in VALUED:
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            if name in SINGLE:
                found[SINGLE[name]] = value
            else:
                other += [name, value]
        elif token in FLAGS:
            other.append(token)
        else:
            return None
    return TrainArgs(found.get("config", "config.yml"), found.get("domain", "domain.yml"),
                     data or ["data"], found.get("out", "models"), found.get("name"), other)


def model_path(train: TrainArgs) -> Path | None:
    """Where `rasa train` writes the model (rasa.model_training._determine_model_name);
    None without --fixed-model-name."""
    if train.name is None:
        return None
    name = train.name
    if not name.endswith(".tar.gz"):
        name = Path(name).with_suffix(".tar.gz").name
    return Path(train.out, name)


def own_components(config: Path) -> bool:
    """Whether the config may import code of the bot's own (a dotted component
    name, another recipe) or cannot be read: such trainings always run."""
    try:
        import yaml

        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except Exception:  # unreadable or invalid: Rasa says why, for real
        return True
    if not isinstance(data, dict) or data.get("recipe", "default.v1") != "default.v1":
        return True
    return any("." in name for name in _names(data))


def _names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("name"), str):
            yield node["name"]
        for value in node.values():
            yield from _names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _names(value)


def _shown(path: str) -> str:
    """`path` relative to the working directory (each host has its own worktree)."""
    real, here = os.path.realpath(path), os.path.realpath(os.getcwd())
    relative = os.path.relpath(real, here)
    return real if relative.startswith("..") else Path(relative).as_posix()


def memo_key(train: TrainArgs, version: str) -> str:
    """sha256 of the Rasa version, the key's arguments and the training inputs."""
    digest = hashlib.sha256()

    def put(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big") + data)  # no two inputs collide

    put(SCHEME, version, str(len(train.other)), *train.other)
    for label, paths in (("config", [train.config]), ("domain", [train.domain]),
                         ("data", train.data)):
        for given in paths:
            put(label, _shown(given))
            path = Path(given)
            if path.is_dir():
                files = sorted((p.relative_to(path).as_posix(), p)
                               for p in path.rglob("*") if p.is_file())
                for relative, file in files:
                    put("file", relative, file.read_bytes())
            elif path.is_file():
                put("file", "", path.read_bytes())
            else:
                put("missing")
    return digest.hexdigest()


def _copy(source: Path, target: Path) -> None:
    """`source` to `target` all at once: a temporary file beside it, then os.replace."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def train_with_memo(args: Sequence[str], store: Path, *, version: str,
                    train: Callable[[], int], say: Callable[[str], None] = print) -> int:
    """`rasa train <args>` through the memo in `store`; `train` is the real training
    (its exit code). Returns the exit code."""
    parsed = parse_train(args)
    # Without --fixed-model-name Rasa makes up a new name each time: not answered
    # (the agent's train step always gives one).
    target = None if parsed is None else model_path(parsed)
    if parsed is None or target is None or own_components(Path(parsed.config)):
        return train()
    try:
        key = memo_key(parsed, version)
    except OSError:
        return train()  # an unreadable input: Rasa says what is wrong
    stored = store / f"{key}.tar.gz"
    if stored.is_file():
        _copy(stored, target)
        say(f"{REUSED}: {target}")
        return 0
    started = time.time()
    code = train()
    if code == 0 and target.is_file() and target.stat().st_mtime >= started - 1:
        store.mkdir(parents=True, exist_ok=True)
        _copy(target, stored)
    return code


def rasa_in_process() -> int:
    """Rasa's `main` with `sys.argv` as it is; its exit code (SystemExit too)."""
    from rasa.__main__ import main as rasa_main

    try:
        rasa_main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # what Python does with a message
        return 1
    return 0


def main(store: Path) -> int:
    if sys.argv[1:2] == ["train"]:
        return train_with_memo(sys.argv[2:], store, version=installed_version("rasa"),
                               train=rasa_in_process, say=lambda line: print(line, flush=True))
    from rasa.__main__ import main as rasa_main

    rasa_main()  # exactly Rasa's console script: exceptions and exits as its own
    return 0


@functools.cache
def memo_rasa(rasa_bin: Path) -> Path:
    """The memo's `rasa` script for this session (one store per process), run by
    the Python of `rasa_bin` (the test venv's); give it as a host's `rasa_command`."""
    from hooks.core.interpreter import shebang_python

    python = shebang_python(str(rasa_bin)) or sys.executable
    folder = Path(tempfile.mkdtemp(prefix="rasa-memo-"))
    atexit.register(shutil.rmtree, folder, True)
    script = folder / "rasa"
    script.write_text(f"#!{python}\n" + Path(__file__).read_text(encoding="utf-8"),
                      encoding="utf-8")
    script.chmod(0o755)
    return script


if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parent / STORE))
