"""rasa-nlu-compare with a cached base against `rasa test nlu --cross-validation`
run twice (base and head), side by side, in one run on one machine.

Both do the same work a reviewer needs: cross-validate the NLU model before
and after a change. The change moves two examples of the first intent to the
second one. The cache holds the base's results (made by a warm-up run on the
unchanged tree), so rasa-nlu-compare trains only the head; head results are
removed before each timed run. Target: at most 0.6x.

    python bench/nlu_compare.py [--bot examples/nlubot] [--folds 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "PATH": f"{BIN}:{os.environ['PATH']}"}
GIT_ENV = {**ENV, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def sh(argv: list[str], cwd: Path, env: dict[str, str] = ENV) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed


def move_two_examples(bot: Path) -> None:
    """Relabel two examples of the first intent as the second intent."""
    sys.path.insert(0, str(REPO))
    from hooks.nlu.data import load_nlu_inputs, nlu_yaml

    inputs = load_nlu_inputs(bot)
    intents = list(dict.fromkeys(e.intent for e in inputs.examples))
    first = [e for e in inputs.examples if e.intent == intents[0]]
    moved = {id(e) for e in first[-2:]}
    examples = [e if id(e) not in moved else type(e)(intents[1], e.raw, e.text, e.path, e.line)
                for e in inputs.examples]
    for path in inputs.files:
        path.unlink()
    (bot / "data" / "nlu.yml").write_text(nlu_yaml(examples, inputs.extras))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bot", type=Path, default=REPO / "examples" / "nlubot")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folds = str(args.folds)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(shutil.copytree(args.bot, Path(tmp) / "base",
                                    ignore=shutil.ignore_patterns("models", ".rasa", "results")))
        for command in (["init", "-q", "-b", "main"], ["add", "-A"],
                        ["commit", "-q", "-m", "base"]):
            sh(["git", *command], base, GIT_ENV)
        cache, out = Path(tmp) / "cache", Path(tmp) / "report"
        compare = [str(BIN / "rasa-nlu-compare"), "--base", "main", "--folds", folds,
                   "--cache-dir", str(cache), "--out", str(out)]
        warm = sh([*compare, "--force"], base)  # trains the base once: the cache
        base_entries = set(cache.iterdir())

        base_cv = Path(shutil.copytree(base, Path(tmp) / "base-cv"))
        head = Path(shutil.copytree(base, Path(tmp) / "head"))
        move_two_examples(head)
        move_two_examples(base)  # the repo's working tree is the head; `main` stays the base
        rasa_cv = [str(BIN / "rasa"), "test", "nlu", "--cross-validation", "--folds", folds,
                   "--nlu", "data", "--config", "config.yml"]

        ours, theirs = [], []
        for _ in range(args.repeat):
            for entry in set(cache.iterdir()) - base_entries:
                entry.unlink()  # keep only the base's results
            ours.append(sh(compare, base))
            report = json.loads((out / "nlu_comparison.json").read_text())
            assert report["before"]["cached"] and not report["after"]["cached"]
            before = sh([*rasa_cv, "--out", str(Path(tmp) / "rasa-base")], base_cv)
            after = sh([*rasa_cv, "--out", str(Path(tmp) / "rasa-head")], head)
            theirs.append(before + after)

    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    print(f"bot: {args.bot.name}, {args.folds} folds, {args.repeat} repeats, "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})")
    print(f"warm-up (trains the base once, both sides identical): {warm:.1f} s")
    print(f"rasa-nlu-compare, base cached:           median {ours_median:.1f} s  "
          f"({', '.join(f'{t:.1f}' for t in ours)})")
    print(f"rasa test nlu --cross-validation x 2:    median {theirs_median:.1f} s  "
          f"({', '.join(f'{t:.1f}' for t in theirs)})")
    ratio = ours_median / theirs_median
    print(f"ratio: {ratio:.2f}x (target <= 0.6x): {'met' if ratio <= 0.6 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
