#!/usr/bin/env python3
"""RLtools "learning to fly": wall time for SAC on the L2F quadrotor to learn to hover.

Runs inside the peer venv (.bench-venv, see setup_peer_env.sh). Prints ONE JSON line on
stdout; everything else (compiler output, the trainer's progress) goes to stderr. See
README.md ("RLtools L2F hover") for the fields.

What runs: rltools_l2f_hover.cpp, a small C++ trainer written against the header-only RLtools
library that the `rltools` 2.2.1 wheel ships (rltools/external/rl_tools/include). It uses
RLtools' own L2F environment, SAC loop core, MLPs and Adam with the configuration of the RLtools
zoo entry for L2F SAC (src/rl/zoo/l2f/sac.h + environment.h): Crazyflie at 100 Hz, 500-step
episodes, 16-step action history, init_90_deg, squared reward (scale 0.1, constant 1,
position 10, orientation 2.5, linear velocity 0.05, action 0.1), termination at 1 m, no noise,
no disturbances, no randomisation; SAC with 3-layer 32-wide FAST_TANH actor and twin critics,
batch 64, critics every 5 steps, actor every 10, gamma 0.99, Adam lr 1e-3 (gradient clip 1,
weight decay 1e-4), target entropy -4, replay buffer 200k.

Hover evaluation (done by the C++ program): every --eval-every env steps the deterministic
policy flies --eval-episodes episodes of 500 steps from the env's initial-state distribution
(same start states every time: --eval-seed); an episode is a HOVER when it never terminates and
the position error norm stays below --tolerance (0.05 m) over its last --window (200) steps
(2 s). Training stops at success rate >= --threshold (0.8) or at --max-steps (300k).

Build: g++ -std=c++17 -O3 -ffast-math -march=native (+ MKL, linked like the rltools wrapper
links it: ilp64 + intel_thread + iomp5, MKL_NUM_THREADS=1), cached under
$TMPDIR/rltools_l2f_hover/<hash of the .cpp, compiler, flags, rltools/mkl versions>/.
`build_s` is this run's compile time (~0 when cached; `cold_build_s` is the cached binary's own
compile time). Timing starts at the first training step, after the build and the allocation.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peer_common as pc

PEER = "rltools"
BENCH = "l2f_hover"
HERE = os.path.dirname(os.path.abspath(__file__))
CPP = os.path.join(HERE, "rltools_l2f_hover.cpp")


def parse(argv):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=300_000, help="env-step budget (300000)")
    p.add_argument("--threshold", type=float, default=0.8, help="hover success rate to stop at")
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=32)
    p.add_argument(
        "--eval-seed", type=int, default=10_000, help="seed of the evaluation start states"
    )
    p.add_argument("--tolerance", type=float, default=0.05, help="hover position tolerance, m")
    p.add_argument("--window", type=int, default=200, help="hover window, steps (200 = 2 s)")
    p.add_argument(
        "--blas",
        choices=["mkl", "generic"],
        default="mkl",
        help="RLtools backend: MKL (default; ~8x faster here) or its generic C++ matmuls",
    )
    p.add_argument("--force-rebuild", action="store_true", help="recompile (measures a cold build)")
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
    if min(a.max_steps, a.eval_every, a.eval_episodes, a.window) < 1 or a.seed < 0:
        p.error("--max-steps, --eval-every, --eval-episodes, --window must be >= 1, --seed >= 0")
    if a.window > 500 or a.tolerance <= 0:
        p.error("--window must be <= 500 (the episode length) and --tolerance > 0")
    return a


# ------------------------------------------------------------------------------- build
def _rltools_include() -> str:
    import importlib.util

    spec = importlib.util.find_spec("rltools")  # the wheel: only its bundled headers are used
    if spec is None or not spec.origin:
        raise RuntimeError("the `rltools` package is not installed in this interpreter")
    inc = os.path.join(os.path.dirname(spec.origin), "external", "rl_tools", "include")
    if not os.path.isdir(os.path.join(inc, "rl_tools", "rl", "environments", "l2f")):
        raise RuntimeError(f"RLtools headers with L2F not found under {inc}")
    return inc


def _mkl_flags() -> list[str]:
    """Link flags for MKL from the `mkl` / `mkl-include` wheels, as rltools' own
    link_mkl.py builds them (ilp64 interface, Intel OpenMP threading layer)."""
    from importlib.metadata import files

    libs = {}
    for f in files("mkl") or []:
        name = os.path.basename(str(f))
        for want in ("libmkl_intel_ilp64.so", "libmkl_intel_thread.so", "libmkl_core.so"):
            if name.startswith(want):
                libs[want] = os.path.realpath(str(f.locate()))
    missing = {"libmkl_intel_ilp64.so", "libmkl_intel_thread.so", "libmkl_core.so"} - set(libs)
    if missing:
        raise RuntimeError(f"MKL libraries not found in the `mkl` wheel: {sorted(missing)}")
    headers = [f for f in (files("mkl-include") or []) if os.path.basename(str(f)) == "mkl.h"]
    if not headers:
        raise RuntimeError("mkl.h not found in the `mkl-include` wheel")
    inc = os.path.dirname(os.path.realpath(str(headers[0].locate())))
    libdir = os.path.dirname(libs["libmkl_core.so"])
    return [
        "-DRL_TOOLS_BACKEND_ENABLE_MKL",
        "-DRL_TOOLS_DISABLE_UNALIGNED_MEMORY_ALLOCATIONS",
        f"-I{inc}",
        "-m64",
        "-Wl,--no-as-needed",
        libs["libmkl_intel_ilp64.so"],
        libs["libmkl_intel_thread.so"],
        libs["libmkl_core.so"],
        f"-L{libdir}",
        "-liomp5",
        "-lpthread",
        "-lm",
        "-ldl",
        f"-Wl,--rpath,{libdir}",
    ]


def _compiler() -> tuple[str, str]:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        raise RuntimeError("no C++ compiler (g++/clang++; or set CXX)")
    ver = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()
    return cxx, (ver[0] if ver else "?")


def build(args) -> dict:
    """Compile (or reuse) the trainer; returns paths, timings and the command."""
    inc = _rltools_include()
    cxx, cxx_version = _compiler()
    opt = ["-std=c++17", "-O3", "-ffast-math", "-march=native"]
    backend_flags = _mkl_flags() if args.blas == "mkl" else []
    versions = pc.package_versions(["rltools", "mkl", "mkl-include"])
    with open(CPP, "rb") as f:
        src = f.read()
    h = hashlib.sha256()
    h.update(src)
    for part in [cxx, cxx_version, *opt, *backend_flags, inc, json.dumps(versions, sort_keys=True)]:
        h.update(b"\0" + part.encode())
    key = h.hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), "rltools_l2f_hover", f"{args.blas}-{key}")
    binary = os.path.join(cache, "rltools_l2f_hover")
    meta_path = os.path.join(cache, "build.json")
    cmd_out = [cxx, *opt, f"-I{inc}", CPP, "-o", binary, *backend_flags]
    cached = os.path.exists(binary) and os.path.exists(meta_path) and not args.force_rebuild
    if cached:
        with open(meta_path) as f:
            meta = json.load(f)
        pc.log(f"[rltools-l2f] cached binary {binary} (compiled in {meta['build_s']:.1f} s)")
        return {
            "binary": binary,
            "build_s": 0.0,
            "build_cached": True,
            "cold_build_s": round(meta["build_s"], 3),
            "compile_cmd": " ".join(cmd_out),
            "compiler": cxx_version,
            "cache_key": key,
        }
    os.makedirs(cache, exist_ok=True)
    tmp_bin = f"{binary}.tmp{os.getpid()}"  # atomic replace: no run ever sees a half binary
    cmd = [cxx, *opt, f"-I{inc}", CPP, "-o", tmp_bin, *backend_flags]
    pc.log(f"[rltools-l2f] compiling ({args.blas}): {' '.join(cmd)}")
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    build_s = time.time() - t0
    if r.returncode != 0:
        with contextlib.suppress(OSError):
            os.remove(tmp_bin)
        pc.log(r.stderr[-6000:])
        raise RuntimeError(f"compilation failed (exit {r.returncode}); compiler output above")
    os.replace(tmp_bin, binary)
    with open(meta_path, "w") as f:
        json.dump({"build_s": build_s, "cmd": cmd_out, "compiler": cxx_version}, f)
    pc.log(f"[rltools-l2f] compiled in {build_s:.2f} s -> {binary}")
    return {
        "binary": binary,
        "build_s": round(build_s, 3),
        "build_cached": False,
        "cold_build_s": round(build_s, 3),
        "compile_cmd": " ".join(cmd_out),
        "compiler": cxx_version,
        "cache_key": key,
    }


# --------------------------------------------------------------------------------- run
def run_trainer(binary: str, args) -> tuple[dict, list[dict], dict, float]:
    cmd = [
        binary,
        "--seed", str(args.seed),
        "--max-steps", str(args.max_steps),
        "--eval-every", str(args.eval_every),
        "--eval-episodes", str(args.eval_episodes),
        "--threshold", repr(args.threshold),
        "--time-limit", repr(args.time_limit),
        "--eval-seed", str(args.eval_seed),
        "--tolerance", repr(args.tolerance),
        "--window", str(args.window),
    ]  # fmt: skip
    env = dict(os.environ)
    env.setdefault("MKL_NUM_THREADS", "1")  # as the rltools wrapper does; tiny matrices
    pc.log(f"[rltools-l2f] running: {' '.join(cmd)}")
    config, evals, done = None, [], None
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env)
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tag, _, payload = line.partition(" ")
            if tag == "CONFIG":
                config = json.loads(payload)
            elif tag == "EVAL":
                e = json.loads(payload)
                evals.append(e)
                pc.log(
                    f"[rltools-l2f] step {e['step']:7d}  hover {e['success_rate']:.3f}  "
                    f"return {e['mean_return']:8.2f}  len {e['mean_length']:6.1f}  "
                    f"median window err {e['median_window_max_error']:.3f} m  t={e['wall_s']:.2f} s"
                )
            elif tag == "DONE":
                done = json.loads(payload)
            elif line.strip():
                pc.log(f"[rltools-l2f] {line}")
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wall = time.time() - t0
    if rc != 0 or done is None or config is None:
        seen = "seen" if done else "missing"
        raise RuntimeError(f"trainer failed (exit {rc}, DONE record {seen})")
    return config, evals, done, wall


def main(argv):
    t_proc = pc.process_start_time()
    args = parse(argv)
    pc.install_hard_timeout(args.timeout)
    machine = pc.machine_info()

    b = build(args)
    config, evals, done, proc_wall = run_trainer(b["binary"], args)
    t_end = time.time()

    solved = bool(done["solved"])
    hyper = {
        "algo": "SAC",
        "source": "RLtools zoo src/rl/zoo/l2f/sac.h + environment.h (upstream commit matching the "
        "rltools 2.2.1 headers, 2025-10-22), re-declared in rltools_l2f_hover.cpp",
        "actor": "MLP 3 layers (2 hidden x 32) FAST_TANH -> mean, log_std (4+4), tanh-squashed",
        "critics": "2 x MLP 3 layers (2 hidden x 32) FAST_TANH, asymmetric "
        "(privileged obs + action)",
        "batch_size": 64,
        "shared_batch": True,
        "critic_training_interval": 5,
        "actor_training_interval": 10,
        "critic_target_update_interval": 5,
        "polyak": 0.995,
        "gamma": 0.99,
        "alpha_init": 0.5,
        "adaptive_alpha": True,
        "target_entropy": -4.0,
        "optimizer": "Adam (TensorFlow defaults: eps 1e-7) lr 1e-3 actor/critic/alpha, "
        "gradient clip 1, weight decay 1e-4",
        "n_warmup_steps": config.get("n_warmup_steps"),
        "replay_buffer_cap": config.get("replay_buffer_cap"),
        "zoo_step_limit": 200_000,
        "actor_params": config.get("actor_params"),
        "critic_params": config.get("critic_params"),
    }
    env_cfg = {
        "env": "L2F Multirotor (RLtools), Crazyflie dynamics, RK4",
        "sim_hz": 100,
        "episode_steps": 500,
        "action_history": 16,
        "obs_dim": config.get("obs_dim"),
        "obs_dim_privileged": config.get("obs_dim_privileged"),
        "init": "init_90_deg (guidance 0.1, position +-0.5 m, linear vel +-1 m/s, angular vel "
        "+-1 rad/s, rpm [-1, 0] relative; orientation: see README)",
        "reward": "Squared: scale 0.1, constant 1, position 10, orientation 2.5, "
        "linear_velocity 0.05, action 0.1, termination_penalty 0",
        "termination": "|position| > 1 m, |linear vel| > 10 m/s, |angular vel| > 35 rad/s "
        "(per axis)",
        "noise": "none (observation, action)",
        "disturbances": "none",
        "domain_randomization": "none",
    }
    hover = {
        "criterion": "never terminated and ||position error|| < tolerance over the last "
        "window steps",
        "tolerance_m": args.tolerance,
        "window_steps": args.window,
        "episode_steps": 500,
        "eval_episodes": args.eval_episodes,
        "eval_seed": args.eval_seed,
        "policy": "deterministic (tanh of the actor mean)",
    }
    last = evals[-1] if evals else {}
    out = {
        "peer": PEER,
        "benchmark": BENCH,
        "ok": True,
        "seed": args.seed,
        "solved": solved,
        "time_to_hover_s": round(done["time_to_hover_s"], 4) if solved else None,
        "steps_to_hover": done["steps_to_hover"] if solved else None,
        "evals": [
            [e["step"], e["success_rate"], round(e["mean_return"], 3), round(e["wall_s"], 4)]
            for e in evals
        ],
        "train_wall_s": round(done["train_wall_s"], 4),
        "train_excl_eval_s": round(done["train_excl_eval_s"], 4),
        "eval_s": round(done["eval_s"], 4),
        "build_s": b["build_s"],
        "build_cached": b["build_cached"],
        "cold_build_s": b["cold_build_s"],
        "steps_per_s": done["steps_per_s"],
        "env_steps": done["steps"],
        "stop_reason": done["stop_reason"],
        "best_success_rate": done["best_success_rate"],
        "final_eval": last,
        # per evaluation: [step, mean_length, share_terminated, median over full-length episodes
        # of the worst position error in the window (m; -1: none), success rate at 2x and 4x
        # the tolerance]
        "eval_diagnostics": [
            [
                e["step"],
                e["mean_length"],
                e["share_terminated"],
                round(e["median_window_max_error"], 4),
                e["success_rate_2x_tol"],
                e["success_rate_4x_tol"],
            ]
            for e in evals
        ],
        "best_mean_return": max((e["mean_return"] for e in evals), default=None),
        "best_success_rate_2x_tol": max((e["success_rate_2x_tol"] for e in evals), default=None),
        "best_success_rate_4x_tol": max((e["success_rate_4x_tol"] for e in evals), default=None),
        "min_median_window_max_error": min(
            (e["median_window_max_error"] for e in evals if e["median_window_max_error"] >= 0),
            default=None,
        ),
        "time_to_hover_incl_build_s": round(b["build_s"] + done["time_to_hover_s"], 3)
        if solved
        else None,
        "trainer_process_s": round(proc_wall, 3),
        "total_wall_s": round(t_end - t_proc, 3),
        "threshold": args.threshold,
        "max_steps": args.max_steps,
        "eval_every": args.eval_every,
        "time_limit": args.time_limit,
        "blas_backend": config.get("backend"),
        "mkl_num_threads": os.environ.get("MKL_NUM_THREADS", "1" if args.blas == "mkl" else None),
        "config": {"hyperparams": hyper, "env": env_cfg, "hover": hover},
        "build": {k: b[k] for k in ("compile_cmd", "compiler", "cache_key", "binary")},
        "versions": pc.package_versions(["rltools", "mkl", "mkl-include"]),
        "machine": machine,
    }
    if done.get("fixed_trajectory_type"):
        out["note"] = "runner state had an uninitialised trajectory type; reset to POSITION"
    pc.log(
        f"[rltools-l2f] solved={solved} steps={done['steps']} "
        f"time_to_hover={out['time_to_hover_s']} s best={done['best_success_rate']:.3f} "
        f"train_wall={done['train_wall_s']:.2f} s ({done['steps_per_s']:.0f} steps/s) "
        f"build {b['build_s']:.2f} s (cold {b['cold_build_s']:.2f} s)"
    )
    return out


if __name__ == "__main__":
    pc.run_main(PEER, BENCH, main)
