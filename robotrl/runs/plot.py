"""Learning-curve plots (PNG) from metrics rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _series(rows: Sequence[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in rows if key in r and math.isfinite(r[key])]
    return [p[0] for p in points], [p[1] for p in points]


def learning_curve(
    runs: dict[str, Sequence[dict[str, float]]],
    out: str | Path,
    metrics: Sequence[str] = ("eval/return_mean", "train/episode_return"),
    title: str = "",
) -> Path:
    """One panel per metric, one line per run; returns the PNG path."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for label, rows in runs.items():
            steps, values = _series(rows, metric)
            if steps:
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=label)
            std_steps, std = _series(rows, metric.replace("_mean", "_std"))
            if metric.endswith("_mean") and std_steps == steps and steps:
                lo = [v - s for v, s in zip(values, std, strict=True)]
                hi = [v + s for v, s in zip(values, std, strict=True)]
                ax.fill_between(steps, lo, hi, alpha=0.2)
        ax.set_xlabel("env steps")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
