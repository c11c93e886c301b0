"""Every hook, given each broken input, exits 1 with a message that names the
file, never prints a traceback, and never changes the user's files.

The hooks come from the manifest, so a new hook is covered as soon as it is
listed. Each runs as its console script in a real git repo of the example bot,
with the broken file as the changed file, as pre-commit would call it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.support.git import git
from tests.support.paths import REPO_ROOT
from tests.support.seeds import append

HOOKS = [h["id"] for h in yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())]


def _bomb(bot: Path) -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{','.join(['*a' + str(i - 1)] * 9)}]" for i in range(1, 30)]
    (bot / "data/nlu.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "data/nlu.yml"


def _deep(bot: Path) -> str:
    (bot / "data/nlu.yml").write_text("nlu: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    return "data/nlu.yml"


def _non_utf8(bot: Path) -> str:
    nlu = bot / "data/nlu.yml"
    nlu.write_bytes(nlu.read_bytes() + b"      - caf\xe9 au lait\n")
    return "data/nlu.yml"


def _syntax(bot: Path) -> str:
    append(bot / "data/nlu.yml", "  - intent: greet\n    examples: [unclosed\n")
    return "data/nlu.yml"


def _duplicate_key(bot: Path) -> str:
    append(bot / "data/nlu.yml", "nlu:\n  - intent: greet\n    examples: |\n      - yo\n")
    return "data/nlu.yml"


def _not_a_mapping(bot: Path) -> str:
    (bot / "data/nlu.yml").write_text("- just\n- a list\n", encoding="utf-8")
    return "data/nlu.yml"


def _domain_deleted(bot: Path) -> str:
    (bot / "domain.yml").unlink()
    return "domain.yml"


BROKEN: dict[str, Callable[[Path], str]] = {
    "yaml-bomb": _bomb,
    "deep-nesting": _deep,
    "non-utf8": _non_utf8,
    "syntax-error": _syntax,
    "duplicate-key": _duplicate_key,
    "domain-deleted": _domain_deleted,
}

# A hook that does not read a file may rightly ignore its breakage; it must
# still neither crash nor change anything.
IGNORES = {("rasa-nlu-compare", "domain-deleted")}


def _tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


@pytest.mark.parametrize("breakage", sorted(BROKEN))
@pytest.mark.parametrize("hook", HOOKS)
def test_hook_fails_cleanly_on_broken_input(
    hook: str, breakage: str, coffeebot_repo: Path, tmp_path: Path
) -> None:
    changed = BROKEN[breakage](coffeebot_repo)
    git(coffeebot_repo, "add", "-A")
    before = _tree_hash(coffeebot_repo)
    done = subprocess.run(
        [hook, changed], cwd=coffeebot_repo, capture_output=True, text=True, timeout=300,
        env={**os.environ, "RASA_GITOPS_CACHE_DIR": str(tmp_path / "cache"),
             "XDG_CACHE_HOME": str(tmp_path / "xdg")},
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert _tree_hash(coffeebot_repo) == before, "the hook changed the user's files"
    if (hook, breakage) in IGNORES:
        assert done.returncode in (0, 1), output
        return
    assert done.returncode == 1, output
    assert Path(changed).name in output, output
