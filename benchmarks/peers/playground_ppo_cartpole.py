#!/usr/bin/env python
"""MuJoCo Playground CartpoleBalance trained with Brax PPO (Playground's tuned config) on
the CPU: wall time to the first evaluation with mean episode reward >= --threshold, env
steps per second (steady state, first epoch with compile, total), compile time, final
evaluation reward. One JSON line on stdout (see benchmarks/peers/README.md).

Run with the venv made by setup_playground_env.sh:
  .bench-venv-playground/bin/python benchmarks/peers/playground_ppo_cartpole.py --num-envs 256

Config: `mujoco_playground.config.dm_control_suite_params.brax_ppo_config("CartpoleBalance")`
(num_envs 2048, batch 1024, 32 minibatches, unroll 30, 16 updates per batch, lr 1e-3,
entropy 1e-2, discount 0.995, reward scaling 10, observation normalisation, episode 1000),
with brax's default networks, exactly as Playground's learning/train_jax_ppo.py passes it;
changes (all logged, and listed in the JSON's `config_changes`): env `impl="jax"` (the
default "warp" needs an NVIDIA GPU), `num_timesteps` / `num_envs` from the command line,
and the evaluation schedule (an evaluation after every training step: see
playground_ppo_common.py; training itself is unchanged).

Bounded time: after each evaluation the script predicts the end of the next training step
(+ its evaluation) from the last one and stops (progress_fn raises) if that would pass
--time-limit (seconds since ppo.train() was called; `stop_reason: "time_limit"`); it also
stops at the first evaluation >= --threshold unless --no-stop-at-threshold. A watchdog
thread ends the process after --timeout s (exit 2, JSON with ok false + partial figures).
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _peer_common as pc  # noqa: E402

BENCHMARK = "ppo_cartpole_balance"
PROC_START = pc.process_start_time()


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="CartpoleBalance")
    ap.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="default: the tuned config's (2048 for CartpoleBalance)",
    )
    ap.add_argument(
        "--num-timesteps",
        type=int,
        default=None,
        help="default: the tuned config's (60M); the time limit ends it earlier",
    )
    ap.add_argument(
        "--threshold",
        type=float,
        default=900.0,
        help="mean eval episode reward (per-step rewards in [0,1], 1000 steps)",
    )
    ap.add_argument(
        "--no-stop-at-threshold",
        action="store_true",
        help="keep training after the threshold (until num_timesteps/time limit)",
    )
    ap.add_argument(
        "--time-limit",
        type=float,
        default=420.0,
        help="s since ppo.train() was called; checked (predictively) after each eval",
    )
    ap.add_argument("--timeout", type=float, default=600.0, help="hard timeout of the process (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--impl",
        default="jax",
        choices=["jax", "warp"],
        help="MJX implementation (warp needs an NVIDIA GPU)",
    )
    ap.add_argument("--platform", default="cpu", help="JAX_PLATFORMS ('default': leave unset)")
    ap.add_argument(
        "--num-eval-envs",
        type=int,
        default=128,
        help="Playground's train_jax_ppo.py default: 128 (each runs 1 episode)",
    )
    ap.add_argument(
        "--deterministic-eval",
        action="store_true",
        help="deterministic policy in evals (Playground's default: stochastic)",
    )
    ap.add_argument(
        "--num-minibatches",
        type=int,
        default=None,
        help="override the tuned config (32): same work per env step, but more "
        "frequent policy updates (changes the learning dynamics)",
    )
    ap.add_argument("--batch-size", type=int, default=None, help="override the tuned config")
    return ap.parse_args(argv)


def main(argv) -> dict:
    args = parse(argv)
    import playground_ppo_common as ppc

    return ppc.run_from_args(args, BENCHMARK, run_evals=True, proc_start=PROC_START)


if __name__ == "__main__":
    pc.run_main("playground", BENCHMARK, main)
