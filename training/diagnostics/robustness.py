"""Robustness under corruptions on the training side: the heat-map plot of one sweep and the sweep
report's robustness table (one row per method group, from each run's `robustness/robustness.json`,
written by `python -m training evaluate --checkpoint RUN --corruptions`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtl_grasp.evaluation.robustness import RobustnessResult, summarize
from training.rundir import ROBUSTNESS_DIR

HEATMAP_KEYS = ("bbox/mAP", "amask/mAP", "occ/accuracy")
TABLE_KEYS = ("bbox/mAP", "vmask/mAP", "amask/mAP", "occ/accuracy")
RESULT_FILE = Path(ROBUSTNESS_DIR) / "robustness.json"  # in the run directory


def plot_heatmap(result: RobustnessResult, path: str | Path, keys: Sequence[str] = HEATMAP_KEYS) -> Path:
    """Corruption x severity heat maps (one panel per metric), cells annotated; clean value in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, sevs = result.corruptions(), result.severities()
    fig, axes = plt.subplots(
        1, len(keys), figsize=(2.2 + 1.2 * len(sevs) * len(keys), 0.9 + 0.32 * len(names))
    )
    for ax, key in zip(np.atleast_1d(axes), keys):
        grid = np.array([[result.value(n, s, key) for s in sevs] for n in names])
        top = max(1e-6, float(np.nanmax([result.clean[key], *grid.ravel()])))
        image = ax.imshow(grid, vmin=0.0, vmax=top, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(sevs)), [str(s) for s in sevs])
        ax.set_yticks(range(len(names)), names if ax is np.atleast_1d(axes)[0] else [""] * len(names))
        ax.set_xlabel("severity")
        ax.set_title(f"{key} (clean {result.clean[key]:.3f})", fontsize=9)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(
                j, i, "n/a" if math.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=6, color="w"
            )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _run_summary(run_path: Path) -> tuple[dict[str, float], dict[str, Any]] | None:
    file = run_path / RESULT_FILE
    if not file.is_file():
        return None
    result = RobustnessResult.from_dict(json.loads(file.read_text()))
    return result.clean, summarize(result, TABLE_KEYS)


def robustness_section(groups: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """Markdown table (methods x clean / mean corrupted RGB / depth / relative) and its numbers.

    `groups` are `training.diagnostics.runs.MethodGroup`s; values are means over the seeds that have a
    robustness result. Groups without any are listed as such.
    """
    cols = ["clean", "mean_rgb", "mean_depth", "relative_all"]
    header = (
        "| method | runs | "
        + " | ".join(f"{c.replace('_', ' ')} {k}" for c in cols for k in TABLE_KEYS)
        + " |"
    )
    lines = [header, "|" + "---|" * (2 + len(cols) * len(TABLE_KEYS))]
    data: dict[str, Any] = {}
    for group in groups:
        found = [s for s in (_run_summary(Path(r.path)) for r in group.runs) if s is not None]
        if not found:
            lines.append(f"| {group.label} | 0 | " + " | ".join("-" for _ in cols for _ in TABLE_KEYS) + " |")
            continue
        row = {c: {k: _mean_over(found, c, k) for k in TABLE_KEYS} for c in cols}
        data[group.label] = {"runs": len(found), **row}
        cells = [("n/a" if math.isnan(row[c][k]) else f"{row[c][k]:.3f}") for c in cols for k in TABLE_KEYS]
        lines.append(f"| {group.label} | {len(found)} | " + " | ".join(cells) + " |")
    note = (
        "\nPer run: `python -m training evaluate --checkpoint RUN_DIR --data DATA --corruptions` "
        "(docs/robustness.md); mean over the seeds that have a result. relative = mean corrupted / clean."
    )
    return "\n".join(lines) + "\n" + note + "\n", data


def _mean_over(found: list, column: str, key: str) -> float:
    values = []
    for clean, summary in found:
        value = clean[key] if column == "clean" else summary.get(column, {}).get(key, math.nan)
        if not math.isnan(value):
            values.append(value)
    return float(np.mean(values)) if values else math.nan
