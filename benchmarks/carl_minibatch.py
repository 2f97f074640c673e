"""CaRL's minibatch study on the RC car: PPO's final performance against minibatch size, with the
summed shaped reward and with CaRL's multiplicative route-completion reward.

CaRL (Jaeger et al. 2025) found that the summed reward degrades as the minibatch grows while the
multiplicative one stays flat. Every run trains ``configs/ppo_rccar.yaml`` for the same number of
env steps, changing only ``algo.minibatch_size`` and ``env.options.reward``; seeds run vmapped in
one program. Both rewards are judged by the same task measure: laps completed in a 50 s
evaluation episode (deterministic policy, 32 episodes per seed, training tracks).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import OUT, ROOT, machine, save

RESULTS = ROOT / "benchmarks" / "results"
MINIBATCHES = (256, 1024, 4096, 8192)
REWARDS = ("summed", "multiplicative")


def run(reward: str, minibatch: int, steps: int, seeds: int) -> dict:
    """One training run in a fresh process; returns its last evaluation row."""
    out = Path(tempfile.mkdtemp(prefix="carl-")) / "run"
    cmd = [
        sys.executable,
        "-m",
        "robotrl",
        "train",
        "configs/ppo_rccar.yaml",
        "--quiet",
        "--out",
        str(out),
        "--set",
        f"algo.minibatch_size={minibatch}",
        "--set",
        f"env.options.reward={reward}",
        "--set",
        f"train.total_steps={steps}",
        "--set",
        f"train.num_seeds={seeds}",
        "--set",
        f"train.eval_every={steps}",
        "--set",
        "train.checkpoint_every=0",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    from robotrl.runs import read_metrics

    rows = [r for r in read_metrics(out / "metrics.csv") if np.isfinite(r.get("eval/laps", np.nan))]
    last = rows[-1]
    laps = [last[f"eval/laps/seed{i}"] for i in range(seeds)] if seeds > 1 else [last["eval/laps"]]
    return {
        "reward": reward,
        "minibatch": minibatch,
        "steps": steps,
        "seeds": seeds,
        "laps": float(np.mean(laps)),
        "laps_per_seed": laps,
        "return": last["eval/return_mean"],
        "elapsed_s": last["timing/elapsed_s"],
        "run": str(out),
    }


def main(steps: int = 2_000_000, seeds: int = 2) -> dict:
    results = []
    for reward in REWARDS:
        for minibatch in MINIBATCHES:
            print(f"CaRL study: {reward} reward, minibatch {minibatch}")
            results.append(run(reward, minibatch, steps, seeds))
    data = {"machine": machine(), "results": results, "steps": steps, "seeds": seeds}
    save("carl_minibatch", data)
    plot(data)
    return data


def plot(data: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for reward in REWARDS:
        rows = sorted(
            (r for r in data["results"] if r["reward"] == reward), key=lambda r: r["minibatch"]
        )
        xs = [r["minibatch"] for r in rows]
        ax.plot(xs, [r["laps"] for r in rows], marker="o", label=reward)
        lo = [min(r["laps_per_seed"]) for r in rows]
        hi = [max(r["laps_per_seed"]) for r in rows]
        ax.fill_between(xs, lo, hi, alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("PPO minibatch size")
    ax.set_ylabel("laps in a 50 s evaluation episode")
    ax.set_title(f"RC car, PPO, {data['steps'] / 1e6:.1f}M env steps, {data['seeds']} seeds (mean)")
    ax.grid(alpha=0.3)
    ax.legend()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "carl_minibatch.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(data: dict) -> str:
    lines = [
        "## CaRL minibatch study (RC car, PPO)",
        "",
        f"Laps in a 50 s evaluation episode after {data['steps']:,} env steps, mean over "
        f"{data['seeds']} vmapped seeds, per reward and PPO minibatch size "
        "(plot: `benchmarks/results/carl_minibatch.png`).",
        "",
        "| minibatch | " + " | ".join(REWARDS) + " |",
        "|---|" + "---|" * len(REWARDS),
    ]
    for mb in MINIBATCHES:
        cells = []
        for reward in REWARDS:
            match = [r for r in data["results"] if r["reward"] == reward and r["minibatch"] == mb]
            if match:
                seeds = ", ".join(f"{x:.2f}" for x in match[0]["laps_per_seed"])
                cells.append(f"{match[0]['laps']:.2f} ({seeds})")
            else:
                cells.append("n/a")
        lines.append(f"| {mb} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    result = main()
    print(report(result))
    print(json.dumps({"plot": str(RESULTS / "carl_minibatch.png"), "out": str(OUT)}))
