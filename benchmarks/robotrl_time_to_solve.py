"""robotrl's side of the time-to-solve benchmarks; prints one JSON line.

Trains a preset (default ``configs/sac_pendulum.yaml``: SAC, 64x64, batch 128, on the JAX
pendulum, gymnasium Pendulum-v1's dynamics tested step for step; ``benchmarks/ppo_vs_playground``
passes ``configs/ppo_cartpole_balance.yaml``) with ``--seeds`` seeds vmapped in one program
(JAX envs), evaluates every ``--eval-every`` env steps (``--eval-episodes`` deterministic
episodes per seed) and records when each seed first has a mean eval return above
``--threshold``. Stops when every
seed has solved or at ``--max-steps``. Times include JAX compilation; ``total_wall_s`` counts
from process start (imports included), as a user waits for it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

T0 = time.time()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default="configs/sac_pendulum.yaml")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=-200.0)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--max-steps", type=int, default=30_000)
    p.add_argument(
        "--fixed-steps",
        action="store_true",
        help="train exactly --max-steps (for 1-vs-N-seed timing), no early stop",
    )
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--benchmark", default="pendulum_solve", help="name in the JSON line")
    p.add_argument(
        "--success-threshold",
        type=float,
        default=None,
        help="judge by the env's success rate per seed (>= this) instead of the return",
    )
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()

    import numpy as np

    from robotrl.cache import enable_compilation_cache, use_cpu_cores_as_devices
    from robotrl.experiment import Experiment, load_config

    use_cpu_cores_as_devices()
    enable_compilation_cache()
    import_s = time.time() - T0
    cfg = load_config(
        args.config,
        [
            f"seed={args.seed}",
            f"train.num_seeds={args.seeds}",
            f"train.log_every={args.eval_every}",
            f"train.eval_episodes={args.eval_episodes}",
            f"train.total_steps={args.max_steps}",
            *args.set,
        ],
    )
    t_start = time.time()
    session = Experiment(cfg).session()
    solved_at: list[float | None] = [None] * args.seeds
    solved_step: list[int | None] = [None] * args.seeds
    evals = []
    while session.env_steps() < args.max_steps:
        session.run_chunk()
        result = session.evaluate()
        if args.success_threshold is None:
            returns = result.returns.mean(axis=1)  # [S]
            threshold = args.threshold
        else:
            returns = np.asarray(result.success, np.float64).mean(axis=1)  # [S] success rates
            threshold = args.success_threshold - 1e-9
        now = time.time() - t_start
        step = session.env_steps()
        evals.append([step, returns.tolist(), now])
        for i, r in enumerate(returns):
            if solved_at[i] is None and r > threshold:
                solved_at[i], solved_step[i] = now, step
        if not args.fixed_steps and all(s is not None for s in solved_at):
            break
    wall = time.time() - t_start
    n_solved = sum(s is not None for s in solved_at)
    print(
        json.dumps(
            {
                "peer": "robotrl",
                "benchmark": args.benchmark,
                "ok": True,
                "seeds": args.seeds,
                "solved": n_solved,
                "all_solved": n_solved == args.seeds,
                "time_to_solve_s": max(solved_at) if n_solved == args.seeds else None,
                "solve_times_s": solved_at,
                "solve_steps": solved_step,
                "train_wall_s": wall,
                "total_wall_s": time.time() - T0,
                "import_s": import_s,
                "env_steps": session.env_steps(),
                "seeds_solved_per_min": 60.0 * n_solved / (time.time() - T0),
                "final_returns": np.asarray(evals[-1][1]).tolist(),
                "evals": evals,
                "config": args.config,
                "load": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
