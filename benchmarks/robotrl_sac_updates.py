"""robotrl's side of the SAC update-rate benchmark; prints one JSON line.

Two rates, matching the peer script's two:
  updates_per_s      gradient updates only: a jitted lax.scan of N SAC updates (sample from a
                     filled device buffer + update), like SBX's ``model.train(gradient_steps=N)``.
  loop_steps_per_s   the training loop users run: env step + buffer insert + one update per step,
                     on the JAX pendulum through the scan loop (like SBX's ``learn()``).
Networks [h, h] ReLU for actor and twin critics, batch b, UTD 1, lr 3e-4, tau 0.005.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

T0 = time.time()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=1000, help="updates per timed call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import jax
    import numpy as np

    from robotrl.algos import sac
    from robotrl.buffers import replay
    from robotrl.envs import make_eval_env, make_training_env
    from robotrl.train import ScanSession, TrainConfig
    from robotrl.train.scan_loop import select_seed
    from sims.pendulum import Pendulum

    import_s = time.time() - T0
    env = Pendulum()
    h, b = args.hidden, args.batch
    cfg = sac.SACConfig(actor_hidden=(h, h), critic_hidden=(h, h), batch_size=b)
    algo = sac.make(cfg, env.spec)

    # 1. Updates only, from a buffer of 10k random pendulum transitions.
    train = TrainConfig(
        total_steps=10_000,
        learning_starts=10**9,
        buffer_size=10_000,
        log_every=10_000,
        eval_episodes=1,
    )
    fill = ScanSession(make_training_env(env, 1), make_eval_env(env, 1), algo, train, args.seed)
    fill.run_chunk()
    buffer = select_seed(fill.state, 0).buffer

    def many(state, key):
        def body(state, k):
            k_sample, k_update = jax.random.split(k)
            return algo.update(state, replay.sample(buffer, k_sample, b), k_update)

        return jax.lax.scan(body, state, jax.random.split(key, args.steps))

    run = jax.jit(many, donate_argnums=0)
    state = algo.init(jax.random.PRNGKey(args.seed))
    t = time.perf_counter()
    state, m = run(state, jax.random.PRNGKey(1))
    jax.block_until_ready(m)
    first_call_s = time.perf_counter() - t
    rates = []
    for i in range(args.repeats):
        t = time.perf_counter()
        state, m = run(state, jax.random.PRNGKey(2 + i))
        jax.block_until_ready(m)
        rates.append(args.steps / (time.perf_counter() - t))
    finite = bool(np.isfinite(np.asarray(m["critic_loss"])).all())

    # 2. The training loop: env + insert + update, one update per env step.
    loop_cfg = TrainConfig(
        total_steps=10**6,
        learning_starts=0,
        buffer_size=100_000,
        log_every=args.steps,
        eval_episodes=1,
    )
    session = ScanSession(
        make_training_env(env, 1), make_eval_env(env, 1), algo, loop_cfg, args.seed
    )
    t = time.perf_counter()
    session.run_chunk()
    loop_first_s = time.perf_counter() - t
    loop_rates = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        session.run_chunk()
        loop_rates.append(args.steps / (time.perf_counter() - t))

    print(
        json.dumps(
            {
                "peer": "robotrl",
                "benchmark": "sac_updates",
                "ok": finite,
                "hidden": h,
                "batch": b,
                "updates_per_s": statistics.median(rates),
                "updates_per_s_all": rates,
                "loop_steps_per_s": statistics.median(loop_rates),
                "loop_steps_per_s_all": loop_rates,
                "first_call_s": first_call_s,
                "loop_first_call_s": loop_first_s,
                "import_s": import_s,
                "total_wall_s": time.time() - T0,
                "load": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
