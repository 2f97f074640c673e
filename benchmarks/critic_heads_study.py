"""SAC with regression and classification critics across reward scales ("Stop Regressing",
Farebrother et al. 2024): is an HL-Gauss critic at least as good as MSE, and less sensitive to
the scale of the reward?

Per task, SAC with ``algo.critic.kind`` = ``mse``, ``hl_gauss``, ``two_hot`` (101 bins, support
derived from the scaled reward range: ``[r_min, r_max] * scale / (1 - gamma)``), each at
``env.reward_scale`` = 0.1, 1, 10, ``SEEDS`` seeds vmapped in one program per run. The scale
multiplies the training env's rewards only: every evaluation return is in the task's own units,
so runs at different scales compare directly. Everything else is the task's preset.

Tasks (pure-JAX, trained in the scan loop; budgets sized for the 2-core CPU, ``--steps`` for more):
  pendulum   ``configs/sac_pendulum.yaml`` (swing-up, dense negative reward)
  rccar      the RC car on the training tracks with the shaped (summed) reward: progress, speed,
             offset and steering terms and a -10 penalty on leaving the track; SAC 64x64
  quadrotor  ``configs/sac_quadrotor.yaml`` (Learning to Fly's SAC, hover; budget short of the
             preset's 1M steps, no curriculum stage is reached)

Recorded per run: every seed's eval return at each evaluation, wall time and the critic's value
range. Reported per task, head and scale: the final eval return and its mean over every
evaluation (area under the learning curve), IQM with 95% bootstrap CIs over seeds; the
sensitivity to reward scale: per head, the spread (max - min over scales) of those IQMs, and
over all tasks the IQM of min-max normalised returns per scale.

Results: ``benchmarks/out/critic_heads_study.json`` (tasks not run now keep their saved
results), plot ``benchmarks/results/critic_heads_study.png``.
Run: ``python -m benchmarks.critic_heads_study [--tasks pendulum rccar] [--steps rccar=100000]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import OUT, ROOT, iqm_ci, machine, save

RESULTS = ROOT / "benchmarks" / "results"
NAME = "critic_heads_study"
SEEDS = 5
HEADS = ("mse", "hl_gauss", "two_hot")
SCALES = (0.1, 1.0, 10.0)
SAC_64 = {
    "actor_hidden": [64, 64],
    "critic_hidden": [64, 64],
    "batch_size": 128,
    "actor_lr": 1.0e-3,
    "critic_lr": 1.0e-3,
    "temp_lr": 1.0e-3,
}
TASKS: dict[str, dict[str, Any]] = {
    # preset (or env + algo), env steps, steps between evaluations and logs, eval episodes
    "pendulum": {
        "preset": "configs/sac_pendulum.yaml",
        "steps": 10_000,
        "evals": 5,
        "log_every": 1000,
        "eval_episodes": 10,
    },
    "rccar": {
        "env": {"name": "rccar", "options": {"reward": "summed"}},
        "algo": SAC_64,
        "train": {"learning_starts": 1000},
        "steps": 30_000,
        "evals": 4,
        "log_every": 2500,
        "eval_episodes": 10,
    },
    "quadrotor": {
        "preset": "configs/sac_quadrotor.yaml",
        "steps": 200_000,
        "evals": 4,
        "log_every": 10_000,
        "eval_episodes": 32,
    },
}


def run_config(task: str, head: str, scale: float, steps: int, seeds: int) -> dict:
    """The experiment config (plain data) of one run: the task's preset with the critic head,
    the reward scale and the study's budget."""
    from robotrl.config import load_yaml

    spec = TASKS[task]
    if "preset" in spec:
        cfg = load_yaml(ROOT / spec["preset"])
    else:
        cfg = {"env": dict(spec["env"]), "algo": {"name": "sac", **spec["algo"]}}
        cfg["train"] = dict(spec.get("train", {}))
    cfg["name"] = f"{task}_{head}_x{scale:g}"
    cfg["env"] = {**cfg["env"], "reward_scale": scale}
    cfg["algo"] = {**cfg["algo"], "critic": {"kind": head}}
    log_every = spec["log_every"]
    eval_every = max(log_every, steps // spec["evals"] // log_every * log_every)
    cfg["train"] = {
        **cfg.get("train", {}),
        "total_steps": steps,
        "log_every": log_every,
        "eval_every": eval_every,
        "eval_episodes": spec["eval_episodes"],
        "checkpoint_every": 0,
        "num_seeds": seeds,
    }
    return cfg


def run_one(task: str, head: str, scale: float, steps: int, seeds: int, root: Path) -> dict:
    from robotrl import experiment
    from robotrl.nets import default_value_range
    from robotrl.runs import read_metrics
    from robotrl.train.session import NonFiniteError

    cfg = experiment.parse_config(run_config(task, head, scale, steps, seeds))
    exp = experiment.Experiment(cfg)
    value_range = (
        None if head == "mse" else default_value_range(exp.spec.reward_range, exp.cfg.algo.gamma)
    )
    out = root / cfg.name
    start, stopped = time.perf_counter(), None
    try:
        experiment.train(cfg, out=out)
    except NonFiniteError as err:
        stopped = str(err)
    wall = time.perf_counter() - start
    rows = read_metrics(out / "metrics.csv")
    evals = [r for r in rows if np.isfinite(r.get("eval/return/seed0", np.nan))]
    return {
        "eval_steps": [int(r["step"]) for r in evals],
        "returns": [[float(r[f"eval/return/seed{i}"]) for i in range(seeds)] for r in evals],
        "value_range": value_range,
        "wall_s": wall,
        "stopped": stopped,
    }


def _steps(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        task, _, n = item.partition("=")
        if task not in TASKS or not n.isdigit():
            raise SystemExit(f"--steps: expected TASK=N with TASK in {list(TASKS)}, got {item!r}")
        out[task] = int(n)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--heads", nargs="*", default=list(HEADS), choices=list(HEADS))
    p.add_argument("--scales", nargs="*", type=float, default=list(SCALES))
    p.add_argument("--seeds", type=int, default=SEEDS, help="seeds per run, vmapped")
    p.add_argument("--steps", nargs="*", default=[], help="env steps per task: TASK=N ...")
    args = p.parse_args([] if argv is None else argv)
    budgets = {task: TASKS[task]["steps"] for task in TASKS} | _steps(args.steps)
    saved = OUT / f"{NAME}.json"
    results: dict[str, Any] = json.loads(saved.read_text())["results"] if saved.is_file() else {}
    for task in args.tasks:  # runs saved at the same budget stay; the ones run now replace them
        old = results.get(task, {})
        same = old.get("steps") == budgets[task] and old.get("seeds") == args.seeds
        runs = old.get("runs", {}) if same else {}
        results[task] = {"steps": budgets[task], "seeds": args.seeds, "runs": runs}
    data = {"machine": machine(), "results": results}
    root = Path(tempfile.mkdtemp(prefix="critic-heads-"))
    for task in args.tasks:
        for scale in args.scales:
            for head in args.heads:
                print(f"critic heads study: {task} {head} x{scale:g}", flush=True)
                run = run_one(task, head, scale, budgets[task], args.seeds, root)
                final = iqm_ci(run["returns"][-1]) if run["returns"] else (np.nan,) * 3
                print(f"  {run['wall_s']:.0f} s, final IQM {final[0]:.1f}", flush=True)
                results[task]["runs"].setdefault(head, {})[f"{scale:g}"] = run
                save(NAME, data)  # after every run: an interrupted study keeps what it did
    plot(data)
    return data


def final_returns(run: dict) -> np.ndarray:
    """Every seed's return at the last evaluation ``[S]`` (NaN if the run never evaluated)."""
    return np.asarray(run["returns"][-1]) if run["returns"] else np.full(1, np.nan)


def mean_returns(run: dict) -> np.ndarray:
    """Every seed's return averaged over all its evaluations ``[S]``: the area under the
    learning curve, which tells sample efficiency apart where final returns saturate."""
    return np.asarray(run["returns"]).mean(0) if run["returns"] else np.full(1, np.nan)


METRICS = {"final": final_returns, "mean over evals": mean_returns}


def normalized(data: dict, metric=final_returns) -> dict[str, dict[str, np.ndarray]]:
    """``head -> scale -> [tasks * S]`` returns (``metric``), min-max normalised per task over
    every head, scale and seed of that task (1 = the task's best seed, 0 = its worst)."""
    out: dict[str, dict[str, list]] = {}
    for res in data["results"].values():
        values = {
            (h, s): metric(r) for h, by_scale in res["runs"].items() for s, r in by_scale.items()
        }
        if not values:
            continue
        every = np.concatenate(list(values.values()))
        lo, hi = np.nanmin(every), np.nanmax(every)
        for (h, s), v in values.items():
            out.setdefault(h, {}).setdefault(s, []).append((v - lo) / max(hi - lo, 1e-9))
    return {h: {s: np.concatenate(v) for s, v in by.items()} for h, by in out.items()}


def plot(data: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(data["results"])
    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks), 7.5), squeeze=False)
    styles = {"0.1": ":", "1": "-", "10": "--"}
    for col, task in enumerate(tasks):
        res = data["results"][task]
        top, bottom = axes[0, col], axes[1, col]
        for i, (head, by_scale) in enumerate(res["runs"].items()):
            color = f"C{i}"
            scales = sorted(by_scale, key=float)
            stats = np.array([iqm_ci(final_returns(by_scale[s])) for s in scales])
            xs = np.array([float(s) for s in scales]) * (1 + 0.06 * (i - 1))  # dodge
            top.errorbar(
                xs,
                stats[:, 0],
                yerr=[stats[:, 0] - stats[:, 1], stats[:, 2] - stats[:, 0]],
                marker="o",
                capsize=3,
                color=color,
                label=head,
            )
            for s in scales:
                run = by_scale[s]
                curve = [iqm_ci(r, reps=200)[0] for r in run["returns"]]
                bottom.plot(
                    run["eval_steps"],
                    curve,
                    color=color,
                    ls=styles.get(s, "-."),
                    label=f"{head} x{s}",
                )
        top.set_xscale("log")
        top.set_xlabel("reward scale")
        top.set_title(f"{task}: final eval return (IQM, 95% CI, {res['seeds']} seeds)")
        top.legend(fontsize=8)
        bottom.set_xlabel("env steps")
        bottom.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:g}k")
        bottom.set_title(f"{task}: eval return (IQM), task units")
        bottom.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{NAME}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(data: dict) -> str:
    results = data["results"]
    lines = [
        "## Critic heads: MSE vs HL-Gauss vs two-hot in SAC across reward scales",
        "",
        "Eval return in task units, IQM [95% bootstrap CI] over seeds, at each training reward "
        "scale: at the last evaluation (final) and averaged over every evaluation (mean over "
        "evals, the area under the learning curve); spread = max - min of the IQM over scales "
        f"(lower: less sensitive to reward scale). Plot: `benchmarks/results/{NAME}.png`.",
        "",
    ]
    for task, res in results.items():
        runs = res["runs"]
        if not runs:
            continue
        scales = sorted({s for by in runs.values() for s in by}, key=float)
        lines += [
            f"**{task}** ({res['steps']:,} env steps, {res['seeds']} seeds)",
            "",
            "| head | metric | "
            + " | ".join(f"x{s}" for s in scales)
            + " | spread | wall per run |",
            "|---|---|" + "---|" * (len(scales) + 2),
        ]
        for head, by_scale in runs.items():
            wall = np.mean([r["wall_s"] for r in by_scale.values()])
            for metric, fn in METRICS.items():
                cells, iqms = [], []
                for s in scales:
                    if s not in by_scale:
                        cells.append("-")
                        continue
                    m, lo, hi = iqm_ci(fn(by_scale[s]))
                    iqms.append(m)
                    stop = " (non-finite: stopped)" if by_scale[s]["stopped"] else ""
                    cells.append(f"{m:.1f} [{lo:.1f}, {hi:.1f}]{stop}")
                spread = max(iqms) - min(iqms) if iqms else np.nan
                lines.append(
                    f"| {head} | {metric} | "
                    + " | ".join(cells)
                    + f" | {spread:.1f} | {wall:.0f} s |"
                )
        lines.append("")
    for metric, fn in METRICS.items():
        norm = normalized(data, fn)
        scales = sorted({s for by in norm.values() for s in by}, key=float)
        lines += [
            f"**All tasks, {metric}** ({', '.join(t for t, r in results.items() if r['runs'])}): "
            "returns min-max normalised per "
            "task over every run and seed, IQM [95% CI] over tasks x seeds; worst = the "
            "head's lowest scale, spread = highest - lowest.",
            "",
            "| head | " + " | ".join(f"x{s}" for s in scales) + " | worst | spread |",
            "|---|" + "---|" * (len(scales) + 2),
        ]
        for head, by_scale in norm.items():
            stats = [iqm_ci(by_scale[s]) if s in by_scale else (np.nan,) * 3 for s in scales]
            cells = " | ".join(f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in stats)
            iqms = [m for m, _, _ in stats]
            lines.append(
                f"| {head} | {cells} | {np.nanmin(iqms):.2f} | "
                f"{np.nanmax(iqms) - np.nanmin(iqms):.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    result = main(sys.argv[1:])
    print(report(result))
    print(json.dumps({"plot": str(RESULTS / f"{NAME}.png")}))
