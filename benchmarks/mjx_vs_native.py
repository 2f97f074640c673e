"""HalfCheetah steps per second: MJX (jit + vmap inside a lax.scan) vs native MuJoCo, side by side.

Same model (gymnasium's half_cheetah.xml), same control steps (5 physics steps of 10 ms each).
Sides, measured alternately in one worker process per batch size B (A B A B ..., after a warm-up
pair), each timed call doing the same number of control steps:
  mjx         ``MJXLocomotion.step`` (physics + task code, random actions drawn on device),
              ``jax.vmap`` over B envs inside a jitted ``lax.scan`` of T control steps
  mj_step     one MjData in a single-thread Python loop of ``mj_step(nstep=5)`` (rate per core;
              independent of B)
  rollout     ``mujoco.rollout.Rollout`` over B envs on a thread pool of all CPUs, T*5 substeps
  native_env  ``NativeLocomotionEnv`` with B envs: physics, task code, auto-reset (what a host
              training loop gets)
Rates are control steps per second (x5 for physics steps). MJX's compile time (first call minus a
steady call) is reported separately. Ratios are per pair, median (min-max).

Run: ``python -m benchmarks.mjx_vs_native`` (driver); the driver runs
``python benchmarks/mjx_vs_native.py --worker --batch B`` once per batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCHES = (1, 256, 1024, 4096)
SCAN_STEPS = {1: 400, 256: 16, 1024: 4, 4096: 1}  # T: control steps per timed MJX call
PAIRS = 5
WORKER_TIMEOUT_S = 1500  # a batch size whose compile + pairs take longer is reported as skipped
SIDES = ("mjx", "mj_step", "rollout", "native_env")


def worker(batch: int, pairs: int) -> dict:
    """Compiles MJX for ``batch`` envs, then alternates the four sides ``pairs`` times."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from sims.locomotion import MJXLocomotion, NativeLocomotionEnv
    from sims.locomotion.model import mujoco

    steps = SCAN_STEPS.get(batch, max(1, 4096 // batch))
    env = MJXLocomotion("halfcheetah")
    low, high = jnp.array(env.spec.action_low), jnp.array(env.spec.action_high)
    step = jax.vmap(env.step)

    def run(state, key):
        def body(state, k):
            action = jax.random.uniform(k, (batch, env.spec.action_dim), minval=low, maxval=high)
            state = step(state, action)
            return state, state.reward

        return jax.lax.scan(body, state, jax.random.split(key, steps))

    run = jax.jit(run)
    state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), batch))
    t = time.perf_counter()
    state, rewards = run(state, jax.random.PRNGKey(1))
    jax.block_until_ready(rewards)
    first_call_s = time.perf_counter() - t

    work = batch * steps  # control steps per timed call, the same on every side
    fs = env.task.frame_skip
    model = env.mj_model
    rng = np.random.default_rng(0)

    def mjx_side(i: int) -> float:
        nonlocal state
        t = time.perf_counter()
        state, rewards = run(state, jax.random.PRNGKey(2 + i))
        jax.block_until_ready(rewards)
        return work / (time.perf_counter() - t)

    data = mujoco.MjData(model)
    single = min(work, 20_000)  # its rate does not depend on B; bound its time

    def mj_step_side(i: int) -> float:
        controls = rng.uniform(-1, 1, (single, model.nu))
        t = time.perf_counter()
        for u in controls:
            data.ctrl[:] = u
            mujoco.mj_step(model, data, nstep=fs)
        return single / (time.perf_counter() - t)

    from mujoco import rollout

    nthread = os.cpu_count() or 1
    pool = rollout.Rollout(nthread=nthread if nthread > 1 else 0)
    datas = [mujoco.MjData(model) for _ in range(max(1, nthread))]
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    init = np.zeros((batch, mujoco.mj_stateSize(model, spec)))
    mujoco.mj_getState(model, mujoco.MjData(model), init[0], spec)
    init[:] = init[0]

    def rollout_side(i: int) -> float:
        nonlocal init
        controls = np.repeat(rng.uniform(-1, 1, (batch, steps, 1, model.nu)), fs, axis=2)
        controls = controls.reshape(batch, steps * fs, model.nu)
        t = time.perf_counter()
        out, _ = pool.rollout(model, datas, init, controls, nstep=steps * fs)
        rate = work / (time.perf_counter() - t)
        init = np.ascontiguousarray(out[:, -1])
        return rate

    native = NativeLocomotionEnv("halfcheetah", batch)
    native.reset(0)

    def native_side(i: int) -> float:
        actions = rng.uniform(-1, 1, (steps, batch, model.nu)).astype(np.float32)
        t = time.perf_counter()
        for a in actions:
            native.step(a)
        return work / (time.perf_counter() - t)

    sides = dict(zip(SIDES, (mjx_side, mj_step_side, rollout_side, native_side), strict=True))
    for fn in sides.values():  # warm-up pair
        fn(-1)
    rates = {name: [] for name in sides}
    for i in range(pairs):
        for name, fn in sides.items():
            rates[name].append(fn(i))
    steady_call_s = work / statistics.median(rates["mjx"])
    native.close()
    pool.close()
    return {
        "ok": True,
        "batch": batch,
        "scan_steps": steps,
        "control_steps_per_call": work,
        "frame_skip": fs,
        "mjx_compile_s": first_call_s - steady_call_s,
        "mjx_first_call_s": first_call_s,
        "rollout_threads": nthread,
        "native_env_threads": native.num_threads,
        "rates": rates,
        "cache_size": run._cache_size(),
    }


def main(pairs: int = PAIRS, batches: tuple[int, ...] = BATCHES) -> dict:
    from benchmarks.common import machine, ours, ratio_summary, run_json, save

    results = {"machine": machine(), "batches": []}
    for batch in batches:
        print(f"HalfCheetah steps/s at batch {batch}: MJX vs native MuJoCo ({pairs} pairs)")
        cmd = ours("mjx_vs_native.py", "--worker", "--batch", str(batch), "--pairs", str(pairs))
        try:
            row = run_json(cmd, timeout=WORKER_TIMEOUT_S)
        except (subprocess.TimeoutExpired, RuntimeError) as err:
            reason = "timed out" if isinstance(err, subprocess.TimeoutExpired) else str(err)
            print(f"  skipped: {reason[:200]}")
            results["batches"].append({"batch": batch, "skipped": reason[:500]})
            continue
        mjx = row["rates"]["mjx"]
        row["ratios"] = {
            f"mjx/{name}": ratio_summary(
                [a / b for a, b in zip(mjx, row["rates"][name], strict=True)]
            )
            for name in SIDES[1:]
        }
        results["batches"].append(row)
        medians = {k: statistics.median(v) for k, v in row["rates"].items()}
        print(
            f"  compile {row['mjx_compile_s']:.1f} s; control steps/s "
            + ", ".join(f"{k} {v:,.0f}" for k, v in medians.items())
        )
    save("mjx_vs_native", results)
    return results


def report(results: dict) -> str:
    lines = [
        "## MuJoCo locomotion: MJX vs native MuJoCo (HalfCheetah)",
        "",
        "Control steps per second (one control step = 5 physics steps of 10 ms), median of "
        "alternating measurements in one process per batch size after a warm-up; ratios are "
        "per pair, median (min-max). *mjx*: `MJXLocomotion.step` vmapped over B envs in a "
        "jitted `lax.scan`; *mj_step*: one MjData, single-thread Python loop; *rollout*: "
        "`mujoco.rollout` on a thread pool of all cores; *native env*: `NativeLocomotionEnv` "
        "(physics + task code + auto-reset). MJX compile time counted separately.",
        "",
        "| B | MJX compile s | mjx | mj_step (1 thread) | rollout | native env | "
        "mjx / mj_step | mjx / rollout | mjx / native env |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["batches"]:
        if "skipped" in row:
            lines.append(f"| {row['batch']} | skipped: {row['skipped'][:60]} | | | | | | | |")
            continue
        med = {k: statistics.median(v) for k, v in row["rates"].items()}
        ratio = lambda name, row=row: (
            f"{row['ratios'][name]['median']:.3f}x "
            f"({row['ratios'][name]['min']:.3f}-{row['ratios'][name]['max']:.3f})"
        )
        lines.append(
            f"| {row['batch']} | {row['mjx_compile_s']:.1f} | {med['mjx']:,.0f} | "
            f"{med['mj_step']:,.0f} | {med['rollout']:,.0f} | {med['native_env']:,.0f} | "
            f"{ratio('mjx/mj_step')} | {ratio('mjx/rollout')} | {ratio('mjx/native_env')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", action="store_true", help="measure one batch size, print JSON")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=PAIRS)
    args = parser.parse_args()
    if args.worker:
        try:
            print(json.dumps(worker(args.batch, args.pairs)))
        except Exception as err:  # the driver reports it as a skipped batch size
            print(json.dumps({"ok": False, "error": f"{type(err).__name__}: {err}"}))
            sys.exit(1)
    else:
        print(report(main()))
