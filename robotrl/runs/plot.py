"""Plots (PNG): learning curves from metrics rows, and the figures of ``runs compare``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


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


# runs compare: IQM, performance profile, sample efficiency and wall time of groups of runs, drawn
# with rliable's plot_utils (its figures, its colorblind palette).


def group_colors(groups: Sequence[str]) -> dict[str, Any]:
    """One colour per group, the same in every compare plot."""
    import seaborn as sns

    return dict(zip(groups, sns.color_palette("colorblind", n_colors=len(groups)), strict=True))


def _save(fig: Any, out: str | Path) -> Path:
    out = Path(out)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


def interval_estimates(
    estimates: dict[str, tuple[float, float, float]],
    out: str | Path,
    title: str,
    colors: dict[str, Any],
) -> Path:
    """One bar per group: ``estimates[group] = (point, low, high)``; the bar spans the CI and a
    tick marks the point estimate."""
    from rliable import plot_utils

    fig, _ = plot_utils.plot_interval_estimates(
        {g: np.array([p]) for g, (p, _, _) in estimates.items()},
        {g: np.array([[lo], [hi]]) for g, (_, lo, hi) in estimates.items()},
        metric_names=[title],
        colors=colors,
        subfigure_width=6.0,
        row_height=max(0.6, 2.4 / len(estimates)),
        xlabel="",
    )
    return _save(fig, out)


def performance_profile(
    profiles: dict[str, np.ndarray],
    profile_cis: dict[str, np.ndarray],
    taus: np.ndarray,
    out: str | Path,
    metric: str,
    colors: dict[str, Any],
) -> Path:
    """The fraction of samples (seed-runs) with a final score above each ``tau`` ``[K]``, with
    its CI band (``profile_cis[group]``: ``[2, K]``)."""
    from rliable import plot_utils

    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(
        profiles,
        taus,
        performance_profile_cis=profile_cis,
        colors=colors,
        xlabel=rf"final {metric} ($\tau$)",
        ylabel=r"fraction of seed-runs with score $> \tau$",
        ax=ax,
        legend=len(profiles) > 1,
        labelsize="large",
        ticklabelsize="medium",
        legendsize="medium",
    )
    return _save(fig, out)


def sample_efficiency(
    steps: np.ndarray,
    curves: dict[str, np.ndarray],
    curve_cis: dict[str, np.ndarray],
    out: str | Path,
    ylabel: str,
    colors: dict[str, Any],
) -> Path:
    """Each group's aggregate ``curves[group]`` ``[T]`` at env ``steps`` ``[T]``, with its CI
    band (``curve_cis[group]``: ``[2, T]``)."""
    from rliable import plot_utils

    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_sample_efficiency_curve(
        steps,
        curves,
        curve_cis,
        colors=colors,
        xlabel="env steps",
        ylabel=ylabel,
        ax=ax,
        labelsize="large",
        ticklabelsize="medium",
        marker="o" if len(steps) < 30 else "",
        legend=len(curves) > 1,
        legendsize="medium",
    )
    return _save(fig, out)


def wall_time(
    runs: dict[str, tuple[str, np.ndarray, np.ndarray]],
    out: str | Path,
    metric: str,
    colors: dict[str, Any],
) -> Path:
    """One line per run, coloured by group: ``runs[run] = (group, seconds [T], values [T])``."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labelled = set()
    for group, seconds, values in runs.values():
        keep = np.isfinite(seconds) & np.isfinite(values)
        label = None if group in labelled else group
        labelled.add(group)
        marker = "o" if keep.sum() < 30 else None
        ax.plot(seconds[keep], values[keep], color=colors[group], label=label, marker=marker)
    ax.set_xlabel("wall-clock seconds (timing/elapsed_s)")
    ax.set_ylabel(f"{metric} (mean over a run's seeds)")
    ax.grid(alpha=0.3)
    if len(labelled) > 1:
        ax.legend(fontsize=8)
    return _save(fig, out)
