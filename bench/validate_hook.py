"""rasa-validate on a one-file commit against `rasa data validate`, side by side.

Runs on the real bots in ../shared/bots (copied to a temp folder), in one run on
one machine, and prints median wall times and the ratio for:
  - an NLU-only commit (stories untouched)      target: >= 10x faster
  - a story-file commit (stories touched)       target: >= 2x faster

    python bench/validate_hook.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED_BOTS = HERE.parent.parent / "shared" / "bots"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "RASA_TELEMETRY_ENABLED": "false"}


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True)
    return time.perf_counter() - start


def median_of(argv: list[str], cwd: Path, repeat: int) -> float:
    return statistics.median(timed(argv, cwd) for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not SHARED_BOTS.is_dir():
        print(f"no bots at {SHARED_BOTS}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(HERE.parent))
    from hooks.project.layout import layout_for
    from hooks.project.load import load_project

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in sorted(p for p in SHARED_BOTS.iterdir() if p.is_dir()):
            bot = Path(shutil.copytree(source, Path(tmp) / source.name))
            project = load_project(layout_for(bot))
            max_history = str(project.max_history)
            nlu = next(str(e.path.relative_to(bot)) for e in project.examples)
            story = next(str(s.path.relative_to(bot)) for s in project.stories)
            rasa = median_of(
                [str(BIN / "rasa"), "data", "validate", "--fail-on-warnings",
                 "--max-history", max_history], bot, args.repeat)
            for label, changed in (("NLU-only commit", nlu), ("story commit", story)):
                ours = median_of([str(BIN / "rasa-validate"), changed], bot, args.repeat)
                rows.append((source.name, label, changed, ours, rasa))

    print(f"{'bot':24} {'commit':16} {'file':20} {'hook s':>7} {'rasa s':>7} {'ratio':>6}")
    for name, label, changed, ours, rasa in rows:
        print(f"{name:24} {label:16} {changed:20} {ours:7.2f} {rasa:7.2f} {rasa / ours:5.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
