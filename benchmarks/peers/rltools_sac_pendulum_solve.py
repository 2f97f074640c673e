#!/usr/bin/env python3
"""RLtools (`rltools` Python package, MKL backend): time to solve Pendulum-v1
(mean eval return > -200) with SAC (default) or TD3 (--algo td3).

Runs inside the peer venv (.bench-venv, see setup_peer_env.sh). Prints ONE JSON
line on stdout; everything else (including the C++ code's own printing) goes
to stderr. See README.md for the fields.

How the wrapper is used: `rltools.SAC(env_factory, **params)` / `rltools.TD3`
render the hyperparameters into a C++ header, compile the RLtools training loop
(g++ -O3 -march=native -ffast-math, linked against MKL from the `mkl` and
`mkl-include` wheels) into a Python extension cached under
$TMPDIR/rltools/build/rltools_<algo>_<interface_name>/module.so, and load it.
`module.State(seed)` allocates the loop state; each `state.step()` is one
environment step plus the scheduled updates; `state.action(obs)` is the
deterministic (evaluation-mode) policy. Training steps a gymnasium
Pendulum-v1 (wrapped in RescaleAction(-1, 1), as the wrapper requires) through
pybind11 callbacks.

Evaluation: the wrapper's built-in evaluation is compiled out
(enable_evaluation=False) because its results are not exposed to Python; this
script evaluates `state.action` itself every --eval-every env steps on
--eval-episodes gymnasium Pendulum-v1 episodes (RescaleAction(-1, 1)), seeds
10000..10009, the same start states as the SBX script uses.

Hyperparameters: the wrapper's defaults (documented in README.md): actor and
critic MLPs 64x64 ReLU (NUM_LAYERS=3), batch 100, Adam lr 1e-3, gamma 0.99,
polyak 0.995, 100 warm-up steps; SAC: alpha init 0.5 adaptive, target entropy
-1, twin critics, every step 1 critic + 1 actor update; TD3: exploration noise
0.1, target noise 0.2 (clip 0.5), actor and target updates every 2nd step.

Timing: `build_s` is the SAC()/TD3() call (C++ compile when not cached, plus
loading the module); `build_cached` says whether a cached module was reused
(--force-rebuild measures a cold build). `state_init_s` is State(seed).
`time_to_solve_s` counts from the first training step to the end of the
solving evaluation (evaluation included); `train_excl_eval_s` leaves the
evaluations out; `total_wall_s` counts from process start.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peer_common as pc

PEER = "rltools"


def parse(argv, default_algo="sac"):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--algo", choices=["sac", "td3"], default=default_algo)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-steps",
        type=int,
        default=30_000,
        help="env-step cap; also RLtools' compile-time STEP_LIMIT and replay buffer size "
        "(default 30000)",
    )
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
        default=64,
        help="hidden width of actor and critics (wrapper default 64)",
    )
    p.add_argument(
        "--batch", type=int, default=100, help="actor and critic batch size (wrapper default 100)"
    )
    p.add_argument(
        "--force-rebuild",
        action="store_true",
        help="recompile the C++ module (measures a cold build)",
    )
    p.add_argument(
        "--allow-no-mkl",
        action="store_true",
        help="do not fail when the module is not linked to MKL",
    )
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


def main(argv, default_algo="sac"):
    t_proc = pc.process_start_time()
    args = parse(argv, default_algo)
    bench = f"{args.algo}_pendulum_solve"
    pc.install_hard_timeout(args.timeout)
    machine = pc.machine_info()
    if "torch" in sys.modules:  # rltools refuses to link MKL next to an imported torch
        raise RuntimeError("torch is imported; rltools+MKL must run in a process without torch")

    import gymnasium as gym
    import numpy as np
    import rltools
    from gymnasium.wrappers import RescaleAction

    t_imported = time.time()

    n_env = [0]

    def env_factory():
        env = RescaleAction(gym.make("Pendulum-v1"), -1.0, 1.0)
        env.reset(seed=args.seed * 1000 + n_env[0])
        n_env[0] += 1
        return env

    params = dict(
        STEP_LIMIT=args.max_steps,
        ACTOR_HIDDEN_DIM=args.hidden,
        CRITIC_HIDDEN_DIM=args.hidden,
        ACTOR_BATCH_SIZE=args.batch,
        CRITIC_BATCH_SIZE=args.batch,
    )
    # one cached module per configuration, so alternating configurations do not
    # invalidate each other's build
    iface = f"bench_h{args.hidden}_b{args.batch}_n{args.max_steps}"
    module_name = f"rltools_{args.algo}_{iface}"
    so_path = os.path.join(rltools.CACHE_PATH, "build", module_name, "module.so")
    cmd_path = os.path.join(rltools.CACHE_PATH, "build", module_name, "cmd.txt")
    mtime_before = os.path.getmtime(so_path) if os.path.exists(so_path) else None

    factory = rltools.SAC if args.algo == "sac" else rltools.TD3
    t0 = time.time()
    sac = factory(
        env_factory,
        interface_name=iface,
        enable_evaluation=False,
        force_recompile=args.force_rebuild,
        **params,
    )
    build_s = time.time() - t0
    mtime_after = os.path.getmtime(so_path) if os.path.exists(so_path) else None
    build_cached = mtime_before is not None and mtime_before == mtime_after
    cmd = ""
    if os.path.exists(cmd_path):
        with open(cmd_path) as f:
            cmd = f.read()
    backend = (
        "mkl"
        if "RL_TOOLS_BACKEND_ENABLE_MKL" in cmd
        else "openblas"
        if "RL_TOOLS_BACKEND_ENABLE_OPENBLAS" in cmd
        else "generic"
    )
    pc.log(
        f"[rltools] {args.algo} module {so_path} build {build_s:.2f} s "
        f"({'cached' if build_cached else 'compiled'}), backend {backend}"
    )
    if backend != "mkl" and not args.allow_no_mkl:
        raise RuntimeError(
            f"RLtools module is not linked to MKL (backend={backend}); "
            "install mkl and mkl-include in the peer venv (see setup_peer_env.sh)"
        )

    t0 = time.time()
    state = sac.State(args.seed)
    state_init_s = time.time() - t0

    evaluator = pc.BatchedPendulumEval(args.eval_episodes, base_seed=10_000, rescale_to_unit=True)

    def policy_batch(obs):
        return np.stack([state.action(np.ascontiguousarray(o, dtype=np.float32)) for o in obs])

    evals = []
    eval_s = 0.0
    solved = False
    stop_reason = "max_steps"
    steps = 0
    t_train0 = time.time()
    t_end = None
    while steps < args.max_steps:
        finished = state.step()
        steps += 1
        if steps % args.eval_every == 0:
            te = time.time()
            mean_ret, _ = evaluator.evaluate(policy_batch)
            t_done = time.time()
            eval_s += t_done - te
            elapsed = t_done - t_train0
            evals.append([steps, round(mean_ret, 2), round(elapsed, 3)])
            pc.log(f"[rltools] step {steps:6d}  eval {mean_ret:9.2f}  t={elapsed:7.3f} s")
            if mean_ret > args.threshold:
                solved, stop_reason, t_end = True, "solved", t_done
                break
            if elapsed > args.time_limit:
                stop_reason = "time_limit"
                break
        if finished:
            break
    if t_end is None:
        t_end = time.time()
    train_wall = t_end - t_train0
    train_excl = train_wall - eval_s

    hyper_common = {
        "hidden": [args.hidden, args.hidden],
        "activation": "relu",
        "batch_size": args.batch,
        "learning_rate": 1e-3,
        "adam_epsilon": 1e-7,
        "gamma": 0.99,
        "polyak": 0.995,
        "n_warmup_steps": max(100, args.batch),
        "replay_buffer_cap": args.max_steps,
    }
    if args.algo == "sac":
        hyper = {
            **hyper_common,
            "alpha_init": 0.5,
            "adaptive_alpha": True,
            "target_entropy": -1.0,
            "n_critics": 2,
            "critic_training_interval": 1,
            "actor_training_interval": 1,
            "critic_target_update_interval": 1,
        }
    else:
        hyper = {
            **hyper_common,
            "exploration_noise": 0.1,
            "target_next_action_noise_std": 0.2,
            "target_next_action_noise_clip": 0.5,
            "n_critics": 2,
            "critic_training_interval": 1,
            "actor_training_interval": 2,
            "target_update_interval": 2,
        }
    hyper["source"] = (
        f"rltools.{args.algo.upper()}() defaults (64x64, batch 100) unless --hidden/--batch given"
    )

    out = {
        "peer": PEER,
        "benchmark": bench,
        "ok": True,
        "solved": solved,
        "time_to_solve_s": round(train_wall, 4) if solved else None,
        "env_steps": steps,
        "train_wall_s": round(train_wall, 4),
        "train_excl_eval_s": round(train_excl, 4),
        "eval_s": round(eval_s, 4),
        "steps_per_s": round(steps / train_excl, 1) if train_excl > 0 else None,
        "final_eval_return": evals[-1][1] if evals else None,
        "stop_reason": stop_reason,
        "build_s": round(build_s, 3),
        "build_cached": build_cached,
        "state_init_s": round(state_init_s, 4),
        "time_to_solve_incl_build_s": round(build_s + state_init_s + train_wall, 3)
        if solved
        else None,
        "import_s": round(t_imported - t_proc, 3),
        "total_wall_s": round(t_end - t_proc, 3),
        "blas_backend": backend,
        "mkl_num_threads": os.environ.get("MKL_NUM_THREADS"),
        "max_steps": args.max_steps,
        "threshold": args.threshold,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
        "evaluation": "script's own: gymnasium Pendulum-v1 + RescaleAction(-1,1), "
        "state.action (deterministic)",
        "train_env": "gymnasium Pendulum-v1 + RescaleAction(-1,1), stepped from C++ via pybind11",
        "evals": evals,
        "algo": args.algo.upper(),
        "env": "Pendulum-v1",
        "seed": args.seed,
        "hyperparams": hyper,
        "versions": pc.package_versions(
            ["rltools", "mkl", "mkl-include", "gymnasium", "numpy", "pybind11"]
        ),
        "machine": machine,
    }
    pc.log(
        f"[rltools] solved={solved} steps={steps} train_wall={train_wall:.3f} s "
        f"(eval {eval_s:.3f} s), "
        f"build {build_s:.2f} s, total from process start {out['total_wall_s']:.2f} s"
    )
    return out


if __name__ == "__main__":
    pc.run_main(PEER, "sac_pendulum_solve", main)
