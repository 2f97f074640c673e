"""FastRLAP's practice on the simulated RC car: does it learn to lap, and what do automatic
recovery and UTD 8 buy?

Variants of ``configs/fastrlap_rccar.yaml`` (one seed each, ``--steps`` env steps of practice):
  * ``utd8``: as shipped (SAC, 10 critics, UTD 8, automatic recovery);
  * ``utd1``: UTD 1;
  * ``no_recovery``: UTD 8 without automatic recovery (the car stays where it crashed or got
    stuck until its own actions free it).
Per variant: time to the first completed lap (practice seconds, recovery included), the best
lap time, laps and crashes in all, time stuck (seconds in which the last 3 s of positions lay
within 0.3 m), seconds recovering, and wall time; the laps and best lap over practice time are
plotted to ``benchmarks/results/practice_study.png``.

Run: ``python -m benchmarks.practice_study [--steps 10000] [--variants utd8 utd1 no_recovery]``.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, machine, save

RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = {
    "utd8": [],
    "utd1": ["algo.utd=1"],
    "no_recovery": ["env.options.recovery=false"],
}


def _f(row: dict, key: str) -> float:
    value = row.get(key, "")
    return float(value) if value not in ("", None) else math.nan


def run_variant(name: str, steps: int, seed: int, out: Path) -> dict:
    from robotrl import experiment

    overrides = [f"train.total_steps={steps}", "train.checkpoint_every=0", f"seed={seed}"]
    cfg = experiment.load_config("configs/fastrlap_rccar.yaml", overrides + VARIANTS[name])
    start = time.perf_counter()
    run, _ = experiment.train(cfg, out=out / name)
    wall = time.perf_counter() - start
    with open(run.path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    dt = 0.1
    curve = [
        {
            "step": int(float(r["step"])),
            "practice_s": _f(r, "train/env/practice_s_last"),
            "laps": _f(r, "train/env/lap_sum"),
            "best_lap": _f(r, "train/env/best_lap_time_last"),
            "crashes": _f(r, "train/env/crash_sum"),
            "stuck_s": dt * _f(r, "train/env/stuck_sum"),
            "recovering_s": _f(r, "train/env/recovering_s_sum"),
            "speed": _f(r, "train/env/speed"),
        }
        for r in rows
    ]
    last = rows[-1]
    return {
        "first_lap_at_s": _f(last, "train/env/first_lap_at_s_last"),
        "best_lap_s": _f(last, "train/env/best_lap_time_last"),
        "laps": sum(c["laps"] for c in curve),
        "crashes": sum(c["crashes"] for c in curve),
        "stuck_s": sum(c["stuck_s"] for c in curve),
        "recovering_s": sum(c["recovering_s"] for c in curve),
        "practice_s": _f(last, "train/env/practice_s_last"),
        "wall_s": wall,
        "env_steps_per_s": steps / wall,
        "curve": curve,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args([] if argv is None else argv)
    report: dict = {"machine": machine(), "steps": args.steps, "seed": args.seed, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            report["variants"][name] = run_variant(name, args.steps, args.seed, Path(tmp))
            v = report["variants"][name]
            print(name, {k: v[k] for k in v if k != "curve"}, flush=True)
    save("practice_study", report)
    _plot(report, RESULTS / "practice_study.png")
    print(render(report))
    return report


def render(data: dict) -> str:
    lines = [
        f"## FastRLAP practice on the simulated RC car ({data['steps']} steps, seed "
        f"{data['seed']}, `python -m benchmarks.practice_study`)",
        "",
        "| variant | first lap at | best lap | laps | crashes | time stuck | recovering | "
        "env steps/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in data["variants"].items():
        first = "never" if math.isnan(v["first_lap_at_s"]) else f"{v['first_lap_at_s']:.0f} s"
        best = "-" if math.isnan(v["best_lap_s"]) else f"{v['best_lap_s']:.1f} s"
        lines.append(
            f"| {name} | {first} | {best} | {v['laps']:.0f} | {v['crashes']:.0f} | "
            f"{v['stuck_s']:.0f} s | {v['recovering_s']:.0f} s | {v['env_steps_per_s']:.1f} |"
        )
    lines += ["", "Plot: `benchmarks/results/practice_study.png`."]
    return "\n".join(lines)


report = render


def _plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for name, v in data["variants"].items():
        t = [c["practice_s"] / 60 for c in v["curve"]]
        laps, total = [], 0.0
        for c in v["curve"]:
            total += c["laps"]
            laps.append(total)
        axes[0].plot(t, laps, label=name)
        axes[1].plot(t, [c["best_lap"] for c in v["curve"]], label=name)
        stuck, total = [], 0.0
        for c in v["curve"]:
            total += c["stuck_s"]
            stuck.append(total)
        axes[2].plot(t, stuck, label=name)
    # The first "lap" spans the practice before the car could drive: keep the axis on laps.
    axes[1].set_ylim(0, 30)
    titles = ("laps completed", "best lap so far (s)", "time stuck (s)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(xlabel="practice time (min)", title=title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
