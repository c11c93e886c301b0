"""The small parts the reliability tests stand on: kill points and the symlink check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agent.links import outside_links

SCRIPT = ("from agent import faults; faults.on_first_line(print, 'b')('line'); "
          "faults.kill_point('a'); print('survived')")


def _run(kill_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RASA_GITOPS_KILL_AT"}
    if kill_at is not None:
        env["RASA_GITOPS_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=60)


def test_a_kill_point_kills_only_when_named() -> None:
    assert _run(None).stdout.split() == ["line", "survived"]
    assert _run("elsewhere,other").stdout.split() == ["line", "survived"]
    killed = _run("x, a")
    assert killed.returncode == -9 and killed.stdout.split() == ["line"]
    first_line = _run("b")
    assert first_line.returncode == -9 and first_line.stdout == ""


def test_only_symlinks_leaving_the_tree_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    (root / "data" / "nlu.yml").write_text("nlu: []\n", encoding="utf-8")
    (tmp_path / "host.yml").write_text("secret\n", encoding="utf-8")
    (root / "data" / "same.yml").symlink_to("nlu.yml")
    (root / "up-and-back").symlink_to("../repo/data")
    (root / "data" / "host.yml").symlink_to(tmp_path / "host.yml")
    (root / "escape").symlink_to("../..")
    (root / "dangling").symlink_to("../nowhere/at/all")
    (root / "etc").symlink_to("/etc")
    (root / ".git").mkdir()
    (root / ".git" / "ignored").symlink_to("/etc/passwd")
    assert outside_links(root) == ["dangling", "data/host.yml", "escape", "etc"]
