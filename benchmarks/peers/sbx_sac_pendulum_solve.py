#!/usr/bin/env python3
"""SBX (JAX Stable-Baselines) SAC: time to solve Pendulum-v1 (mean eval return > -200).

Runs inside the peer venv (.bench-venv, see setup_peer_env.sh). Prints ONE JSON
line on stdout; everything else goes to stderr. See README.md for the fields.

Hyperparameters: RL Zoo's tuned SAC entry for Pendulum-v1 (hyperparams/sac.yml:
policy MlpPolicy, learning_rate 1e-3, n_timesteps 20000, everything else the
library defaults), i.e. with SBX 0.28 defaults:
  net_arch [256, 256] (actor and each of 2 critics), ReLU, batch 256,
  buffer 1e6, learning_starts 100, train_freq 1, gradient_steps 1 (UTD 1),
  tau 0.005, gamma 0.99, ent_coef "auto" (init 1.0), target_entropy -1,
  Adam lr 1e-3 for actor, critics and entropy coefficient.

Evaluation: every --eval-every env steps (counted from the start, random warm-up
steps included), --eval-episodes deterministic episodes (mean action) on
separate gymnasium Pendulum-v1 envs with fixed seeds 10000..10009 (the same
start states at every evaluation, and the same as the RLtools script uses).
JAX compile time (jax.monitoring events) is reported separately as
`compile_s` (during training and evaluation, included in time_to_solve_s) and
`compile_setup_s` (model construction, included in setup_s).
Training stops at the first evaluation whose mean return is > --threshold, or
at --max-steps env steps, or when --time-limit seconds of training have passed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peer_common as pc

PEER = "sbx"
BENCH = "sac_pendulum_solve"


def parse(argv):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=30_000, help="env-step cap (default 30000)")
    p.add_argument(
        "--eval-every", type=int, default=1000, help="env steps between evaluations (default 1000)"
    )
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument(
        "--threshold", type=float, default=-200.0, help="solved when mean eval return > this"
    )
    p.add_argument(
        "--hidden",
        type=int,
        default=256,
        help="hidden width, actor and critics (RL Zoo/SBX default 256)",
    )
    p.add_argument("--batch", type=int, default=256, help="minibatch size (RL Zoo/SBX default 256)")
    p.add_argument(
        "--lr", type=float, default=1e-3, help="Adam learning rate (RL Zoo Pendulum: 1e-3)"
    )
    p.add_argument("--learning-starts", type=int, default=100)
    p.add_argument(
        "--time-limit",
        type=float,
        default=150.0,
        help="stop training (not solved) after this many seconds of training (default 150)",
    )
    p.add_argument(
        "--timeout", type=float, default=178.0, help="hard wall-clock limit in seconds (exit 2)"
    )
    a = p.parse_args(argv)
    if a.eval_every < 1 or a.max_steps < 1 or a.eval_episodes < 1:
        p.error("--eval-every, --max-steps and --eval-episodes must be >= 1")
    return a


def main(argv):
    t_proc = pc.process_start_time()
    args = parse(argv)
    pc.install_hard_timeout(args.timeout)
    machine = pc.machine_info()

    import gymnasium as gym
    import jax
    from sbx import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    t_imported = time.time()
    meter = pc.JaxCompileMeter()
    pc.log(f"[sbx] jax {jax.__version__} devices={jax.devices()}")

    t0 = time.time()
    env = gym.make("Pendulum-v1")
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=args.lr,
        buffer_size=1_000_000,
        learning_starts=args.learning_starts,
        batch_size=args.batch,
        tau=0.005,
        gamma=0.99,
        train_freq=1,
        gradient_steps=1,
        ent_coef="auto",
        policy_kwargs=dict(net_arch=[args.hidden, args.hidden], n_critics=2),
        seed=args.seed,
        verbose=0,
    )
    evaluator = pc.BatchedPendulumEval(args.eval_episodes, base_seed=10_000)
    setup_s = time.time() - t0

    def policy_batch(obs):
        actions, _ = model.predict(obs, deterministic=True)
        return actions

    st = {
        "evals": [],
        "eval_s": 0.0,
        "solved": False,
        "stop_reason": "max_steps",
        "solve_steps": None,
        "solve_time": None,
        "t_train0": None,
    }

    class EvalStop(BaseCallback):
        def _on_step(self) -> bool:
            n = self.num_timesteps
            if n % args.eval_every != 0:
                return True
            te = time.time()
            mean_ret, _rets = evaluator.evaluate(policy_batch)
            t_done = time.time()
            st["eval_s"] += t_done - te
            elapsed = t_done - st["t_train0"]
            st["evals"].append([n, round(mean_ret, 2), round(elapsed, 3)])
            pc.log(f"[sbx] step {n:6d}  eval {mean_ret:9.2f}  t={elapsed:7.2f} s")
            if mean_ret > args.threshold:
                st.update(solved=True, stop_reason="solved", solve_steps=n, solve_time=t_done)
                return False
            if elapsed > args.time_limit:
                st["stop_reason"] = "time_limit"
                return False
            return True

    c_setup = meter.snapshot()
    st["t_train0"] = t_train0 = time.time()
    model.learn(total_timesteps=args.max_steps, callback=EvalStop())
    t_end = st["solve_time"] or time.time()

    train_wall = t_end - t_train0
    c_train = pc.JaxCompileMeter.diff(meter.snapshot(), c_setup)
    steps = st["solve_steps"] if st["solved"] else int(model.num_timesteps)
    out = {
        "peer": PEER,
        "benchmark": BENCH,
        "ok": True,
        "solved": st["solved"],
        "time_to_solve_s": round(train_wall, 3) if st["solved"] else None,
        "env_steps": steps,
        "train_wall_s": round(train_wall, 3),
        "train_excl_eval_s": round(train_wall - st["eval_s"], 3),
        "eval_s": round(st["eval_s"], 3),
        "compile_s": c_train["total"],
        "compile_setup_s": round(c_setup["total"], 4),
        "final_eval_return": st["evals"][-1][1] if st["evals"] else None,
        "stop_reason": st["stop_reason"],
        "import_s": round(t_imported - t_proc, 3),
        "setup_s": round(setup_s, 3),
        "total_wall_s": round(t_end - t_proc, 3),
        "max_steps": args.max_steps,
        "threshold": args.threshold,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
        "evals": st["evals"],
        "algo": "SAC",
        "env": "Pendulum-v1",
        "seed": args.seed,
        "hyperparams": {
            "source": "RL Zoo hyperparams/sac.yml Pendulum-v1 (learning_rate 1e-3) + SBX defaults",
            "net_arch": [args.hidden, args.hidden],
            "n_critics": 2,
            "activation": "relu",
            "batch_size": args.batch,
            "learning_rate": args.lr,
            "buffer_size": 1_000_000,
            "learning_starts": args.learning_starts,
            "train_freq": 1,
            "gradient_steps": 1,
            "tau": 0.005,
            "gamma": 0.99,
            "ent_coef": "auto(init 1.0)",
            "target_entropy": -1.0,
        },
        "versions": pc.package_versions(
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
        "machine": machine,
    }
    pc.log(
        f"[sbx] solved={st['solved']} steps={steps} train_wall={train_wall:.2f} s "
        f"(eval {st['eval_s']:.2f} s) total from process start {out['total_wall_s']:.2f} s"
    )
    return out


if __name__ == "__main__":
    pc.run_main(PEER, BENCH, main)
