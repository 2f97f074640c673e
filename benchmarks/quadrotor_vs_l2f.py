"""Quadrotor simulation steps per second: robotrl's JAX quadrotor vs the L2F simulator (``l2f``).

Driver (``main``/``report``) and robotrl's side (``--side ours``, one JSON line) in one file;
the peer side is ``benchmarks/peers/l2f_steps.py`` in the peer venv (``setup_peer_env.sh
--with-l2f``).

Same work on both sides, one core each (BENCHMARKS.md): the Crazyflie quadrotor, RK4 at 100 Hz,
an 82-dim actor observation (position, rotation matrix, velocities, 16-step action history) with
per-entry noise samples, constant random actions. robotrl: ``jax.vmap(env.step)`` inside one
jitted ``lax.scan`` (how training runs it), XLA single-threaded, and its step also returns the
28-dim privileged observation, reward, termination and metrics. l2f: ``vectorN.step`` +
``vectorN.observe`` per step from Python (``OMP_NUM_THREADS=1``); its ``full`` rate adds
``reward`` + ``terminated``. Both processes are pinned to the same core and timed by their CPU
time (``process_time``; the machine is shared), wall-clock rates are recorded too. Alternating
pairs (ours, l2f) after a warm-up pair; the figure is the median of the per-pair ratios.

Also measured on robotrl's side: the training stack (``make_training_env``: auto-reset and
time limit around the env). And a one-step parity check of the dynamics against ``l2f.step``
with the paper's Crazyflie parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

BATCHES = (1, 256, 4096)
XLA_SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


# ------------------------------------------------------------------------------ our side
def ours_main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, nargs="+", default=list(BATCHES))
    p.add_argument("--env-steps", type=int, default=400_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--history", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", type=int, default=None)
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_SINGLE_THREAD}".strip()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from robotrl.envs import make_training_env
    from sims.quadrotor import Quadrotor, QuadrotorConfig

    # No persistent compilation cache: compile_s is a cold XLA compile.
    env = Quadrotor(QuadrotorConfig(action_history=args.history))

    def timed(step, state, n, steps):
        actions = np.random.default_rng(args.seed).uniform(-0.2, 0.6, (n, 4)).astype(np.float32)
        actions = jnp.asarray(actions)

        def run(s):
            return jax.lax.scan(lambda s, _: (step(s, actions), None), s, None, length=steps)[0]

        t0 = time.perf_counter()
        compiled = jax.jit(run).lower(state).compile()
        compile_s = time.perf_counter() - t0
        jax.block_until_ready(compiled(state))  # warm-up
        cpu, wall = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            out = jax.block_until_ready(compiled(state))
            c1, t1 = time.process_time(), time.perf_counter()
            cpu.append(n * steps / max(c1 - c0, 1e-9))
            wall.append(n * steps / max(t1 - t0, 1e-9))
        obs = out.obs["state"]
        assert bool(jnp.all(jnp.isfinite(obs))) and obs.shape[-1] == env.spec.obs_dim
        return {
            "steps_per_s_cpu": statistics.median(cpu),
            "steps_per_s_wall": statistics.median(wall),
            "steps_per_s_cpu_all": cpu,
            "compile_s": compile_s,
            "steps_per_repeat": steps,
        }

    out = {}
    for n in args.batch:
        steps = max(1, args.env_steps // n)
        keys = jax.random.split(jax.random.PRNGKey(args.seed), n)
        state = jax.vmap(env.reset)(keys)
        row = timed(jax.vmap(env.step), state, n, steps)
        stack = make_training_env(env, n)
        row["training_stack"] = timed(stack.step, stack.reset(keys[0]), n, steps)
        out[str(n)] = row
        print(f"[robotrl] batch {n}: {row['steps_per_s_cpu'] / 1e6:.2f}M steps/s", file=sys.stderr)
    return {
        "side": "robotrl",
        "benchmark": "quadrotor_steps",
        "batches": out,
        "obs_dim": env.spec.obs_dim,
        "privileged_dim": env.spec.critic_obs_dim,
        "versions": {"jax": jax.__version__},
    }


# ------------------------------------------------------------------------------- parity
def parity_cases(n: int = 64, seed: int = 0) -> tuple[dict, dict]:
    """Random states (L2F's initial distribution, random rotor speeds) and actions; robotrl's
    next states from a noise- and disturbance-free env."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from sims.quadrotor import Quadrotor, QuadrotorConfig

    quiet = dict(noise_position=0.0, noise_orientation=0.0, noise_linear_velocity=0.0)
    quiet |= dict(noise_angular_velocity=0.0, disturbance_force_std=0.0)
    env = Quadrotor(QuadrotorConfig(disturbance_torque_std=0.0, **quiet))
    c = env.config
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    gen = np.random.default_rng(seed)
    rpm = gen.uniform(0.0, c.max_rpm, (n, 4)).astype(np.float32)
    actions = gen.uniform(-1.0, 1.0, (n, 4)).astype(np.float32)
    # Some faster spins than the initial distribution has, to exercise the gyroscopic term.
    omega = gen.uniform(-8.0, 8.0, (n, 3)).astype(np.float32)
    start = jax.vmap(lambda k, r, w: env.reset_to(k, rpm=r, angular_velocity=w))(keys, rpm, omega)
    nxt = jax.jit(jax.vmap(env.step))(start, jnp.asarray(actions))
    names = ("position", "quaternion", "velocity", "angular_velocity", "rpm")
    vec = lambda ph, k: np.asarray(ph.vector(k), np.float64)
    cases = [
        {**{k: vec(start.physics, k)[i].tolist() for k in names}, "action": actions[i].tolist()}
        for i in range(n)
    ]
    model = {
        "mass": c.mass,
        "inertia": list(c.inertia),
        "arm_length": c.arm_length,
        "thrust_constant": c.thrust_constant,
        "torque_constant": c.torque_constant,
        "tau": c.motor_time_constant,
        "max_rpm": c.max_rpm,
        "gravity": c.gravity,
        "dt": c.ctrl_dt,
    }
    ours = {k: vec(nxt.physics, k) for k in names}
    return {"model": model, "cases": cases}, ours


def l2f_next_states(peer: str, cases: dict) -> list[dict]:
    """l2f's next state for every case of ``parity_cases`` (run in the peer venv)."""
    from benchmarks.common import run_json

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cases, f)
    try:
        return run_json([peer, "benchmarks/peers/l2f_steps.py", "--parity", f.name])["next_states"]
    finally:
        os.unlink(f.name)


def parity(peer: str) -> dict:
    """Max abs difference per state component between robotrl's and l2f's one-step results."""
    cases, ours = parity_cases()
    return compare(ours, l2f_next_states(peer, cases))


def compare(ours: dict, theirs: list[dict]) -> dict:
    """Max abs difference per component (rpm as a fraction of max_rpm), and ``n_cases``."""
    import numpy as np

    out = {}
    for k, ours_k in ours.items():
        ref = np.array([s[k] for s in theirs])
        scale = {"rpm": 21702.0}.get(k, 1.0)
        out[k] = float(np.abs(ours_k - ref).max() / scale)
    out["n_cases"] = len(theirs)
    return out


# ------------------------------------------------------------------------------- driver
def main(pairs: int = 5) -> dict:
    import subprocess

    from benchmarks.common import PEERS, alternate, machine, ours, ratio_summary, run_json, save

    setup = subprocess.run(
        ["bash", str(PEERS / "setup_peer_env.sh"), "--with-l2f"], capture_output=True, text=True
    )
    if setup.returncode != 0:
        raise RuntimeError(f"peer env setup failed:\n{setup.stderr[-2000:]}")
    peer = os.path.join(setup.stdout.strip().splitlines()[-1], "bin", "python")
    cpu = str(max(os.sched_getaffinity(0)))
    results = {"machine": machine(), "pinned_core": int(cpu), "batches": list(BATCHES)}
    print("parity: one l2f.step vs one robotrl step from the same states")
    results["parity"] = parity(peer)
    print(f"  max |difference|: {results['parity']}")

    print("quadrotor env steps/s: robotrl vs l2f (alternating pairs)")
    a = lambda: run_json(ours("quadrotor_vs_l2f.py", "--side", "ours", "--cpu", cpu))
    b = lambda: run_json(
        [peer, "benchmarks/peers/l2f_steps.py", "--cpu", cpu], env={"OMP_NUM_THREADS": "1"}
    )
    measured = alternate(a, b, pairs)
    ratios = lambda xs, ys: ratio_summary([p / q for p, q in zip(xs, ys, strict=True)])
    rows = {}
    for n in map(str, BATCHES):
        x = [r["batches"][n] for r, _ in measured]
        y = [r["batches"][n] for _, r in measured]
        row = {
            "robotrl_cpu": [v["steps_per_s_cpu"] for v in x],
            "robotrl_wall": [v["steps_per_s_wall"] for v in x],
            "robotrl_compile_s": [v["compile_s"] for v in x],
            "robotrl_training_stack_cpu": [v["training_stack"]["steps_per_s_cpu"] for v in x],
            "l2f_cpu": [v["steps_per_s_cpu"] for v in y],
            "l2f_wall": [v["steps_per_s_wall"] for v in y],
            "l2f_full_cpu": [v["full_steps_per_s_cpu"] for v in y],
        }
        row["ratio_cpu"] = ratios(row["robotrl_cpu"], row["l2f_cpu"])
        row["ratio_wall"] = ratios(row["robotrl_wall"], row["l2f_wall"])
        row["ratio_vs_full_cpu"] = ratios(row["robotrl_cpu"], row["l2f_full_cpu"])
        row["ratio_training_stack_cpu"] = ratios(row["robotrl_training_stack_cpu"], row["l2f_cpu"])
        rows[n] = row
        print(f"  batch {n}: ratio (cpu) {row['ratio_cpu']}")
    results["rows"] = rows
    first_ours, first_l2f = measured[0]
    results["obs_dim"] = {
        "robotrl": first_ours["obs_dim"],
        "l2f": first_l2f["batches"][str(BATCHES[0])]["obs_dim"],
    }
    results["versions"] = {"robotrl_side": first_ours["versions"], "l2f": first_l2f["versions"]}
    save("quadrotor_vs_l2f", results)
    return results


def report(results: dict) -> str:
    med = statistics.median
    m = lambda xs: f"{med(xs) / 1e6:.2f}M"
    r = lambda s: f"**{s['median']:.2f}x** ({s['min']:.2f}-{s['max']:.2f})"
    lines = [
        "## Quadrotor simulation steps per second: robotrl vs L2F (`l2f`)",
        "",
        "One core each (pinned; XLA single-threaded, `OMP_NUM_THREADS=1`), env steps per second "
        "of CPU time, the Crazyflie with an 82-dim noisy observation (16-step action history). "
        "robotrl: `vmap(env.step)` in a jitted `lax.scan` (its step also returns the privileged "
        "observation, reward, termination, metrics); l2f: `vectorN.step` + `vectorN.observe` "
        "from Python (*full*: + `reward` + `terminated`). Median of per-pair ratios (min-max), "
        f"{len(results['rows']['1']['robotrl_cpu'])} alternating pairs after a warm-up pair.",
        "",
        "| batch | robotrl steps/s | l2f steps/s | ratio | ratio vs l2f full | ratio (wall) | "
        "robotrl training stack (ratio) | robotrl compile |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, row in results["rows"].items():
        lines.append(
            f"| {int(n):,} | {m(row['robotrl_cpu'])} | {m(row['l2f_cpu'])} | "
            f"{r(row['ratio_cpu'])} | {r(row['ratio_vs_full_cpu'])} | {r(row['ratio_wall'])} | "
            f"{m(row['robotrl_training_stack_cpu'])} ({r(row['ratio_training_stack_cpu'])}) | "
            f"{med(row['robotrl_compile_s']):.1f} s |"
        )
    par = results["parity"]
    lines += [
        "",
        f"Parity, one step from {par['n_cases']} random states and actions (paper's Crazyflie in "
        "both): max |robotrl - l2f| "
        + ", ".join(f"{k} {v:.1e}" for k, v in par.items() if k != "n_cases")
        + " (rpm as a fraction of 21,702).",
        "",
        "*Training stack*: `make_training_env` around the env (auto-reset computes a fresh "
        "reset for every env at every step, plus the time limit), against l2f's plain steps.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--side":
        side = sys.argv[2]
        assert side == "ours", f"unknown side {side!r}"
        print(json.dumps(ours_main(sys.argv[3:])))
        sys.stdout.flush()
        os._exit(0)
    print(report(main()))
