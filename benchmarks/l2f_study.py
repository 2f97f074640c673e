"""Learning to Fly's ablation study: how many seeds learn to hover with the full recipe, and with
the asymmetric critic, the action history and the curriculum each removed.

Every variant trains the same preset (default ``configs/sac_quadrotor.yaml``) for the same step
budget with ``SEEDS`` seeds (one process each, ``--jobs`` at a time), changing one switch:

  full           the preset as shipped
  no_asymmetric  ``algo.privileged_critic=false`` (the critic sees the actor's observation)
  no_history     ``env.options.action_history=0``
  no_curriculum  ``env.options.curriculum_interval=0``

A seed *hovers* when at least ``HOVER_SHARE`` of its final evaluation episodes (deterministic
policy) fly: never terminated, position error below the env's ``success_tolerance`` over the
last 2 s. The paper's signature: the full recipe hovers in >= 8/10 seeds, every ablation lowers
that. Results: ``benchmarks/out/l2f_study.json``, plot ``benchmarks/results/l2f_study.png``.

Run: ``python -m benchmarks.l2f_study [--config C] [--steps N] [--seeds S] [--set KEY=VALUE]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, machine, save

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = 10
HOVER_SHARE = 0.8
VARIANTS = {
    "full": [],
    "no_asymmetric": ["algo.privileged_critic=false"],
    "no_history": ["env.options.action_history=0"],
    "no_curriculum": ["env.options.curriculum_interval=0"],
}


def _launch(config: str, variant: str, steps: int, seed: int, extra: list[str]):
    out = Path(tempfile.mkdtemp(prefix=f"l2f-{variant}-{seed}-")) / "run"
    sets = [
        f"seed={seed}",
        f"train.total_steps={steps}",
        f"train.eval_every={steps}",
        "train.checkpoint_every=0",
        *extra,
        *VARIANTS[variant],
    ]
    cmd = [sys.executable, "-m", "robotrl", "train", config, "--quiet", "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, out


def run(config: str, variant: str, steps: int, seeds: int, extra: list[str], jobs: int) -> dict:
    """One variant: every seed in its own process, ``jobs`` at a time (vmapping seeds of this
    small SAC over the two CPU devices ran 10x slower per seed than one seed alone here)."""
    from robotrl.runs import read_metrics

    t0 = time.time()
    pending, running, done = list(range(seeds)), [], {}
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            running.append((seed, *_launch(config, variant, steps, seed, extra)))
        seed, proc, out = running.pop(0)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} seed {seed} failed:\n{err.decode()[-2000:]}")
        rows = read_metrics(out / "metrics.csv")
        last = [r for r in rows if np.isfinite(r.get("eval/return_mean", np.nan))][-1]
        done[seed] = (last["eval/success_rate"], last["eval/position_error"], str(out))
    rates = [done[s][0] for s in range(seeds)]
    return {
        "variant": variant,
        "overrides": VARIANTS[variant],
        "success_rate_per_seed": rates,
        "final_position_error_per_seed": [done[s][1] for s in range(seeds)],
        "seeds_hovering": int(sum(r >= HOVER_SHARE for r in rates)),
        "seeds": seeds,
        "steps": steps,
        "wall_s": time.time() - t0,
        "runs": [done[s][2] for s in range(seeds)],
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/sac_quadrotor.yaml")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--set", action="append", default=[], help="extra override for every variant")
    p.add_argument("--jobs", type=int, default=2, help="training processes at a time")
    args = p.parse_args([] if argv is None else argv)
    results = []
    for variant in args.variants:
        print(f"L2F study: {variant} ({args.seeds} seeds x {args.steps:,} steps)", flush=True)
        results.append(run(args.config, variant, args.steps, args.seeds, args.set, args.jobs))
        print(f"  {results[-1]['seeds_hovering']}/{args.seeds} seeds hover", flush=True)
    data = {
        "machine": machine(),
        "config": args.config,
        "extra": args.set,
        "hover_share": HOVER_SHARE,
        "results": results,
    }
    save("l2f_study", data)
    plot(data)
    return data


def plot(data: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["results"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = [r["variant"] for r in rows]
    ax.bar(names, [r["seeds_hovering"] for r in rows], color="tab:blue", alpha=0.8)
    for i, r in enumerate(rows):
        ax.scatter(
            [i] * len(r["success_rate_per_seed"]),
            np.asarray(r["success_rate_per_seed"]) * r["seeds"],
            color="k",
            s=8,
            zorder=3,
        )
    seeds = rows[0]["seeds"] if rows else 10
    ax.set_ylim(0, seeds)
    ax.set_ylabel(f"seeds hovering (of {seeds})")
    ax.set_title(
        f"Learning to Fly ablations, {rows[0]['steps'] / 1e6:.1f}M steps "
        f"(dots: each seed's success rate x {seeds})"
        if rows
        else "Learning to Fly ablations"
    )
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "l2f_study.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(data: dict) -> str:
    lines = [
        "## Learning to Fly ablation study (quadrotor hover)",
        "",
        f"`{data['config']}` {' '.join(data['extra'])}; a seed hovers when >= "
        f"{data['hover_share']:.0%} of its final evaluation episodes fly "
        "(plot: `benchmarks/results/l2f_study.png`).",
        "",
        "| variant | seeds hovering | success rate per seed | wall (s) |",
        "|---|---|---|---|",
    ]
    for r in data["results"]:
        rates = ", ".join(f"{x:.2f}" for x in r["success_rate_per_seed"])
        lines.append(
            f"| {r['variant']} | {r['seeds_hovering']}/{r['seeds']} | {rates} | {r['wall_s']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    result = main(sys.argv[1:])
    print(report(result))
    print(json.dumps({"plot": str(RESULTS / "l2f_study.png")}))
