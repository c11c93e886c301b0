"""The PNG confusion-matrix heat map of the changed side.

matplotlib is optional (`pip install 'rasa-gitops[report]'`; Rasa itself
pulls it in): without it the report is still written and the caller gets a
message saying what to install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hooks.core.errors import FatalError
from hooks.nlu.report import Comparison

MISSING = (
    "the PNG heat map needs matplotlib: pip install 'rasa-gitops[report]' "
    "(or matplotlib) in the hook's environment, or pass --no-heatmap"
)
HIGHLIGHT = "#d62728"


def matplotlib_available() -> bool:
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except ModuleNotFoundError:
        return False


def draw(comparison: Comparison, path: Path) -> Path:
    """Write the heat map; changed cells get a red frame and their delta."""
    if not matplotlib_available():
        raise FatalError(MISSING)
    import matplotlib  # type: ignore[import-untyped]

    matplotlib.use("Agg")  # no display on a CI runner
    import matplotlib.pyplot as plt  # type: ignore[import-untyped]
    from matplotlib.patches import Rectangle  # type: ignore[import-untyped]

    before, after = comparison.before.confusion, comparison.after.confusion
    labels = sorted({t for t, _ in after} | {p for _, p in after}
                    | {t for t, _ in before} | {p for _, p in before})
    size = len(labels)
    matrix = [[after.get((t, p), 0) for p in labels] for t in labels]
    changed = comparison.changed_cells
    side = max(4.0, 1.0 + 0.7 * size)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    try:
        image = ax.imshow(matrix, cmap="Blues")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(size), labels=labels, rotation=45, ha="right")
        ax.set_yticks(range(size), labels=labels)
        ax.set_xlabel("predicted intent")
        ax.set_ylabel("true intent")
        ax.set_title(f"Intent confusion after the change\n({comparison.head.label}; "
                     "red frame: changed since before)", fontsize=9)
        peak = max((max(row) for row in matrix), default=0) or 1
        for i, truth in enumerate(labels):
            for j, predicted in enumerate(labels):
                count = matrix[i][j]
                text = str(count)
                if (truth, predicted) in changed:
                    delta = count - before.get((truth, predicted), 0)
                    text = f"{count}\n({delta:+d})"
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                                           edgecolor=HIGHLIGHT, linewidth=2.5))
                color = "white" if count > peak / 2 else "black"
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
