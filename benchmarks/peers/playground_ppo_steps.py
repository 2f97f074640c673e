#!/usr/bin/env python
"""Brax PPO training throughput (env steps/s) on MuJoCo Playground's CartpoleBalance, CPU:
a fixed number of PPO training steps with Playground's tuned config and NO evaluation.
One JSON line on stdout (see benchmarks/peers/README.md).

  .bench-venv-playground/bin/python benchmarks/peers/playground_ppo_steps.py --num-envs 256

A training step = `batch_size * num_minibatches // num_envs` unrolls of 30 steps of every
env, then 16 passes (num_updates_per_batch) of `num_minibatches` Adam steps, each on
batch_size * 30 = 30,720 transitions. With the tuned 32 minibatches a training step is
983,040 env steps (~2 min here); the default here is `--num-minibatches 4` (122,880 env
steps per training step): the work PER ENV STEP is the same (every transition is used in
16 minibatch gradients of the same size, the same env and networks), only the program
scans fewer minibatches/unrolls per call. `--num-minibatches 32` measures the exact tuned
program. The first two training steps include XLA compilation (brax 0.14.2 on jax 0.9.2
compiles the pmapped epoch again at its 2nd call; reported separately);
`steps_per_s_steady` is over the following ones.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _peer_common as pc  # noqa: E402

BENCHMARK = "ppo_train_steps"
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
        "--num-minibatches",
        type=int,
        default=4,
        help="tuned config: 32 (same work per env step; see the docstring)",
    )
    ap.add_argument("--batch-size", type=int, default=None, help="override the tuned config (1024)")
    ap.add_argument(
        "--train-steps",
        type=int,
        default=4,
        help="PPO training steps; the first two compile (brax on jax 0.9.2), the rest are timed",
    )
    ap.add_argument(
        "--time-limit",
        type=float,
        default=420.0,
        help="s since ppo.train(); stops before a training step that would pass it",
    )
    ap.add_argument("--timeout", type=float, default=540.0, help="hard timeout of the process (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--impl", default="jax", choices=["jax", "warp"])
    ap.add_argument("--platform", default="cpu", help="JAX_PLATFORMS ('default': leave unset)")
    args = ap.parse_args(argv)
    if args.train_steps < 1:
        ap.error("--train-steps must be >= 1")
    return args


def main(argv) -> dict:
    args = parse(argv)
    import playground_ppo_common as ppc

    return ppc.run_from_args(args, BENCHMARK, run_evals=False, proc_start=PROC_START)


if __name__ == "__main__":
    pc.run_main("playground", BENCHMARK, main)
