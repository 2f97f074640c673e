"""Listing and comparing run directories: a table, a CSV, a markdown file and an overlay plot."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robotrl.runs.plot import learning_curve
from robotrl.runs.rundir import RunDir, RunDirError


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


def compare_runs(
    paths: Sequence[str | Path],
    metric: str = "eval/return_mean",
    out: str | Path | None = None,
    group_by: str | None = None,
) -> dict[str, Any]:
    """Final value of ``metric`` per run (and per group: mean over runs), an overlay plot,
    CSV and markdown. Returns the table text and the files written."""
    runs = [summarize_run(p) for p in paths]
    for r in runs:
        r[metric] = _last(r["rows"], metric)
        r["group"] = str(_dig(r["config"], group_by)) if group_by else r["run"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["group"], []).append(r)
    table_rows = []
    for name, members in groups.items():
        values = np.array([m[metric] for m in members], np.float64)
        table_rows.append(
            {
                "group": name,
                "runs": len(members),
                metric: float(np.nanmean(values)) if np.isfinite(values).any() else math.nan,
                "std": float(np.nanstd(values)) if len(values) > 1 else 0.0,
            }
        )
    columns = ["group", "runs", metric, "std"]
    table = format_table(table_rows, columns)
    out_dir = Path(out) if out else Path(".")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "plot": learning_curve(
            {r["run"]: r["rows"] for r in runs}, out_dir / "compare.png", metrics=(metric,)
        ),
        "markdown": out_dir / "compare.md",
        "csv": out_dir / "compare.csv",
    }
    files["markdown"].write_text(table + "\n")
    with files["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(table_rows)
    return {"table": table, "files": {k: str(v) for k, v in files.items()}, "rows": table_rows}
