"""Dual RL's signature on a generated dataset: f-DVL's chi-square and total-variation value
losses train stably, XQL's Gumbel loss at a low temperature does not.

The same offline value learner (``algo.name: iql``) with ``algo.value_loss`` = ``expectile``
(IQL), ``chi2``, ``tv`` (f-DVL) and ``gumbel`` (XQL, ``gumbel_beta`` = ``GUMBEL_BETA``), 3 seeds
vmapped each, on the medium dataset the WSRL study generates (the task's SAC preset at its
medium checkpoint). Recorded: every seed's eval returns, whether the run stopped on a
non-finite loss, and the value loss (mean over seeds) at its largest and at the end.

Results: ``benchmarks/out/dual_rl_study.json``. Run: ``python -m benchmarks.dual_rl_study``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import machine, save
from benchmarks.wsrl_study import TASKS, _env, medium_dataset

SEEDS = 3
GUMBEL_BETA = 0.1
LOSSES = {"expectile": {}, "chi2": {}, "tv": {}, "gumbel": {"gumbel_beta": GUMBEL_BETA}}


def run_loss(task: str, loss: str, dataset: Path, root: Path, steps: int) -> dict:
    from robotrl import experiment
    from robotrl.runs import read_metrics
    from robotrl.train.session import NonFiniteError

    spec = TASKS[task]
    cfg = {
        "name": f"{loss}_{task}",
        "env": _env(spec),
        "algo": {
            "name": "iql",
            "actor_hidden": spec["algo"]["actor_hidden"],
            "critic_hidden": spec["algo"]["critic_hidden"],
            "value_loss": loss,
            **LOSSES[loss],
        },
        "train": {
            "dataset": str(dataset),
            "total_steps": steps,
            "log_every": 1000,
            "eval_every": steps // 4,
            "eval_episodes": 20,
            "checkpoint_every": 0,
            "num_seeds": SEEDS,
        },
    }
    out = root / loss
    stopped = None
    try:
        experiment.train(experiment.parse_config(cfg), out=out)
    except NonFiniteError as err:
        stopped = str(err)
    rows = read_metrics(out / "metrics.csv")
    evals = [r for r in rows if np.isfinite(r.get("eval/return/seed0", np.nan))]
    value_loss = np.array([r.get("train/value_loss", np.nan) for r in rows])  # seed means
    return {
        "loss": loss,
        "eval_steps": [int(r["step"]) for r in evals],
        "returns": [[r[f"eval/return/seed{i}"] for i in range(SEEDS)] for r in evals],
        "max_value_loss": float(np.nanmax(np.abs(value_loss))),
        "final_value_loss": float(value_loss[-1]),
        "stopped": stopped,
        "run": str(out),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="pendulum", choices=list(TASKS))
    p.add_argument("--steps", type=int, default=40_000, help="gradient steps per run")
    args = p.parse_args([] if argv is None else argv)
    root = Path(tempfile.mkdtemp(prefix="dual-rl-"))
    dataset, behaviour = medium_dataset(args.task, root)
    results = []
    for loss in LOSSES:
        print(f"Dual RL study: {args.task} {loss}", flush=True)
        results.append(run_loss(args.task, loss, dataset, root, args.steps))
    data = {
        "machine": machine(),
        "task": args.task,
        "seeds": SEEDS,
        "gumbel_beta": GUMBEL_BETA,
        "behaviour_return": behaviour,
        "results": results,
    }
    save("dual_rl_study", data)
    return data


def report(data: dict) -> str:
    lines = [
        f"## Dual RL: f-DVL vs XQL value losses ({data['task']}, {data['seeds']} seeds)",
        "",
        f"Offline on a generated medium dataset (behaviour return {data['behaviour_return']:.1f});"
        f" XQL's Gumbel loss at beta {data['gumbel_beta']}.",
        "",
        "| value loss | final eval return per seed | value loss: largest, final | stopped |",
        "|---|---|---|---|",
    ]
    for r in data["results"]:
        final = ", ".join(f"{x:.1f}" for x in r["returns"][-1]) if r["returns"] else "-"
        worst = f"{r['max_value_loss']:.3g}, {r['final_value_loss']:.3g}"
        lines.append(f"| {r['loss']} | {final} | {worst} | {r['stopped'] or 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    result = main(sys.argv[1:])
    print(report(result))
    print(json.dumps({"out": "benchmarks/out/dual_rl_study.json"}))
