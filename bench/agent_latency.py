"""How fast the deploy agent reacts to a push, and what it adds to a release.

1. Detection: time from the start of `git push` to the agent creating the
   release, for a local bare repo watched with watchdog, against polling with
   `git fetch` (a file:// URL makes the agent treat the repo as a remote; the
   poll interval here is 2 s instead of the default 60 s so the run stays short;
   polling latency scales with the interval, about half of it on average).
2. Overhead: for releases whose training inputs are unchanged (action-code-only
   pushes), everything the agent does besides running Rasa: checkout, validate,
   the training-fingerprint check, the test-verdict check, bookkeeping; beside
   it the start-up of the new action server (`rasa run actions`) and, for
   comparison, Rasa's own `rasa data validate` on the same bot in the same run.

Run: /root/.cache/rasa-gitops/rasa310/bin/python bench/agent_latency.py
(it trains the example bot once; a few minutes on a 2-core machine), or with
`--detection-only` for part 1 alone (seconds, no Rasa).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.journal import Journal  # noqa: E402
from agent.targets.local_process import free_port  # noqa: E402

VENV_BIN = Path(sys.executable).parent
RASA = VENV_BIN / "rasa"
ENV = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
       "RASA_TELEMETRY_ENABLED": "false", "GIT_AUTHOR_NAME": "Bench",
       "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "Bench",
       "GIT_COMMITTER_EMAIL": "b@example.com"}
PUSHES = 5


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_host(root: Path) -> tuple[Path, Path]:
    bare = root / "bot.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    src = root / "src"
    shutil.copytree(REPO / "examples" / "coffeebot", src,
                    ignore=shutil.ignore_patterns("models", ".rasa", "results"))
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "initial")
    git(src, "remote", "add", "deploy", str(bare))
    return bare, src


def push_change(src: Path, n: int) -> float:
    actions = src / "actions" / "actions.py"
    actions.write_text(re.sub(r"every day[^\"]*", f"every day #{n}", actions.read_text()))
    git(src, "commit", "-qam", f"change {n}")
    started = time.time()
    git(src, "push", "-q", "deploy", "main")
    return started


def wait_release(journal_path: Path, commit: str, final: bool, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal_path.exists():
            journal = Journal(journal_path)
            try:
                for release in journal.releases_of_commit(commit):
                    if not final or release.status not in {"queued", "running"}:
                        return {"release": release,
                                "steps": journal.steps(release.id)}
            finally:
                journal.close()
        time.sleep(0.01)
    raise SystemExit(f"no release of {commit[:8]} within {timeout} s")


def detection(label: str, repo_value: str, root: Path, src: Path) -> list[float]:
    work = root / f"work-{label}"
    config = root / f"{label}.yml"
    # /bin/false as Rasa: every release fails fast at train; only detection counts here.
    config.write_text(f"repo: {repo_value}\nwork_dir: {work}\nrasa_command: /bin/false\n"
                      f"poll_interval: 2\naction_server:\n  port: {free_port()}\n"
                      f"model:\n  url: http://127.0.0.1:{free_port()}\n"
                      "  manage_server: false\n")
    daemon = subprocess.Popen([str(VENV_BIN / "agent"), "-c", str(config), "run"], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (work / "agent.pid").exists():
            time.sleep(0.05)
        head = git(src, "rev-parse", "HEAD")
        wait_release(work / "journal.sqlite", head, final=True)
        latencies = []
        for n in range(PUSHES):
            started = push_change(src, n + 100 * len(label))
            commit = git(src, "rev-parse", "HEAD")
            found = wait_release(work / "journal.sqlite", commit, final=False)
            latencies.append(found["release"].created_at - started)
            wait_release(work / "journal.sqlite", commit, final=True)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    return latencies


def overhead(root: Path) -> None:
    bare, src = make_host(root / "overhead")
    work = root / "overhead" / "work"
    config = root / "overhead" / "agent.yml"
    config.write_text(f"repo: {bare}\nwork_dir: {work}\nrasa_command: {RASA}\n"
                      f"action_server:\n  port: {free_port()}\n"
                      f"model:\n  url: http://127.0.0.1:{free_port()}\n")
    agent = [str(VENV_BIN / "agent"), "-c", str(config)]
    try:
        git(src, "push", "-q", "deploy", "main")
        first = time.monotonic()
        subprocess.run([*agent, "once", "-q"], env=ENV, check=True)
        print(f"first release (train, test, start Rasa, load model): "
              f"{time.monotonic() - first:.1f} s")
        rows = []
        for n in range(3):
            push_change(src, n)
            commit = git(src, "rev-parse", "HEAD")
            wall = time.monotonic()
            subprocess.run([*agent, "once", "-q"], env=ENV, check=True)
            wall = time.monotonic() - wall
            found = wait_release(work / "journal.sqlite", commit, final=True)
            steps = {s.name: (s.duration or 0.0, s.status) for s in found["steps"]}
            rows.append((wall, steps))
        started = time.monotonic()
        subprocess.run([str(RASA), "data", "validate"], cwd=src, env=ENV,
                       capture_output=True)
        rasa_validate = time.monotonic() - started
    finally:
        subprocess.run([*agent, "stop"], env=ENV, capture_output=True)
    print("\naction-code-only releases (model and test verdict reused):")
    print(f"{'wall':>6} {'agent own':>9} {'actions up':>10}  per step")
    owns = []
    for wall, steps in rows:
        deploy = steps.get("deploy_actions", (0.0, ""))[0]
        tests = steps.get("action_tests", (0.0, ""))[0]
        own = wall - deploy - tests
        owns.append(own)
        detail = ", ".join(f"{k} {v[0]:.2f}s ({v[1]})" for k, v in steps.items())
        print(f"{wall:6.1f} {own:9.2f} {deploy:10.1f}  {detail}")
    validate = statistics.median(
        [steps["validate"][0] for _, steps in rows if "validate" in steps])
    print(f"\nagent overhead (wall minus action-server start-up), median: "
          f"{statistics.median(owns):.2f} s (target < 5 s)")
    print(f"validate step median {validate:.2f} s vs `rasa data validate` "
          f"{rasa_validate:.1f} s: ratio {rasa_validate / max(validate, 1e-3):.0f}x")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    try:
        bare, src = make_host(root)
        git(src, "push", "-q", "deploy", "main")
        watched = detection("watch", str(bare), root, src)
        polled = detection("poll", f"file://{bare}", root, src)
        print(f"push -> release created, {PUSHES} pushes each:")
        print(f"  bare repo watched (watchdog): median {statistics.median(watched) * 1000:.0f} ms,"
              f" max {max(watched) * 1000:.0f} ms (target < 1 s)")
        print(f"  polling every 2 s (git fetch): median {statistics.median(polled) * 1000:.0f} ms,"
              f" max {max(polled) * 1000:.0f} ms (default 60 s: about 30 s on average)")
        print(f"  ratio poll/watch (median): "
              f"{statistics.median(polled) / max(statistics.median(watched), 1e-3):.0f}x\n")
        if "--detection-only" not in sys.argv:
            overhead(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
