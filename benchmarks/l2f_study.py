"""Learning to Fly's ablation study: how many seeds learn to hover with the full recipe, and with
the asymmetric critic, the action history and the curriculum each removed.

Every variant trains the same preset (default ``configs/sac_quadrotor.yaml``) for the same step
budget with ``SEEDS`` seeds (vmapped in one process per variant), changing one switch:

  full           the preset as shipped
  no_asymmetric  ``algo.privileged_critic=false`` (the critic sees the actor's observation)
  no_history     ``env.options.action_history=0``
  no_curriculum  ``env.options.curriculum_interval=0``

A seed *hovers* when at least ``HOVER_SHARE`` of its final evaluation episodes (deterministic
policy) fly: never terminated, position error below the env's ``success_tolerance`` over the
last 2 s. The final policies are also judged on ``DISTURBED_EPISODES`` episodes under the
quadrotor's default disturbances (a constant force and torque drawn per episode, L2F's), which
the preset trains without. The paper's signature: the full recipe hovers in >= 8/10 seeds,
every ablation lowers that. Results: ``benchmarks/out/l2f_study.json``, plot
``benchmarks/results/l2f_study.png``.

Run: ``python -m benchmarks.l2f_study [--config C] [--steps N] [--seeds S] [--set KEY=VALUE]``;
``--reevaluate`` redoes only the disturbed evaluation of the runs in the saved results.
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

from benchmarks.common import OUT, ROOT, machine, save

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = 10
HOVER_SHARE = 0.8
DISTURBED_EPISODES = 100
VARIANTS = {
    "full": [],
    "no_asymmetric": ["algo.privileged_critic=false"],
    "no_history": ["env.options.action_history=0"],
    "no_curriculum": ["env.options.curriculum_interval=0"],
}


def run(config: str, variant: str, steps: int, seeds: int, extra: list[str], evals: int) -> dict:
    """One variant: all seeds vmapped in one ``robotrl train`` process (spread over the CPU
    cores), evaluated ``evals`` times along the way; a seed's verdict is its last evaluation."""
    from robotrl.runs import read_metrics

    out = Path(tempfile.mkdtemp(prefix=f"l2f-{variant}-")) / "run"
    sets = [
        f"train.num_seeds={seeds}",
        f"train.total_steps={steps}",
        f"train.eval_every={max(steps // evals, 1)}",
        "train.checkpoint_every=0",
        *extra,
        *VARIANTS[variant],
    ]
    cmd = [sys.executable, "-m", "robotrl", "train", config, "--quiet", "--out", str(out)]
    for item in sets:
        cmd += ["--set", item]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr.decode()[-2000:]}")
    wall = time.time() - t0
    evaluated = [r for r in read_metrics(out / "metrics.csv") if "eval/success_rate" in r]
    evaluated = [r for r in evaluated if np.isfinite(r["eval/success_rate"])]

    def per_seed(row: dict, name: str) -> list[float]:
        if seeds == 1:
            return [row[f"eval/{name}"]]
        return [row[f"eval/{name}/seed{i}"] for i in range(seeds)]

    last = evaluated[-1]
    rates = per_seed(last, "success_rate")
    return {
        "variant": variant,
        "overrides": VARIANTS[variant],
        "success_rate_per_seed": rates,
        "final_position_error_per_seed": per_seed(last, "position_error"),
        "seeds_hovering": int(sum(r >= HOVER_SHARE for r in rates)),
        "curve": [
            {"step": int(r["step"]), "success_rate_per_seed": per_seed(r, "success_rate")}
            for r in evaluated
        ],
        "seeds": seeds,
        "steps": steps,
        "wall_s": wall,
        "run": str(out),
    }


def disturbed(result: dict) -> dict:
    """Adds the final policies' success under the env's default disturbances to ``result``."""
    from robotrl.experiment import evaluate_run
    from sims.quadrotor import QuadrotorConfig

    nominal = QuadrotorConfig()
    out = evaluate_run(
        result["run"],
        episodes=DISTURBED_EPISODES,
        env_overrides=[
            f"env.options.disturbance_force_std={nominal.disturbance_force_std}",
            f"env.options.disturbance_torque_std={nominal.disturbance_torque_std}",
        ],
    )
    rates = out.get("success_rate_per_seed", [out["eval/success_rate"]])
    result["disturbed_success_rate_per_seed"] = rates
    result["disturbed_seeds_hovering"] = int(sum(r >= HOVER_SHARE for r in rates))
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/sac_quadrotor.yaml")
    p.add_argument("--steps", type=int, default=1_500_000)
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--set", action="append", default=[], help="extra override for every variant")
    p.add_argument("--evals", type=int, default=6, help="evaluations along each run")
    p.add_argument("--reevaluate", action="store_true", help="redo the disturbed evaluation only")
    args = p.parse_args([] if argv is None else argv)
    if args.reevaluate:
        data = json.loads((OUT / "l2f_study.json").read_text())
        data["results"] = [disturbed(r) for r in data["results"]]
        save("l2f_study", data)
        return data
    results = []
    for variant in args.variants:
        print(f"L2F study: {variant} ({args.seeds} seeds x {args.steps:,} steps)", flush=True)
        result = run(args.config, variant, args.steps, args.seeds, args.set, args.evals)
        results.append(disturbed(result))
        print(
            f"  {result['seeds_hovering']}/{args.seeds} seeds hover "
            f"({result['disturbed_seeds_hovering']} under disturbances)",
            flush=True,
        )
    # Variants not run now keep their saved results (same config and extra overrides).
    saved = OUT / "l2f_study.json"
    if saved.is_file():
        old = json.loads(saved.read_text())
        if old.get("config") == args.config and old.get("extra") == args.set:
            ran = {r["variant"] for r in results}
            results += [r for r in old["results"] if r["variant"] not in ran]
    order = list(VARIANTS)
    results.sort(key=lambda r: order.index(r["variant"]))
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
        f"Learning to Fly ablations, {rows[0]['steps'] / 1e6:.1f}M steps per seed\n"
        f"(dots: each seed's success rate x {seeds})"
        if rows
        else "Learning to Fly ablations",
        fontsize=10,
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
        "| variant | seeds hovering | success rate per seed | under disturbances: seeds "
        f"hovering | success rate per seed ({DISTURBED_EPISODES} episodes) | wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        rates = ", ".join(f"{x:.2f}" for x in r["success_rate_per_seed"])
        dist = ", ".join(f"{x:.2f}" for x in r.get("disturbed_success_rate_per_seed", []))
        lines.append(
            f"| {r['variant']} | {r['seeds_hovering']}/{r['seeds']} | {rates} | "
            f"{r.get('disturbed_seeds_hovering', '-')}/{r['seeds']} | {dist} | "
            f"{r['wall_s']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    result = main(sys.argv[1:])
    print(report(result))
    print(json.dumps({"plot": str(RESULTS / "l2f_study.png")}))
