"""Where the project's own files are, for tests that read or copy them.

One place for these paths, so a test never derives them from its own location
(which changes whenever test folders move).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = REPO_ROOT / "examples"
COFFEEBOT = EXAMPLES / "coffeebot"
NLUBOT = EXAMPLES / "nlubot"
# Real public bots, beside the checkout on the CI machine only.
SHARED_BOTS = REPO_ROOT.parent / "shared" / "bots"
