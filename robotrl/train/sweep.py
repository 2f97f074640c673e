"""``robotrl sweep``: seeds x a grid of hyperparameters, vmapped in one program where it can be.

``--grid algo.actor_lr=1e-4,3e-4 --grid algo.tau=0.005,0.01`` makes the cartesian product of
points; each point trains ``--seeds`` seeds. Points that differ only in float fields of the
algorithm's config train together: the algorithm is built from each run's values inside the
traced program (``scan_loop.Hyper``), so P points x S seeds are one vmapped program, like seeds
alone. Points that differ in anything else (a layer size, a batch size, an env option: other
shapes or other programs), or whose algorithm branches in Python on a swept value (JAX refuses to
trace it), train one process per point (``robotrl train``), one after another.

Every point gets its own run directory under the sweep folder, with its config (the point's
values, ``train.num_seeds`` = S), per-seed metrics and checkpoints, so ``robotrl eval``,
``--resume`` and ``robotrl runs compare SWEEP/* --group-by algo.actor_lr`` work on each point as
on any run. A point of a vmapped group equals the same point trained alone (same seeds).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import subprocess
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import yaml

from robotrl import registry
from robotrl.config import ConfigError, apply_overrides, load_yaml
from robotrl.runs import CheckpointStore, MetricsLog, RunDir, default_run_path
from robotrl.runs.plot import learning_curve
from robotrl.train.scan_loop import Hyper, select_seed
from robotrl.train.session import run_training


class Group(NamedTuple):
    """Points trained together: shared ``fixed`` overrides, and one dict of float algorithm
    fields per point (``swept``; ``[{}]`` when nothing is vmapped)."""

    fixed: dict[str, Any]
    swept: list[dict[str, Any]]


def _value(raw: str) -> Any:
    """A YAML value, with numbers YAML 1.1 leaves as strings (``1e-4``) read as floats."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["algo.actor_lr=1e-4,3e-4"]`` -> ``{"algo.actor_lr": [1e-4, 3e-4]}`` (YAML values)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise ConfigError(f"--grid {item!r} must look like key.subkey=value1,value2")
        values = [_value(v) for v in raw.split(",")]
        if key.strip() in grid:
            raise ConfigError(f"--grid names {key.strip()!r} twice")
        grid[key.strip()] = values
    return grid


def point_name(point: dict[str, Any]) -> str:
    """A run directory name for a point: ``actor_lr=0.0001,tau=0.01``."""
    if not point:
        return "base"
    text = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def _float_fields(data: dict[str, Any]) -> set[str]:
    """The algorithm's top-level float fields (``algo.<name>``) of a config's data."""
    name = (data.get("algo") or {}).get("name", "sac")
    if name not in registry.ALGORITHMS:
        return set()
    cls, _ = registry.ALGORITHMS[name].load()
    hints = typing.get_type_hints(cls)
    return {f"algo.{f.name}" for f in dataclasses.fields(cls) if hints[f.name] is float}


def plan(data: dict[str, Any], grid: dict[str, list[Any]]) -> list[Group]:
    """Groups of points: vmappable keys (float algorithm fields with numeric values) vary
    within a group; every other key splits groups."""
    floats = _float_fields(data)
    numeric = lambda vs: all(isinstance(v, int | float) and not isinstance(v, bool) for v in vs)
    vmapped = [k for k, vs in grid.items() if k in floats and numeric(vs)]
    other = [k for k in grid if k not in vmapped]
    groups = []
    for fixed in itertools.product(*(grid[k] for k in other)):
        swept = [
            dict(zip(vmapped, values, strict=True))
            for values in itertools.product(*(grid[k] for k in vmapped))
        ]
        groups.append(Group(dict(zip(other, fixed, strict=True)), swept))
    return groups


def _overrides(values: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


class _Split:
    """Splits the rows and checkpoints of a vmapped group (runs point-major, S seeds each) into
    one run directory per point."""

    def __init__(self, runs: list[RunDir], seeds: int, keep: int):
        self.seeds = seeds
        self.logs = [MetricsLog(run) for run in runs]
        self.stores = [CheckpointStore(run.checkpoints, keep=keep) for run in runs]

    def __call__(self, step: int, row: dict[str, float]) -> None:
        for p, log in enumerate(self.logs):
            log(step, self.point_row(row, p))

    def point_row(self, row: dict[str, float], p: int) -> dict[str, float]:
        out: dict[str, float] = {k: v for k, v in row.items() if k.startswith("timing/")}
        per_seed: dict[str, list[float]] = {}
        for key, value in row.items():
            match = re.fullmatch(r"(.+)/seed(\d+)", key)
            if match and int(match[2]) // self.seeds == p:
                s = int(match[2]) % self.seeds
                if self.seeds > 1:
                    out[f"{match[1]}/seed{s}"] = value
                per_seed.setdefault(match[1], []).append(value)
        for name, values in per_seed.items():
            finite = [v for v in values if math.isfinite(v)]
            mean = float(np.mean(finite)) if finite else math.nan
            out["eval/return_mean" if name == "eval/return" else name] = mean
        if "timing/sps" in out:  # the group's rate, shared by its points
            out["timing/sps"] /= len(self.logs)
        return out

    def save(self, step: int, tree: Any, meta: dict[str, Any]) -> None:
        """Each point's slice of the runs axis, as a run of S seeds would checkpoint it."""
        for p, store in enumerate(self.stores):
            part = select_seed(tree, slice(p * self.seeds, (p + 1) * self.seeds))
            store.save(step, part, meta)

    def close(self) -> None:
        for log in self.logs:
            log.close()
        for store in self.stores:
            store.close()


def _train_vmapped(
    data: dict[str, Any], group: Group, seeds: int, folder: Path, progress: Any
) -> list[Path]:
    """Trains a group in one program; raises a JAX tracer error when its algorithm cannot take
    the swept values as traced numbers."""
    from robotrl import experiment

    first = {**group.fixed, **group.swept[0]}
    cfg = experiment.parse_config(
        apply_overrides(data, [*_overrides(first), f"train.num_seeds={seeds}"])
    )
    exp = experiment.Experiment(cfg)
    if exp.is_host:
        raise ConfigError("host envs train one process per point")
    _, make_algo = registry.ALGORITHMS[cfg.algo_name].load()
    names = sorted({k for point in group.swept for k in point})

    def build(h: dict[str, Any]):
        fields = {k.split(".", 1)[1]: v for k, v in h.items()}
        return make_algo(dataclasses.replace(cfg.algo, **fields), exp.spec)

    hyper = Hyper({k: np.array([p[k] for p in group.swept]) for k in names}, build)
    session = exp.session(hyper=hyper if names else None)  # traces: tracer errors come here
    resolved = exp.resolved_config()
    runs = []
    for point in group.swept:
        point_cfg = experiment.parse_config(
            apply_overrides(
                experiment.config_to_dict(resolved), _overrides({**group.fixed, **point})
            )
        )
        path = folder / point_name({**group.fixed, **point})
        runs.append(RunDir.create(path, experiment.config_to_dict(point_cfg), cfg.seed))
    split = _Split(runs, seeds, cfg.train.keep_checkpoints)
    try:
        run_training(
            session,
            cfg.train,
            on_log=[split],
            checkpointer=split,
            progress=progress,
            per_seed_columns=True,
        )
    finally:
        split.close()
        for run, log in zip(runs, split.logs, strict=True):
            if log.rows:
                learning_curve({run.path.name: log.rows}, run.path / "learning_curve.png")
    return [run.path for run in runs]


def _train_processes(config: str, overrides: list[str], group: Group, seeds: int, folder: Path):
    paths = []
    for point in group.swept:
        values = {**group.fixed, **point}
        path = folder / point_name(values)
        sets = [*overrides, *_overrides(values), f"train.num_seeds={seeds}"]
        command = [sys.executable, "-m", "robotrl", "train", config, "--quiet", "--out", str(path)]
        for item in sets:
            command += ["--set", item]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ConfigError(f"sweep point {path.name} failed: {last}")
        paths.append(path)
    return paths


def sweep(
    config: str,
    seeds: int,
    grid_items: Sequence[str],
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    progress: Callable[..., None] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains every point of the grid with ``seeds`` seeds; returns the sweep folder, each
    point's run directory and how each group trained (``vmapped`` or ``processes``)."""
    if seeds < 1:
        raise ConfigError("--seeds must be positive")
    data = apply_overrides(load_yaml(config), list(overrides))
    grid = parse_grid(grid_items)
    from robotrl import experiment

    for group in plan(data, grid):  # every point is a valid config before anything trains
        for point in group.swept:
            experiment.parse_config(apply_overrides(data, _overrides({**group.fixed, **point})))
    folder = Path(out) if out is not None else default_run_path(f"sweep-{data.get('name', 'run')}")
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not empty: give --out a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    groups = []
    for group in plan(data, grid):
        try:
            paths = _train_vmapped(data, group, seeds, folder, progress)
            how = "vmapped"
        except (jax.errors.JAXTypeError, ConfigError) as err:
            if any((folder / point_name({**group.fixed, **p})).exists() for p in group.swept):
                raise
            say(f"points {[point_name(p) for p in group.swept]}: one process each ({err})")
            paths = _train_processes(config, list(overrides), group, seeds, folder)
            how = "processes"
        say(f"{how}: {', '.join(p.name for p in paths)}")
        groups.append({"how": how, "runs": [str(p) for p in paths]})
    summary = {"folder": str(folder), "seeds": seeds, "grid": grid, "groups": groups}
    (folder / "sweep.json").write_text(json.dumps(summary, indent=2))
    return summary
