#!/usr/bin/env python3
"""SBX (JAX Stable-Baselines) SAC: gradient updates per second, steady state.

Runs inside the peer venv (.bench-venv, see setup_peer_env.sh). Prints ONE JSON
line on stdout; everything else goes to stderr. See README.md for the fields.

What is timed (all on gymnasium Pendulum-v1, SAC, twin critics, UTD 1):
  1. fill:   model.learn(learning_starts) with random actions, no update.
  2. first learn step: one more env step -> first policy call + first
     train(gradient_steps=1) call (= JAX compilation of both). Not steady state.
  3. learn loop: a warm-up of --learn-warmup env steps, then --steps env steps
     timed inside model.learn() (each step = 1 env step + 1 gradient update,
     train_freq=1, gradient_steps=1): `learn_steps_per_s`.
  4. pure updates: model.train(gradient_steps=N, batch_size=B) (SBX samples
     N*B transitions at once and runs the N updates in one jitted fori_loop).
     The first call compiles (static N); then --repeats timed calls:
     `updates_per_s` = N / median(call time). `compile_s` = JAX's own compile
     events (trace + lower + XLA compile, via jax.monitoring) during that first
     call; `compile_learn_s` the same for the first learn() step with an update;
     `compile_run_total_s` for the whole run (model construction included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peer_common as pc

PEER = "sbx"
BENCH = "sac_updates"


def parse(argv):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--steps",
        type=int,
        default=2000,
        help="gradient updates per timed train() call, and env steps of the timed learn() "
        "segment (default 2000)",
    )
    p.add_argument(
        "--hidden",
        type=int,
        default=256,
        help="width of both hidden layers of actor and critics (default 256)",
    )
    p.add_argument("--batch", type=int, default=256, help="minibatch size (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed train() calls after the compiling one (default 3)",
    )
    p.add_argument(
        "--learning-starts",
        type=int,
        default=1000,
        help="random transitions collected before updates start (default 1000)",
    )
    p.add_argument(
        "--learn-warmup",
        type=int,
        default=200,
        help="untimed learn() env steps before the timed segment",
    )
    p.add_argument(
        "--skip-learn", action="store_true", help="only measure model.train() throughput"
    )
    p.add_argument(
        "--timeout", type=float, default=175.0, help="hard wall-clock limit in seconds (exit 2)"
    )
    a = p.parse_args(argv)
    if a.steps < 1 or a.hidden < 1 or a.batch < 1 or a.repeats < 1:
        p.error("--steps/--hidden/--batch/--repeats must be >= 1")
    if a.learning_starts < a.batch:
        p.error("--learning-starts must be >= --batch")
    return a


def main(argv):
    t_proc = pc.process_start_time()
    args = parse(argv)
    pc.install_hard_timeout(args.timeout)
    machine = pc.machine_info()  # load average before we add our own load

    import gymnasium as gym
    import jax
    from sbx import SAC

    t_imported = time.time()
    meter = pc.JaxCompileMeter()
    pc.log(f"[sbx] jax {jax.__version__} devices={jax.devices()}")

    t0 = time.time()
    env = gym.make("Pendulum-v1")
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=3e-4,
        buffer_size=max(100_000, args.learning_starts + 2 * args.steps + args.learn_warmup + 10),
        learning_starts=args.learning_starts,
        batch_size=args.batch,
        tau=0.005,
        gamma=0.99,
        train_freq=1,
        gradient_steps=1,
        policy_kwargs=dict(net_arch=[args.hidden, args.hidden], n_critics=2),
        seed=args.seed,
        verbose=0,
    )
    setup_s = time.time() - t0

    # 1. fill the buffer with random actions (no update yet)
    t0 = time.time()
    model.learn(total_timesteps=args.learning_starts)
    fill_s = time.time() - t0

    out = {"peer": PEER, "benchmark": BENCH}
    if not args.skip_learn:
        # 2. first step with an update: compiles the policy and train(1)
        c0 = meter.snapshot()
        t0 = time.time()
        model.learn(total_timesteps=1, reset_num_timesteps=False)
        first_learn_step_s = time.time() - t0
        compile_learn = pc.JaxCompileMeter.diff(meter.snapshot(), c0)
        # 3. steady-state learn loop
        model.learn(total_timesteps=args.learn_warmup, reset_num_timesteps=False)
        n0 = model._n_updates
        t0 = time.time()
        model.learn(total_timesteps=args.steps, reset_num_timesteps=False)
        learn_s = time.time() - t0
        learn_updates = model._n_updates - n0
        out.update(
            learn_steps=args.steps,
            learn_updates=learn_updates,
            learn_s=round(learn_s, 4),
            learn_steps_per_s=round(args.steps / learn_s, 2),
            first_learn_step_s=round(first_learn_step_s, 4),
            compile_learn_s=compile_learn["total"],
        )
        pc.log(
            f"[sbx] learn(): {args.steps} env steps + {learn_updates} updates in {learn_s:.2f} s "
            f"-> {args.steps / learn_s:.1f} steps/s"
        )

    # 4. pure gradient updates through model.train()
    N = args.steps
    c0 = meter.snapshot()
    t0 = time.time()
    model.train(gradient_steps=N, batch_size=args.batch)
    first_train_call_s = time.time() - t0
    compile_train = pc.JaxCompileMeter.diff(meter.snapshot(), c0)
    times = []
    for _ in range(args.repeats):
        t0 = time.time()
        model.train(gradient_steps=N, batch_size=args.batch)
        times.append(time.time() - t0)
    med = statistics.median(times)
    ups = N / med
    pc.log(
        f"[sbx] train(): {N} updates, first call {first_train_call_s:.2f} s, "
        f"steady {[f'{t:.3f}' for t in times]} s -> {ups:.1f} updates/s"
    )

    out.update(
        ok=True,
        algo="SAC",
        env="Pendulum-v1",
        hidden=[args.hidden, args.hidden],
        batch=args.batch,
        n_critics=2,
        utd=1,
        seed=args.seed,
        updates_per_s=round(ups, 2),
        updates_per_s_all=[round(N / t, 2) for t in times],
        train_call_updates=N,
        repeats=args.repeats,
        first_train_call_s=round(first_train_call_s, 4),
        compile_s=compile_train["total"],
        compile_detail=compile_train,
        first_call_minus_steady_s=round(first_train_call_s - med, 4),
        compile_run_total_s=round(meter.total(), 4),
        import_s=round(t_imported - t_proc, 4),
        setup_s=round(setup_s, 4),
        fill_s=round(fill_s, 4),
        learning_starts=args.learning_starts,
        total_wall_s=round(time.time() - t_proc, 3),
        versions=pc.package_versions(
            [
                "sbx-rl",
                "stable_baselines3",
                "jax",
                "jaxlib",
                "flax",
                "optax",
                "gymnasium",
                "numpy",
                "torch",
            ]
        ),
        machine=machine,
    )
    # the key order of the one-line JSON: headline figures first
    head = ["peer", "benchmark", "ok", "updates_per_s", "learn_steps_per_s", "compile_s"]
    return {**{k: out[k] for k in head if k in out}, **out}


if __name__ == "__main__":
    pc.run_main(PEER, BENCH, main)
