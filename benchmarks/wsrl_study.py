"""WSRL's signature on a generated dataset: fine-tuning without retaining offline data.

Per task, all from the project's own policies (nothing downloaded):
  1. behaviour: the task's SAC preset trained briefly; its checkpoint at ``medium_step``
     collects a medium dataset (stochastic policy);
  2. pretrain: Cal-QL on that dataset (one run, seed 0);
  3. fine-tune for the same online budget, ``SEEDS`` seeds vmapped per variant:
       wsrl       from the Cal-QL run, the pretrained policy fills a fresh buffer for
                  ``warmup`` steps with no gradient step, then online SAC; no offline data
       no_warmup  from the Cal-QL run, gradient steps from the first online step
       retain     from the Cal-QL run, no warmup, every batch half offline data (RLPD-style)
       scratch    online SAC from random weights (uniform random actions for ``warmup``)
Every ``eval_every`` online steps: the eval return of every seed, and the critics' Q and TD
error on a fixed batch of the offline data (from the checkpoints), so the early dip of
``no_warmup`` and the collapse of Q on offline data are visible.

Results: ``benchmarks/out/wsrl_study.json``, plot ``benchmarks/results/wsrl_study.png`` (IQM
over seeds with 95% bootstrap intervals). Run: ``python -m benchmarks.wsrl_study``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import OUT, ROOT, iqm_ci, machine, save

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = 5
TASKS = {
    # behaviour preset, checkpoint of the medium policy, transitions, overrides of the fine-tune
    "pendulum": {
        "preset": "configs/sac_pendulum.yaml",
        "medium_step": 3000,
        "transitions": 50_000,
        "pretrain_steps": 20_000,
        "online_steps": 10_000,
        "warmup": 1000,
        "eval_every": 1000,
        "algo": {"actor_hidden": [64, 64], "critic_hidden": [64, 64], "batch_size": 256},
        "num_envs": 1,
    },
    # Learning to Fly's SAC (the preset's networks, asymmetric critic, action history); the
    # medium policy is the preset's checkpoint at 400k steps.
    "quadrotor": {
        "preset": "configs/sac_quadrotor.yaml",
        "medium_step": 400_000,
        "transitions": 200_000,
        "pretrain_steps": 20_000,
        "online_steps": 200_000,
        "warmup": 5_000,
        "eval_every": 25_000,
        "algo": {
            "actor_hidden": [32, 32],
            "critic_hidden": [32, 32],
            "activation": "tanh",
            "batch_size": 256,
            "target_entropy": -4.0,
            "privileged_critic": True,
        },
        "num_envs": 5,
    },
}
VARIANTS = ("wsrl", "no_warmup", "retain", "scratch")


def _train(cfg: dict, out: Path) -> Path:
    from robotrl import experiment

    experiment.train(experiment.parse_config(cfg), out=out)
    return out


def _env(spec: dict) -> dict:
    from robotrl.config import load_yaml

    return load_yaml(ROOT / spec["preset"])["env"]


def _variant_config(task: str, spec: dict, variant: str, pretrained: Path, dataset: Path) -> dict:
    train = {
        "num_envs": spec["num_envs"],
        "total_steps": spec["online_steps"],
        "log_every": spec["eval_every"] // 2,
        "eval_every": spec["eval_every"],
        "eval_episodes": 20,
        "checkpoint_every": spec["eval_every"],
        "keep_checkpoints": 1000,
        "save_buffer": False,
        "num_seeds": SEEDS,
        "learning_starts": spec["warmup"],
    }
    if variant != "scratch":
        train["init_from"] = str(pretrained)
    if variant == "wsrl":
        train["random_warmup"] = False
    if variant in ("no_warmup", "retain"):
        train["learning_starts"] = 0
    if variant == "retain":
        train.update(dataset=str(dataset), offline_fraction=0.5)
    return {
        "name": f"wsrl_{task}_{variant}",
        "env": _env(spec),
        "algo": {"name": "sac", **spec["algo"]},
        "train": train,
    }


def offline_q(run: Path, dataset: Path, rows: int = 1024) -> dict[str, list]:
    """Per checkpoint: every seed's mean min-critic Q and mean TD error on a fixed batch of
    the offline data (TD target with the deterministic policy's next action)."""
    import jax
    import jax.numpy as jnp

    from robotrl import data, experiment
    from robotrl.algos.sac import critic_values, make_nets
    from robotrl.runs import CheckpointStore, RunDir
    from robotrl.types import actor_obs, critic_obs

    run_dir = RunDir.open(run)
    exp = experiment.Experiment(experiment.parse_config(run_dir.config()))
    session = exp.session()
    cfg, spec = exp.cfg.algo, exp.spec
    nets = make_nets(cfg, spec)
    ds = data.load(dataset, spec)
    pick = np.random.default_rng(0).choice(len(ds), rows, replace=False)
    batch = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[pick]), ds.transitions)
    obs = critic_obs(batch.obs, cfg.privileged_critic)
    next_obs = critic_obs(batch.next_obs, cfg.privileged_critic)

    @jax.jit
    @jax.vmap
    def measure(algo_state):
        q = critic_values(nets, algo_state.critic_params, obs, nets.scaler.from_env(batch.action))
        mean, _ = nets.actor.apply(algo_state.actor_params, actor_obs(batch.next_obs))
        next_q = critic_values(nets, algo_state.critic_params, next_obs, jnp.tanh(mean))
        target = batch.reward + cfg.gamma * (1 - batch.terminated) * next_q.min(axis=0)
        return q.min(axis=0).mean(), jnp.abs(q.min(axis=0) - target).mean()

    store = CheckpointStore(run_dir.checkpoints, read_only=True)
    out: dict[str, list] = {"step": [], "q": [], "td_error": []}
    try:
        for step in store.steps():
            tree, _ = store.restore(session.abstract_state(), step)
            q, td = jax.device_get(measure(tree.algo))
            out["step"].append(int(step))
            out["q"].append(np.asarray(q).tolist())
            out["td_error"].append(np.asarray(td).tolist())
    finally:
        store.close()
    return out


def medium_dataset(task: str, root: Path) -> tuple[Path, float]:
    """Trains the task's SAC preset, collects the medium dataset from its ``medium_step``
    checkpoint into ``root / "medium"``; returns the folder and the behaviour return."""
    from robotrl.config import load_yaml
    from robotrl.data import collect_from
    from robotrl.data import save as save_dataset

    spec = TASKS[task]
    behaviour_cfg = load_yaml(ROOT / spec["preset"])
    behaviour_cfg["train"] = {
        **behaviour_cfg.get("train", {}),
        "checkpoint_every": spec["medium_step"],
        "keep_checkpoints": 100,
    }
    behaviour = _train(behaviour_cfg, root / "behaviour")
    dataset = root / "medium"
    ds = collect_from(
        str(behaviour),
        transitions=spec["transitions"],
        step=spec["medium_step"],
        num_envs=10,
        seed=1,
    )
    save_dataset(ds, dataset)
    return dataset, ds.meta["behaviour_return_mean"]


def run_task(task: str, root: Path) -> dict:
    from robotrl.runs import read_metrics

    spec = TASKS[task]
    dataset, behaviour_return = medium_dataset(task, root)
    pretrain_cfg = {
        "name": f"calql_{task}",
        "env": _env(spec),
        "algo": {"name": "cql", "calql": True, **spec["algo"]},
        "train": {
            "dataset": str(dataset),
            "total_steps": spec["pretrain_steps"],
            "log_every": 1000,
            "eval_every": spec["pretrain_steps"],
            "eval_episodes": 20,
            "checkpoint_every": spec["pretrain_steps"],
        },
    }
    pretrained = _train(pretrain_cfg, root / "calql")
    pretrained_return = read_metrics(pretrained / "metrics.csv")[-1]["eval/return_mean"]
    variants = {}
    for variant in VARIANTS:
        print(f"  {task}: {variant}", flush=True)
        run = _train(_variant_config(task, spec, variant, pretrained, dataset), root / variant)
        rows = [r for r in read_metrics(run / "metrics.csv") if "eval/return/seed0" in r]
        rows = [r for r in rows if np.isfinite(r["eval/return/seed0"])]
        variants[variant] = {
            "step": [int(r["step"]) for r in rows],
            "returns": [[r[f"eval/return/seed{i}"] for i in range(SEEDS)] for r in rows],
            "offline": offline_q(run, dataset),
            "run": str(run),
        }
    return {
        "behaviour_return": behaviour_return,
        "pretrained_return": pretrained_return,
        "dataset": str(dataset),
        "variants": variants,
        **{k: v for k, v in spec.items() if k != "algo"},
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="*", default=list(TASKS))
    args = p.parse_args([] if argv is None else argv)
    results = {}
    for task in args.tasks:
        print(f"WSRL study: {task}", flush=True)
        results[task] = run_task(task, Path(tempfile.mkdtemp(prefix=f"wsrl-{task}-")))
    saved = OUT / "wsrl_study.json"
    if saved.is_file():  # tasks not run now keep their saved results
        old = json.loads(saved.read_text())["results"]
        results = {**{k: v for k, v in old.items() if k not in results}, **results}
    data = {"machine": machine(), "seeds": SEEDS, "results": results}
    save("wsrl_study", data)
    plot(data)
    return data


def plot(data: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(data["results"])
    fig, axes = plt.subplots(2, len(tasks), figsize=(6 * len(tasks), 6.5), squeeze=False)
    for col, task in enumerate(tasks):
        res = data["results"][task]
        ret_ax, q_ax = axes[0, col], axes[1, col]
        for variant, v in res["variants"].items():
            stats = np.array([iqm_ci(np.asarray(r)) for r in v["returns"]])
            ret_ax.plot(v["step"], stats[:, 0], label=variant)
            ret_ax.fill_between(v["step"], stats[:, 1], stats[:, 2], alpha=0.2)
            q = np.asarray(v["offline"]["q"])
            q_ax.plot(v["offline"]["step"], np.median(q, axis=1), label=variant)
        ret_ax.axhline(res["pretrained_return"], color="k", ls="--", lw=1, label="pretrained")
        ret_ax.axhline(res["behaviour_return"], color="gray", ls=":", lw=1, label="behaviour")
        ret_ax.set_title(f"{task}: eval return (IQM, 95% bootstrap CI, {data['seeds']} seeds)")
        ret_ax.set_xlabel("online env steps")
        ret_ax.legend(fontsize=8)
        q_ax.set_title(f"{task}: Q on offline data (median over seeds)")
        q_ax.set_xlabel("online env steps")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "wsrl_study.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(data: dict) -> str:
    lines = [
        "## WSRL: fine-tuning without retaining offline data",
        "",
        f"{data['seeds']} seeds per variant, IQM of the eval return over seeds (plot: "
        "`benchmarks/results/wsrl_study.png`).",
        "",
        "| task | variant | first eval (IQM) | lowest eval (IQM) | final eval (IQM [95% CI]) | "
        "Q on offline data: start -> lowest |",
        "|---|---|---|---|---|---|",
    ]
    for task, res in data["results"].items():
        lines.append(
            f"| {task} | behaviour {res['behaviour_return']:.1f}, pretrained (Cal-QL) "
            f"{res['pretrained_return']:.1f} | | | | |"
        )
        for variant, v in res["variants"].items():
            iqms = [iqm_ci(np.asarray(r))[0] for r in v["returns"]]
            final = iqm_ci(np.asarray(v["returns"][-1]))
            q = np.median(np.asarray(v["offline"]["q"]), axis=1)
            lines.append(
                f"| {task} | {variant} | {iqms[0]:.1f} | {min(iqms):.1f} | {final[0]:.1f} "
                f"[{final[1]:.1f}, {final[2]:.1f}] | {q[0]:.1f} -> {q.min():.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    result = main(sys.argv[1:])
    print(report(result))
    print(json.dumps({"plot": str(RESULTS / "wsrl_study.png")}))
