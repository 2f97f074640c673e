"""Listing and comparing run directories.

``compare_runs`` follows rliable (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of
the Statistical Precipice"): every seed of every run is one sample (a run trained with
``train.num_seeds > 1`` logs a ``.../seed{i}`` column per seed), the samples of runs with the same
group value are pooled, and a group is summarised by the interquartile mean (IQM) of its samples'
final scores with a stratified-bootstrap 95% confidence interval. Shape letters: N samples of a
group, S seeds of a run, T logged env steps.
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from robotrl.config import ConfigError
from robotrl.runs import plot
from robotrl.runs.rundir import RunDir, RunDirError, default_run_path

MAX_CURVE_POINTS = 50  # env steps on the sample-efficiency plot, each bootstrapped
_SEED_COLUMN = re.compile(r"^(?P<base>.+)/seed(?P<index>\d+)$")
COLUMNS = ("group", "runs", "seeds", "IQM", "CI low", "CI high", "mean", "final env steps")


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _last(rows: list[dict[str, float]], metric: str) -> float:
    values = [r[metric] for r in rows if metric in r and math.isfinite(r[metric])]
    return values[-1] if values else math.nan


def summarize_run(path: str | Path) -> dict[str, Any]:
    run = RunDir.open(path)
    cfg = run.config()
    rows = run.read_metrics()
    total = _dig(cfg, "train.total_steps") or 0
    steps = int(rows[-1]["step"]) if rows else 0
    return {
        "run": str(run.path),
        "name": cfg.get("name", ""),
        "algo": _dig(cfg, "algo.name") or "",
        "env": _dig(cfg, "env.name") or "",
        "seed": cfg.get("seed", ""),
        "steps": steps,
        "status": "done" if steps >= total else "partial",
        "eval/return_mean": _last(rows, "eval/return_mean"),
        "rows": rows,
        "config": cfg,
    }


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    root = Path(root)
    if not root.is_dir():
        raise RunDirError(f"{root} is not a folder")
    found = sorted(p.parent for p in root.glob("*/config.yaml"))
    return [summarize_run(p) for p in found]


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A markdown table (readable in a terminal too)."""
    columns = list(columns or ("run", "algo", "env", "seed", "steps", "status", "eval/return_mean"))

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _rliable() -> tuple[Any, Any]:
    """rliable's ``(library, metrics)`` modules, or a ``ConfigError`` with the install hint."""
    try:
        from rliable import library, metrics
    except ImportError as err:
        raise ConfigError(
            f"runs compare needs rliable ({err}): pip install 'robotrl[compare]'"
        ) from err
    return library, metrics


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """rliable's stratified bootstrap draws from numpy's global generator: seeding it makes the
    intervals reproducible; the caller's generator state is put back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def seed_columns(columns: Iterable[str], metric: str) -> list[str]:
    """``metric``'s per-seed columns in seed order, else ``[metric]``.

    ``eval/return_mean`` has ``eval/return/seed{i}`` (each seed's mean over its episodes);
    other metrics have ``{metric}/seed{i}``.
    """
    bases = (metric, metric.removesuffix("_mean"))
    found = {}
    for column in columns:
        match = _SEED_COLUMN.match(column)
        if match and match["base"] in bases:
            found[int(match["index"])] = column
    return [found[i] for i in sorted(found)] or [metric]


def _wall_clock(elapsed: np.ndarray) -> np.ndarray:
    """Seconds since the run started. ``timing/elapsed_s`` restarts from 0 when a run is
    resumed, so each restart continues from the last value before it."""
    restarts = np.concatenate([[0.0], np.where(np.diff(elapsed) < 0, elapsed[:-1], 0.0)])
    return elapsed + np.cumsum(restarts)


class RunScores(NamedTuple):
    """One run's values of the compared metric, at the rows that logged it."""

    run: str
    group: str
    steps: np.ndarray  # [T] env steps (per seed)
    wall_s: np.ndarray  # [T] seconds since the run started (NaN where not logged)
    values: np.ndarray  # [S, T]

    def finals(self) -> np.ndarray:
        """``[S]`` each seed's last finite value."""
        return np.array([v[np.isfinite(v)][-1] for v in self.values if np.isfinite(v).any()])


def _group(cfg: dict[str, Any], group_by: str | None, run: Path) -> str:
    if group_by is None:
        return str(cfg.get("name", run.name))
    node: Any = cfg
    for part in group_by.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"--group-by {group_by}: {run} has no config key {group_by!r}")
        node = node[part]
    return str(node)


def _load(paths: Sequence[str | Path], metric: str, group_by: str | None) -> list[RunScores]:
    """Every run's scores; one clear error for a missing run, a repeated one or a metric that
    no run (or only some runs) logged."""
    runs = [RunDir.open(p) for p in paths]
    seen: set[Path] = set()
    for run in runs:
        if run.path.resolve() in seen:
            raise ConfigError(f"{run.path} is given twice (its seeds would count twice)")
        seen.add(run.path.resolve())
    loaded = [(run, run.config(), run.read_metrics()) for run in runs]
    scores, missing = [], []
    for run, cfg, rows in loaded:
        columns = dict.fromkeys(k for r in rows for k in r)
        values = np.array(  # [S, rows]
            [[r.get(c, math.nan) for r in rows] for c in seed_columns(columns, metric)]
        )
        logged = np.isfinite(values).any(axis=0)
        if not rows or not logged.any():
            missing.append(run)
            continue
        steps = np.array([r["step"] for r in rows], np.int64)
        wall = _wall_clock(np.array([r.get("timing/elapsed_s", math.nan) for r in rows]))
        group = _group(cfg, group_by, run.path)
        scores.append(
            RunScores(str(run.path), group, steps[logged], wall[logged], values[:, logged])
        )
    if not scores:
        keys = sorted(
            {k for _, _, rows in loaded for r in rows for k in r if not _SEED_COLUMN.match(k)}
            - {"step", "global_step"}
        )
        raise ConfigError(
            f"no run logged --metric {metric!r}; they logged: {', '.join(keys) or 'nothing'}"
        )
    if missing:
        names = ", ".join(str(run.path) for run in missing)
        raise RunDirError(f"{names} logged no {metric!r} (the other runs did)")
    return scores


def _common_steps(runs: Sequence[RunScores]) -> np.ndarray:
    """Env steps at which every seed of every run logged a value, at most ``MAX_CURVE_POINTS``
    of them, evenly spread and always with the last."""
    sets = [set(r.steps[np.isfinite(r.values).all(axis=0)].tolist()) for r in runs]
    steps = np.array(sorted(set.intersection(*sets)), np.int64)
    if len(steps) > MAX_CURVE_POINTS:
        steps = steps[
            np.unique(np.linspace(0, len(steps) - 1, MAX_CURVE_POINTS).round().astype(int))
        ]
    return steps


def _curves(runs: Sequence[RunScores], steps: np.ndarray) -> np.ndarray:
    """``[N, 1, T]`` every seed's values at ``steps`` (one task, rliable's layout)."""
    rows = [r.values[:, np.searchsorted(r.steps, steps)] for r in runs]
    return np.concatenate(rows)[:, None, :]


def _iqm_rows(
    groups: dict[str, list[RunScores]], finals: dict[str, np.ndarray], reps: int, seed: int
) -> list[dict[str, Any]]:
    """One ``COLUMNS`` row per group: IQM of ``finals[group]`` ``[N]`` with its 95% CI."""
    library, metrics = _rliable()
    with _numpy_seed(seed):
        point, interval = library.get_interval_estimates(
            {g: s[:, None] for g, s in finals.items()},  # [N, 1]: one task
            lambda x: np.array([metrics.aggregate_iqm(x)]),
            reps=reps,
        )
    rows = []
    for g, members in groups.items():
        last = sorted({int(r.steps[-1]) for r in members})
        values = (
            g,
            len(members),
            len(finals[g]),
            float(point[g][0]),
            float(interval[g][0, 0]),
            float(interval[g][1, 0]),
            float(finals[g].mean()),
            str(last[0]) if len(last) == 1 else f"{last[0]}-{last[-1]}",
        )
        rows.append(dict(zip(COLUMNS, values, strict=True)))
    return rows


def _plots(
    groups: dict[str, list[RunScores]],
    finals: dict[str, np.ndarray],
    rows: list[dict[str, Any]],
    metric: str,
    out_dir: Path,
    reps: int,
    seed: int,
) -> tuple[dict[str, Path], list[str]]:
    """``iqm.png``, ``profile.png``, ``sample_efficiency.png`` and ``wall_time.png`` (the last
    two only where the runs logged what they need; else a note says why)."""
    library, _ = _rliable()
    colors = plot.group_colors(list(groups))
    files, notes = {}, []
    files["iqm"] = plot.interval_estimates(
        {row["group"]: (row["IQM"], row["CI low"], row["CI high"]) for row in rows},
        out_dir / "iqm.png",
        f"IQM of final {metric}",
        colors,
    )
    pooled = np.concatenate(list(finals.values()))
    margin = 0.05 * (float(np.ptp(pooled)) or 1.0)
    taus = np.linspace(pooled.min() - margin, pooled.max() + margin, 101)
    with _numpy_seed(seed):
        profiles, profile_cis = library.create_performance_profile(
            {g: s[:, None] for g, s in finals.items()},
            taus,
            # rliable's score distribution (the fraction of samples above each tau), vectorised
            custom_profile_func=lambda x, t: (x.reshape(-1, 1) > t).mean(axis=0),
            reps=reps,
        )
    files["profile"] = plot.performance_profile(
        profiles, profile_cis, taus, out_dir / "profile.png", metric, colors
    )
    runs = [r for members in groups.values() for r in members]
    steps = _common_steps(runs)
    if len(steps):
        with _numpy_seed(seed):
            curves, curve_cis = library.get_interval_estimates(
                {g: _curves(members, steps) for g, members in groups.items()},
                lambda x: _iqm_per_step(x.reshape(x.shape[0], -1)),
                reps=reps,
            )
        files["sample_efficiency"] = plot.sample_efficiency(
            steps, curves, curve_cis, out_dir / "sample_efficiency.png", f"IQM of {metric}", colors
        )
    else:
        notes.append(f"no sample_efficiency.png: the runs logged {metric!r} at no common env step")
    timed = [r for r in runs if np.isfinite(r.wall_s).any()]
    if timed:
        files["wall_time"] = plot.wall_time(
            {r.run: (r.group, r.wall_s, np.nanmean(r.values, axis=0)) for r in timed},
            out_dir / "wall_time.png",
            metric,
            colors,
        )
    else:
        notes.append("no wall_time.png: no run logged timing/elapsed_s")
    return files, notes


def _iqm_per_step(x: np.ndarray) -> np.ndarray:
    """``[T]`` ``aggregate_iqm`` (the 25% trimmed mean over samples) of each column of ``x``
    ``[N, T]``, all at once."""
    from scipy.stats import trim_mean

    return trim_mean(x, proportiontocut=0.25, axis=0)


def compare_runs(
    paths: Sequence[str | Path],
    metric: str = "eval/return_mean",
    out: str | Path | None = None,
    group_by: str | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """IQM with a stratified-bootstrap 95% CI per group, written as ``compare.md``,
    ``compare.csv``, ``iqm.png``, ``profile.png``, ``sample_efficiency.png`` and
    ``wall_time.png``.

    Args:
      paths: run directories; each seed of each is one sample.
      metric: a ``metrics.csv`` column (its per-seed columns are used where there are some).
      out: folder for the files (default: ``runs/compare-<timestamp>``).
      group_by: dotted config key whose value groups runs (default: the config's ``name``).
      reps: bootstrap resamples.
      seed: the bootstrap's random seed (the same inputs give the same intervals).

    Returns:
      ``{"table": markdown, "rows": [one per group], "files": {kind: path}, "notes": [str]}``.
    """
    _rliable()  # the install hint before anything is read or written
    runs = _load(paths, metric, group_by)
    groups: dict[str, list[RunScores]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    finals = {g: np.concatenate([r.finals() for r in members]) for g, members in groups.items()}
    rows = _iqm_rows(groups, finals, reps, seed)

    out_dir = Path(out) if out else default_run_path("compare")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out_dir / "compare.md", "csv": out_dir / "compare.csv"}
    plots, notes = _plots(groups, finals, rows, metric, out_dir, reps, seed)
    files.update(plots)

    table = format_table(rows, COLUMNS)
    header = (
        f"# {metric}: IQM of each seed's final value, stratified-bootstrap 95% CI ({reps} "
        f"resamples); seeds of runs with the same {group_by or 'config name'} are pooled"
    )
    samples = [
        {"group": r.group, "run": r.run, "seed": i, "final env step": int(r.steps[-1]), metric: v}
        for r in runs
        for i, v in enumerate(r.finals())
    ]
    sample_table = format_table(samples, ["group", "run", "seed", "final env step", metric])
    text = "\n\n".join([header, table, "## Samples", sample_table, *notes])
    files["markdown"].write_text(text + "\n")
    with files["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return {
        "table": table,
        "rows": rows,
        "files": {k: str(v) for k, v in files.items()},
        "notes": notes,
    }
