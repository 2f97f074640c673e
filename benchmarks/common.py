"""Shared by the benchmark drivers: the peer venv, subprocess runs with one JSON line each,
alternating pairs, ratios, and the machine description for the report."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers"
OUT = ROOT / "benchmarks" / "out"


def peer_python() -> str:
    """The peer venv's interpreter, created on first use by ``peers/setup_peer_env.sh``."""
    result = subprocess.run(
        ["bash", str(PEERS / "setup_peer_env.sh")], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"peer env setup failed:\n{result.stderr[-2000:]}")
    venv = result.stdout.strip().splitlines()[-1]
    return str(Path(venv) / "bin" / "python")


def run_json(cmd: list[str], timeout: float = 600, env: dict[str, str] | None = None) -> dict:
    """Runs a benchmark script and parses the JSON line it prints last."""
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env
    )
    lines = [ln for ln in result.stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(
            f"{' '.join(cmd)} printed no JSON (rc {result.returncode}):\n{result.stderr[-2000:]}"
        )
    data = json.loads(lines[-1])
    if data.get("ok") is False:
        raise RuntimeError(f"{' '.join(cmd)} failed: {data.get('error')}")
    return data


def ours(script: str, *args: str) -> list[str]:
    """Command running one of our benchmark scripts (as a module, so it can import siblings)."""
    return [sys.executable, "-m", f"benchmarks.{Path(script).stem}", *args]


def alternate(
    a: Callable[[], dict],
    b: Callable[[], dict],
    pairs: int,
    warmup: bool = True,
    log: Callable[[str], None] = print,
) -> list[tuple[dict, dict]]:
    """A B A B ...: ``pairs`` measured pairs after one warm-up pair (caches, page cache)."""
    if warmup:
        log("  warm-up pair")
        a(), b()
    out = []
    for i in range(pairs):
        ra, rb = a(), b()
        log(f"  pair {i + 1}/{pairs} done")
        out.append((ra, rb))
    return out


def ratio_summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_at_start": load(),
        "versions": versions,
    }


def save(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def iqm_ci(values: Any, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """IQM over seeds and its 95% percentile-bootstrap interval."""
    import numpy as np

    from robotrl.train.evaluate import iqm

    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    boot = [iqm(rng.choice(values, len(values))) for _ in range(reps)]
    return iqm(values), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))
