"""Scaling: PPO env steps per second on 1 and 2 devices (data parallel, ``train.data_parallel``)
and with 1 and 8 vmapped seeds, on the quadrotor (pure JAX) and MJX HalfCheetah.

Each measurement is a fresh process (``--worker``): the device count is fixed when JAX starts,
so the 2-device runs get ``--xla_force_host_platform_device_count=2`` (on this CPU, the two cores
become two devices). The first chunk (compilation) is not timed; then a fixed number are.
Steps per second count every seed's env steps. Measurements alternate (1 device, 2 devices, ...)
and the report gives medians over ``repeats``.

``python -m benchmarks.scaling [--repeats N]``
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from benchmarks.common import OUT, machine, ours, run_json, save

TASKS = {
    # Smaller batches than the training presets, so a measurement takes seconds on a CPU.
    "quadrotor": (
        "configs/ppo_quadrotor.yaml",
        [
            "train.num_envs=256",
            "algo.rollout_length=16",
            "algo.minibatch_size=1024",
            "algo.epochs=2",
            "train.log_every=8192",
        ],
        30,  # timed chunks
    ),
    "mjx_halfcheetah": (
        "configs/ppo_halfcheetah.yaml",
        [
            "env.backend=jax",
            "train.num_envs=32",
            "algo.rollout_length=16",
            "algo.minibatch_size=256",
            "algo.epochs=2",
            "train.log_every=1024",
        ],
        10,
    ),
}
# (name, devices, data_parallel, seeds)
LAYOUTS = (
    ("1 device", 1, 1, 1),
    ("2 devices (data parallel)", 2, 2, 1),
    ("8 seeds, 1 device", 1, 1, 8),
)


def worker(task: str, data_parallel: int, seeds: int, chunks: int) -> dict:
    from robotrl import experiment
    from robotrl.cache import enable_compilation_cache

    enable_compilation_cache()
    config, sets, _ = TASKS[task]
    cfg = experiment.load_config(
        config,
        [
            *sets,
            f"train.data_parallel={data_parallel}",
            f"train.num_seeds={seeds}",
            "train.eval_episodes=1",
        ],
    )
    session = experiment.Experiment(cfg).session()
    session.run_chunk()  # compiles
    start, t0 = session.env_steps(), time.perf_counter()
    for _ in range(chunks):
        session.run_chunk()
    elapsed = time.perf_counter() - t0
    steps = (session.env_steps() - start) * seeds
    import jax

    return {"ok": True, "sps": steps / elapsed, "devices": len(jax.devices()), "steps": steps}


def measure(task: str, devices: int, data_parallel: int, seeds: int, chunks: int) -> dict:
    env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    args = ["--worker", task, str(data_parallel), str(seeds), str(chunks)]
    return run_json(ours("scaling", *args), env=env, timeout=900)


def main(repeats: int = 3) -> dict:
    results = []
    for task in TASKS:
        runs: dict[str, list[float]] = {name: [] for name, *_ in LAYOUTS}
        for r in range(repeats):
            for name, devices, dp, seeds in LAYOUTS:
                sps = measure(task, devices, dp, seeds, TASKS[task][2])["sps"]
                runs[name].append(sps)
                print(f"  {task} / {name} / repeat {r + 1}: {sps:,.0f} env steps/s")
        median = {name: statistics.median(v) for name, v in runs.items()}
        base = median["1 device"]
        results.append(
            {
                "task": task,
                "sps": median,
                "all": runs,
                "ratio_2_devices": median["2 devices (data parallel)"] / base,
                "ratio_8_seeds": median["8 seeds, 1 device"] / base,
            }
        )
    data = {"machine": machine(), "repeats": repeats, "results": results}
    save("scaling", data)
    return data


def report(data: dict) -> str:
    lines = [
        "## scaling",
        "",
        "PPO env steps/s (all seeds' steps), medians of "
        f"{data['repeats']} fresh processes; 2 devices = the CPU's cores as forced host devices.",
        "",
        "| task | 1 device | 2 devices (data parallel) | ratio | 8 seeds vmapped | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        sps = r["sps"]
        lines.append(
            f"| {r['task']} | {sps['1 device']:,.0f} | {sps['2 devices (data parallel)']:,.0f} "
            f"| {r['ratio_2_devices']:.2f}x | {sps['8 seeds, 1 device']:,.0f} "
            f"| {r['ratio_8_seeds']:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        task, dp, seeds, chunks = sys.argv[2], *map(int, sys.argv[3:6])
        print(json.dumps(worker(task, dp, seeds, chunks)))
    else:
        repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
        print(report(main(repeats)))
        print(f"saved to {OUT / 'scaling.json'}")
