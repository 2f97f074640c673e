"""The run directory: what a run is, what it measured, and how to pick it up again.

runs/<preset>-<timestamp>/
  config.yaml       resolved config (every field, defaults included)
  metadata.json     git revision, package versions, host, seed, command line, start time,
                    the config again (for tools that read one JSON file)
  metrics.csv       one row per logged env step; keys train/, eval/, timing/, and the Open RL
                    Benchmark (cleanRL) names global_step, charts/episodic_return, charts/SPS
  tb/               TensorBoard events of the same rows
  checkpoints/      orbax checkpoints of the full training state
  learning_curve.png
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import json
import math
import os
import platform
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

CONFIG_FILE = "config.yaml"
METADATA_FILE = "metadata.json"
METRICS_FILE = "metrics.csv"
PACKAGES = (
    "robotrl",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "mujoco",
    "gymnasium",
    "dm-control",
)
# Open RL Benchmark reads cleanRL's names: these copies of our keys make a run plottable there.
ORLB_KEYS = {"charts/episodic_return": "train/episode_return", "charts/SPS": "timing/sps"}


class RunDirError(RuntimeError):
    """A run directory is missing, incomplete or would be overwritten."""


def git_revision() -> str | None:
    try:
        with warnings.catch_warnings():
            # JAX warns about any fork once it runs; git execs at once, so it is safe.
            warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def default_run_path(preset: str, root: str | Path = "runs") -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{preset}-{stamp}"
    suffix = 1
    while path.exists():
        path = Path(root) / f"{preset}-{stamp}-{suffix}"
        suffix += 1
    return path


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any], seed: int) -> RunDir:
        """A new run directory; refuses to touch one that already holds a run."""
        path = cls.check_free(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        (path / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
        metadata = {
            "git_revision": git_revision(),
            "packages": package_versions(),
            "python": sys.version.split()[0],
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "seed": seed,
            "command": sys.argv,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "config": config,
        }
        (path / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        return run

    @staticmethod
    def check_free(path: str | Path) -> Path:
        """``path``, if no run lives there yet; else a ``RunDirError``."""
        path = Path(path)
        if (path / CONFIG_FILE).exists() or (path / METRICS_FILE).exists():
            raise RunDirError(f"{path} already holds a run: use --resume {path} or another --out")
        return path

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"run directory {path} does not exist")
        if not (path / CONFIG_FILE).is_file():
            raise RunDirError(f"{path} is not a run directory (no {CONFIG_FILE})")
        return cls(path)

    def config(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load((self.path / CONFIG_FILE).read_text())
        except yaml.YAMLError as err:
            raise RunDirError(f"{self.path / CONFIG_FILE} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise RunDirError(f"{self.path / CONFIG_FILE} does not hold a config mapping")
        return data

    def metadata(self) -> dict[str, Any]:
        file = self.path / METADATA_FILE
        return json.loads(file.read_text()) if file.is_file() else {}

    def read_metrics(self) -> list[dict[str, float]]:
        return read_metrics(self.path / METRICS_FILE)


def read_metrics(file: Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` (NaN where a row has no value); none if there is no file."""
    if not file.is_file():
        return []
    try:
        with file.open(newline="") as f:
            rows = [
                {k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
                for row in csv.DictReader(f)
            ]
    except (ValueError, TypeError, csv.Error) as err:  # text, extra fields, binary garbage
        raise RunDirError(f"{file} is not a readable metrics file: {err}") from err
    if rows and "step" not in rows[0]:
        raise RunDirError(f"{file} is not a readable metrics file: it has no 'step' column")
    return rows


def with_orlb_keys(step: int, row: dict[str, float]) -> dict[str, float]:
    """``row`` plus ``global_step`` and the ``ORLB_KEYS`` copies of the keys it has."""
    extra = {name: row[key] for name, key in ORLB_KEYS.items() if key in row}
    return {"global_step": step, **row, **extra}


class MetricsLog:
    """Appends rows to ``metrics.csv`` and TensorBoard; usable as an ``on_log`` callback.

    ``resume_step`` drops rows logged after that step (they were made after the checkpoint the
    run resumes from), so the file keeps one row per logged step.
    """

    def __init__(self, run: RunDir, resume_step: int | None = None, tensorboard: bool = True):
        self.file = run.path / METRICS_FILE
        self.rows = read_metrics(self.file)
        if resume_step is not None:
            self.rows = [r for r in self.rows if r["step"] <= resume_step]
        self.columns = list(dict.fromkeys(["step", *(k for r in self.rows for k in r)]))
        self._rewrite()
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(str(run.path / "tb"), purge_step=purge)

    def _rewrite(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.file)

    def __call__(self, step: int, row: dict[str, float]) -> None:
        row = {"step": step, **with_orlb_keys(step, row)}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
        else:
            with self.file.open("a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
