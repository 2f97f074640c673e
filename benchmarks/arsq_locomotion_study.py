"""ARSQ vs its factorised (CQN-style) baseline vs SAC on MuJoCo locomotion (MJX) with a
mixed-quality demonstration buffer mixed into every batch (issue 7).

All from the project's own policies (nothing downloaded):
  1. behaviour: SAC on the task (one seed, MJX) for ``--behaviour-steps`` steps, checkpoints
     at ``--medium-step`` and at the end;
  2. a mixed-quality dataset: ``--part`` transitions each of uniform random actions, the medium
     checkpoint and the final ("better") checkpoint (stochastic policies), one after another
     (``robotrl.data.mix``); every part's and the mixture's average episode return recorded;
  3. online training, ``--seeds`` seeds vmapped per variant (``train.num_seeds``), the same
     env-step budget ``--steps``, MJX (``env.backend=jax``), every batch ``--offline-fraction``
     dataset transitions (``train.dataset``, RLPD-style):
       arsq        auto-regressive soft Q over coarse-to-fine bins (``algo.name: arsq``)
       factorized  CQN's decoupled per-dimension Q (``algo.factorized: true``)
       sac         SAC
     and, only when named in ``--variants`` (not run by default), the ablation of the
     LayerNorm that ARSQ's advantage and value nets have by default (as CQN's critic):
       arsq_no_ln, factorized_no_ln   ``algo.critic_layer_norm: false``
Every ``--eval-every`` steps: each seed's deterministic eval return.

Results: ``benchmarks/out/arsq_locomotion_study.json``, plot
``benchmarks/results/arsq_locomotion.png`` (mean over seeds, 95% Student-t interval).
Run: ``python -m benchmarks.arsq_locomotion_study`` (the full size: 300k online steps, 256x256
nets, a 200k-step behaviour SAC with its medium checkpoint at 50k). The default task is
halfcheetah: its SAC improves steadily, so the parts form a clear quality ladder even at CPU
budgets (hopper's SAC stalled near 300 at 40k steps, leaving the data without a good part).
The size a 2-core CPU shared with another job finishes in about an hour (the run in
README/REPORT; 128x128 nets with batch 256 were about 6x slower per step for ARSQ):

    python -m benchmarks.arsq_locomotion_study --task halfcheetah --steps 150000 \
        --hidden 64 64 --batch-size 128 --learning-starts 5000 --eval-every 10000 \
        --eval-episodes 5 --behaviour-steps 60000 --medium-step 30000 --part 30000 \
        --root /tmp/arsq_loco2

``--root`` keeps the work: a rerun with the same folder reuses its dataset
(``dataset_info.json``) and every finished variant (``<variant>.json``) without checking that
the settings match, so change ``--root`` when changing sizes. ``--dataset-only`` builds (or
reuses) the dataset and stops, e.g. to check the quality ladder before the online runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, machine, save

RESULTS = ROOT / "benchmarks" / "results"
NAME = "arsq_locomotion_study"
VARIANTS = ("arsq", "factorized", "sac")  # the default set
EXTRA_VARIANTS = ("arsq_no_ln", "factorized_no_ln")


def _train(cfg: dict, out: Path) -> Path:
    from robotrl import experiment

    experiment.train(experiment.parse_config(cfg), out=out)
    return out


def _env(args: argparse.Namespace) -> dict:
    env = {"name": args.task, "backend": "jax"}
    if args.episode_length:
        env["episode_length"] = args.episode_length
    return env


def _part(ds, label: str) -> dict:
    meta = ds.meta
    behaviour = meta.get("behaviour", {})
    return {
        "part": label,
        "transitions": len(ds),
        "episodes": meta.get("behaviour_episodes"),
        "return_mean": meta.get("behaviour_return_mean"),
        "checkpoint_step": behaviour.get("checkpoint_step"),
    }


def mixed_dataset(args: argparse.Namespace, root: Path) -> tuple[Path, dict]:
    """Trains the behaviour SAC, collects random / medium / better parts and mixes them."""
    from robotrl import data

    hidden = list(args.behaviour_hidden)
    behaviour_cfg = {
        "name": f"sac_{args.task}_behaviour",
        "seed": 100,
        "env": _env(args),
        "algo": {"name": "sac", "actor_hidden": hidden, "critic_hidden": hidden},
        "train": {
            "total_steps": args.behaviour_steps,
            "learning_starts": args.learning_starts,
            "log_every": args.medium_step,
            "eval_every": args.medium_step,
            "eval_episodes": args.eval_episodes,
            "checkpoint_every": args.medium_step,
            "keep_checkpoints": 100,
            "save_buffer": False,
        },
    }
    t0 = time.time()
    behaviour = _train(behaviour_cfg, root / "behaviour")
    behaviour_s = time.time() - t0
    common = {"transitions": args.part, "num_envs": args.collect_envs}
    parts = [
        (
            "random",
            data.collect_from(
                args.task,
                seed=1,
                env_overrides=tuple(f"env.{k}={v}" for k, v in _env(args).items() if k != "name"),
                **common,
            ),
        ),
        ("medium", data.collect_from(str(behaviour), step=args.medium_step, seed=2, **common)),
        ("better", data.collect_from(str(behaviour), step=args.behaviour_steps, seed=3, **common)),
    ]
    mixture = data.mix([ds for _, ds in parts], {"study": NAME})
    path = root / "mixed"
    data.save(mixture, path)
    info = {
        "path": str(path),
        "parts": [_part(ds, label) for label, ds in parts],
        "transitions": len(mixture),
        "return_mean": mixture.meta.get("behaviour_return_mean"),
        "behaviour_steps": args.behaviour_steps,
        "behaviour_hidden": hidden,
        "behaviour_train_s": behaviour_s,
        "collect_s": time.time() - t0 - behaviour_s,
    }
    return path, info


def variant_config(args: argparse.Namespace, variant: str, dataset: Path) -> dict:
    hidden = list(args.hidden)
    if variant == "sac":
        algo = {"name": "sac", "actor_hidden": hidden, "critic_hidden": hidden}
    else:
        algo = {"name": "arsq", "critic_hidden": hidden, "alpha": args.alpha}
        if variant.startswith("factorized"):
            algo["factorized"] = True
        if variant.endswith("_no_ln"):
            algo["critic_layer_norm"] = False
    algo["batch_size"] = args.batch_size
    return {
        "name": f"{NAME}_{variant}",
        "seed": 0,
        "env": _env(args),
        "algo": algo,
        "train": {
            "total_steps": args.steps,
            "num_envs": args.num_envs,
            "num_seeds": args.seeds,
            "learning_starts": args.learning_starts,
            "log_every": args.eval_every,
            "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes,
            "checkpoint_every": 0,
            "keep_checkpoints": 1,
            "save_buffer": False,
            "dataset": str(dataset),
            "offline_fraction": args.offline_fraction,
        },
    }


def run_variant(args: argparse.Namespace, variant: str, dataset: Path, root: Path) -> dict:
    from robotrl.runs import read_metrics

    t0 = time.time()
    cfg = variant_config(args, variant, dataset)
    run = _train(cfg, root / variant)
    rows = [r for r in read_metrics(run / "metrics.csv") if "eval/return/seed0" in r]
    rows = [r for r in rows if np.isfinite(r["eval/return/seed0"])]
    return {
        "step": [int(r["step"]) for r in rows],
        "returns": [[float(r[f"eval/return/seed{i}"]) for i in range(args.seeds)] for r in rows],
        "algo": cfg["algo"],
        "wall_s": time.time() - t0,
        "run": str(run),
    }


def mean_ci(values) -> tuple[float, float, float]:
    """Mean over seeds and its 95% Student-t interval."""
    from scipy import stats

    x = np.asarray(values, np.float64)
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - half, m + half


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="halfcheetah", help="a sims/locomotion task (MJX backend)")
    p.add_argument("--steps", type=int, default=300_000, help="online env steps per variant")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--alpha", type=float, default=0.01, help="ARSQ's entropy temperature")
    p.add_argument("--learning-starts", type=int, default=5000)
    p.add_argument("--offline-fraction", type=float, default=0.5)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--episode-length", type=int, default=0, help="0: the task's own (1000)")
    p.add_argument("--behaviour-steps", type=int, default=200_000)
    p.add_argument("--medium-step", type=int, default=50_000)
    p.add_argument("--behaviour-hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--part", type=int, default=100_000, help="transitions per dataset part")
    p.add_argument("--collect-envs", type=int, default=10)
    p.add_argument(
        "--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS + EXTRA_VARIANTS
    )
    p.add_argument("--root", default="", help="work folder (default: a fresh temp folder)")
    p.add_argument(
        "--dataset-only", action="store_true", help="build (or reuse) the dataset and stop"
    )
    args = p.parse_args([] if argv is None else argv)
    if args.behaviour_steps % args.medium_step:
        p.error("--behaviour-steps must be a multiple of --medium-step")
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="arsq-loco-"))
    start = time.time()
    print(f"ARSQ locomotion study ({args.task}) in {root}", flush=True)
    info_path = root / "dataset_info.json"
    if info_path.is_file():  # a rerun reuses the dataset
        dataset_info = json.loads(info_path.read_text())
        dataset = Path(dataset_info["path"])
    else:
        dataset, dataset_info = mixed_dataset(args, root)
        info_path.write_text(json.dumps(dataset_info, indent=2))
    print(f"  dataset: {json.dumps(dataset_info['parts'])}", flush=True)
    if args.dataset_only:
        return {"dataset": dataset_info}
    variants = {}
    for variant in args.variants:
        print(f"  {variant} ({time.time() - start:.0f} s)", flush=True)
        done = root / f"{variant}.json"  # a rerun with the same --root reuses finished variants
        if done.is_file():
            variants[variant] = json.loads(done.read_text())
        else:
            variants[variant] = run_variant(args, variant, dataset, root)
            done.write_text(json.dumps(variants[variant]))
        final = mean_ci(variants[variant]["returns"][-1])
        print(f"    final {final[0]:.1f} [{final[1]:.1f}, {final[2]:.1f}]", flush=True)
    data = {
        "machine": machine(),
        "task": args.task,
        "settings": {k: v for k, v in vars(args).items() if k != "root"},
        "dataset": dataset_info,
        "variants": variants,
        "total_s": time.time() - start,
    }
    save(NAME, data)
    plot(data)
    return data


def plot(data: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, v in data["variants"].items():
        stats = np.array([mean_ci(r) for r in v["returns"]])
        ax.plot(v["step"], stats[:, 0], marker="o", ms=3, label=variant)
        ax.fill_between(v["step"], stats[:, 1], stats[:, 2], alpha=0.2)
    ds = data["dataset"]
    for part, style in zip(ds["parts"], (":", "--", "-."), strict=False):
        if part["return_mean"] is not None:
            ax.axhline(
                part["return_mean"], color="gray", ls=style, lw=1, label=f"data: {part['part']}"
            )
    s = data["settings"]
    ax.set_title(
        f"{data['task']} (MJX), {s['seeds']} seeds, {s['offline_fraction']:.0%} of each batch "
        "from the mixed dataset",
        fontsize=9,
    )
    ax.set_xlabel("online env steps")
    ax.set_ylabel("eval return (mean, 95% CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "arsq_locomotion.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(data: dict) -> str:
    s, ds = data["settings"], data["dataset"]
    # from the stages' own timings, so a rerun that reuses the dataset or variants still
    # reports what producing them took
    variants_s = sum(v["wall_s"] for v in data["variants"].values())
    total_s = ds["behaviour_train_s"] + ds["collect_s"] + variants_s
    parts = ", ".join(
        f"{p['part']} {p['transitions']} transitions (return {p['return_mean']:.1f}"
        + (f", checkpoint {p['checkpoint_step']}" if p["checkpoint_step"] else "")
        + ")"
        for p in ds["parts"]
    )
    lines = [
        "## ARSQ vs factorised ARSQ vs SAC on locomotion with mixed-quality demonstrations",
        "",
        f"{data['task']} on MJX, {s['steps']} online env steps per variant ({s['num_envs']} "
        f"envs), {s['seeds']} seeds vmapped, networks {s['hidden']}, batch {s['batch_size']}, "
        f"{s['offline_fraction']:.0%} of each batch from the dataset. Dataset: {parts}; "
        f"mixture {ds['transitions']} transitions, average return {ds['return_mean']:.1f}. "
        f"Eval: {s['eval_episodes']} deterministic episodes per seed. Wall: behaviour SAC "
        f"{ds['behaviour_train_s'] / 60:.1f} min, collection {ds['collect_s'] / 60:.1f} min, "
        f"variants {variants_s / 60:.1f} min, total {total_s / 60:.1f} min "
        "(plot: `benchmarks/results/arsq_locomotion.png`).",
        "",
        "| variant | seeds | env steps | final eval return (mean [95% CI]) | last 3 evals "
        "(mean over seeds of each seed's average [95% CI]) | best eval (mean) | wall (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, v in data["variants"].items():
        final = mean_ci(v["returns"][-1])
        last = mean_ci(np.asarray(v["returns"][-3:]).mean(axis=0))
        best = max(mean_ci(r)[0] for r in v["returns"])
        lines.append(
            f"| {variant} | {len(v['returns'][-1])} | {v['step'][-1]} | {final[0]:.1f} "
            f"[{final[1]:.1f}, {final[2]:.1f}] | {last[0]:.1f} [{last[1]:.1f}, {last[2]:.1f}] "
            f"| {best:.1f} | {v['wall_s'] / 60:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    result = main(sys.argv[1:])
    if "variants" not in result:
        sys.exit(0)
    print(report(result))
    print(json.dumps({"plot": str(RESULTS / "arsq_locomotion.png")}))
