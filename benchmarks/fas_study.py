"""Sequence RL's signature: return against decision interval, and the FAS, for SRL-J, SAC and
SAC with action repeat J (the honest baseline: it also decides every J steps).

Each variant trains with the same env interaction budget (SAC with action repeat J counts one
transition per J env steps, so it gets ``steps / J`` of them), seeds vmapped in one program.
Then ``robotrl eval --decision-intervals`` plays every policy on the task's own time step,
deciding every k steps (open loop in between). The FAS normalises each seed's returns between a
uniform random policy (0) and the best mean return any variant reached at k = 1 on that task
(1), so the variants of a task share one scale.

``python -m benchmarks.fas_study [--tasks pendulum,quadrotor] [--seeds 3]`` (tasks not named keep
their last saved results).
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
INTERVALS = (1, 2, 4, 8, 16)
# task -> (preset, env steps, sequence length J, extra overrides for every variant)
TASKS = {
    "pendulum": ("configs/sac_pendulum.yaml", 20_000, 8, []),
    # The preset's asymmetric critic is off for every variant: SRL's recall model predicts the
    # actor's observation.
    "quadrotor": (
        "configs/sac_quadrotor.yaml",
        300_000,
        8,
        [
            "algo.privileged_critic=false",
            "train.eval_every=100000",
            "env.options.curriculum_interval=100000",
        ],
    ),
}


def variants(steps: int, length: int) -> dict[str, list[str]]:
    return {
        "SAC": ["algo.name=sac", f"train.total_steps={steps}"],
        f"SAC, action repeat {length}": [
            "algo.name=sac",
            f"env.action_repeat={length}",
            f"train.total_steps={steps // length}",
        ],
        f"SRL-{length}": [
            "algo.name=srl",
            f"algo.sequence_length={length}",
            f"train.total_steps={steps}",
        ],
    }


def _robotrl(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "robotrl", *args], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"robotrl {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def run_task(task: str, seeds: int, episodes: int) -> dict:
    preset, steps, length, extra = TASKS[task]
    out = {}
    for name, sets in variants(steps, length).items():
        run = Path(tempfile.mkdtemp(prefix="fas-")) / "run"
        print(f"FAS study: {task} / {name}", flush=True)
        args = ["train", preset, "--quiet", "--out", str(run)]
        for item in [*extra, *sets, f"train.num_seeds={seeds}", "train.checkpoint_every=0"]:
            args += ["--set", item]
        _robotrl(*args)
        intervals = ",".join(map(str, INTERVALS))
        _robotrl("eval", str(run), "--decision-intervals", intervals, "--episodes", str(episodes))
        out[name] = json.loads((run / "eval_intervals.json").read_text())
    reference = max(r["return_mean"][0] for r in out.values())
    floor = next(iter(out.values()))["random_return"]
    from robotrl.train.evaluate import frequency_averaged_score

    rows = []
    for name, r in out.items():
        per_seed = np.asarray(r["return_per_seed"])  # [K, S]
        fas = [
            frequency_averaged_score(INTERVALS, per_seed[:, i], floor, reference)
            for i in range(per_seed.shape[1])
        ]
        rows.append(
            {
                "variant": name,
                "return_mean": r["return_mean"],
                "return_per_seed": r["return_per_seed"],
                "fas_mean": float(np.mean(fas)),
                "fas_std": float(np.std(fas)),
                "fas_per_seed": fas,
            }
        )
    return {
        "task": task,
        "steps": steps,
        "sequence_length": length,
        "random_return": floor,
        "reference_return": reference,
        "variants": rows,
    }


def main(tasks: list[str] | None = None, seeds: int = 3, episodes: int = 16) -> dict:
    tasks = tasks or list(TASKS)
    results = [run_task(task, seeds, episodes) for task in tasks]
    saved = OUT / "fas_study.json"
    if saved.exists():  # keep the other tasks' last results (same seeds and episodes)
        old = json.loads(saved.read_text())
        if (old.get("seeds"), old.get("episodes")) == (seeds, episodes):
            kept = [r for r in old["results"] if r["task"] not in tasks]
            results = sorted(kept + results, key=lambda r: list(TASKS).index(r["task"]))
    data = {
        "machine": machine(),
        "intervals": list(INTERVALS),
        "seeds": seeds,
        "episodes": episodes,
        "results": results,
    }
    save("fas_study", data)
    plot(data)
    return data


def plot(data: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = data["results"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for row in task["variants"]:
            per_seed = np.asarray(row["return_per_seed"])
            mean, std = per_seed.mean(axis=1), per_seed.std(axis=1)
            ax.plot(
                data["intervals"],
                mean,
                marker="o",
                label=f"{row['variant']} (FAS {row['fas_mean']:.2f})",
            )
            ax.fill_between(data["intervals"], mean - std, mean + std, alpha=0.2)
        ax.axhline(task["random_return"], color="grey", ls=":", label="random")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("decision interval k (env steps, open loop in between)")
        ax.set_ylabel("return")
        ax.set_title(task["task"])
        ax.legend(fontsize=7)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "fas_study.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(data: dict) -> str:
    ks = data["intervals"]
    lines = [
        "## fas_study",
        "",
        f"Return (mean over {data['seeds']} seeds x {data['episodes']} episodes) when deciding "
        "every k steps, open loop in between, and the FAS (0 random, 1 the task's best "
        "k = 1 return at every frequency); `benchmarks/results/fas_study.png`.",
        "",
        "| task | variant | "
        + " | ".join(f"k={k}" for k in ks)
        + " | FAS (mean ± std over seeds) |",
        "|---|---|" + "---|" * len(ks) + "---|",
    ]
    for task in data["results"]:
        for row in task["variants"]:
            returns = " | ".join(f"{r:.1f}" for r in row["return_mean"])
            lines.append(
                f"| {task['task']} ({task['steps']:,} steps) | {row['variant']} | {returns} "
                f"| {row['fas_mean']:.2f} ± {row['fas_std']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    argv = sys.argv[1:]
    tasks = argv[argv.index("--tasks") + 1].split(",") if "--tasks" in argv else None
    seeds = int(argv[argv.index("--seeds") + 1]) if "--seeds" in argv else 3
    print(report(main(tasks, seeds)))
    print(f"saved to {OUT / 'fas_study.json'}")
