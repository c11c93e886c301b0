"""rasa-test-stories against `rasa train && rasa test --fail-on-prediction-errors`, side by side.

On the real bot ../shared/bots/rasa-examples-formbot (copied to a temp folder),
in one run on one machine, for three kinds of change:
  - a test-story-only change (a user message of a test story)  target: >= 5x faster
  - a response-only change (a response text in the domain)     target: >= 2x faster
  - an NLU change (one more example for an intent)             target: >= 2x faster

Ours: the hook in a developer's clone whose cache holds the model of the
previous commit (the state after the hook ran on the previous push), run as
pre-commit runs it at push time: the changed files, compared with the previous
commit. The first, cold run that fills the cache is printed for reference.
Baseline: what Rasa's CI/CD guide runs, on a fresh checkout of the same tree
(no model, no `.rasa` cache, as on a CI runner): `rasa train` then
`rasa test --stories tests --fail-on-prediction-errors`.

    python bench/story_tests.py        (about 15 minutes on a 2-core machine)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORMBOT = HERE.parent.parent / "shared" / "bots" / "rasa-examples-formbot"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "RASA_TELEMETRY_ENABLED": "false",
       "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
       "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "b@example.com",
       "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "b@example.com"}

# (label, file, old text, new text, target ratio)
CHANGES = [
    ("test-story-only change", "tests/test_stories.yml", "      hi\n", "      hey there\n", 5.0),
    ("response-only change", "domain.yml", "You are welcome :)", "You are very welcome!", 2.0),
    ("NLU change", "data/nlu.yml", "    - um thank you good bye\n",
     "    - um thank you good bye\n    - cheers, that is all\n", 2.0),
]


def sh(argv: list[str], cwd: Path, env: dict[str, str] = ENV) -> tuple[float, int, str]:
    started = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    return time.monotonic() - started, done.returncode, done.stdout + done.stderr


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def hook(clone: Path, cache: Path, *args: str) -> tuple[float, int, str]:
    env = {**ENV, "RASA_GITOPS_CACHE_DIR": str(cache)}
    return sh([str(BIN / "rasa-test-stories"), *args], clone, env)


def baseline(clone: Path, scratch: Path) -> tuple[float, float, str]:
    """Seconds of `rasa train` and of `rasa test --fail-on-prediction-errors`
    on a fresh copy of the clone's tree, and the test's verdict."""
    fresh = scratch / f"ci-{time.monotonic_ns()}"
    shutil.copytree(clone, fresh, ignore=shutil.ignore_patterns(".git", ".rasa", "models",
                                                                "results"))
    train_s, rc, out = sh([str(BIN / "rasa"), "train"], fresh)
    if rc != 0:
        raise SystemExit(f"baseline rasa train failed:\n{out[-3000:]}")
    # `--stories tests`: with its default (".") Rasa 3.6.21 also reads LICENSE and
    # NOTICE as test data and crashes (TypeError in guess_format) after loading the model.
    test_s, rc, out = sh([str(BIN / "rasa"), "test", "--stories", "tests",
                          "--fail-on-prediction-errors"], fresh)
    shutil.rmtree(fresh, ignore_errors=True)
    return train_s, test_s, "pass" if rc == 0 else f"fail (exit {rc})"


def summary(output: str) -> str:
    picked = next((line.split(": ", 2)[-1] for line in output.splitlines()
                   if "picked" in line and "test stories" in line), "?")
    trained = "trained" if "model: trained" in output else "cached model"
    return f"{picked}; {trained}"


def main() -> int:
    if not FORMBOT.is_dir():
        print(f"{FORMBOT} is not here; this bench needs the shared bots.")
        return 1
    scratch = Path(tempfile.mkdtemp(prefix="bench-stories-"))
    try:
        clone = shutil.copytree(FORMBOT, scratch / "formbot")
        cache = scratch / "cache"
        git(clone, "init", "-q", "-b", "main")
        git(clone, "add", "-A")
        git(clone, "commit", "-q", "-m", "initial")
        cold_s, rc, out = hook(clone, cache, "--all")
        print(f"cold first run (trains from nothing, all stories): {cold_s:.1f} s, exit {rc}; "
              f"{summary(out)}")
        rows = []
        for label, name, old, new, target in CHANGES:
            edit(clone / name, old, new)
            git(clone, "commit", "-q", "-am", label)
            ours_s, rc, out = hook(clone, cache, "--base", "HEAD~1", name)
            if rc not in (0, 1):
                raise SystemExit(f"hook failed on {label}:\n{out[-3000:]}")
            train_s, test_s, verdict = baseline(clone, scratch)
            base_s = train_s + test_s
            ours_verdict = "pass" if rc == 0 else "fail"
            rows.append((label, ours_s, base_s, train_s, test_s, target, summary(out),
                         ours_verdict, verdict))
            print(f"{label}: ours {ours_s:.1f} s ({summary(out)}, {ours_verdict}); "
                  f"rasa train {train_s:.1f} s + rasa test {test_s:.1f} s ({verdict})",
                  flush=True)
        print()
        print("| change | rasa-test-stories | rasa train && rasa test | ratio | target |")
        print("|---|---|---|---|---|")
        for label, ours_s, base_s, train_s, test_s, target, _, _, _ in rows:
            ratio = base_s / ours_s
            mark = "met" if ratio >= target else "NOT met"
            print(f"| {label} | {ours_s:.1f} s | {base_s:.1f} s ({train_s:.1f} + {test_s:.1f}) "
                  f"| {ratio:.1f}x | >= {target:.0f}x, {mark} |")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
