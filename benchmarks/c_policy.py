"""Exported C actor: footprint and inference time, against RLtools' exported actor.

The Learning-to-Fly actor shape, [146, 64, 64, 4] with tanh (146 inputs = 18 state values +
32 x 4 past actions), as a TD3 actor exported by ``firmware_export``. RLtools' figure for the
same actor is its float32 parameters, 13,828 x 4 B = 55,312 B (~55 KB); the goals are <= that
in float32 and <= a third of it in int8.

- Footprint on the Cortex-M4F (``arm-none-eabi-size``, ``-O2`` and ``-Os``): the policy object
  without the embedded golden pairs (what a firmware ships), with them, and the flash/RAM that
  linking the policy adds to a minimal program (newlib's ``tanhf`` included).
- Host inference: ns per ``policy_step_flat`` inside a C loop (gcc ``-O2``, strict flags),
  float32 and int8 alternating (A B A B ...), 5 pairs after a warm-up, median and min-max;
  process CPU time per step (robust to waiting for a core on this shared machine), and
  wall-clock time beside it.
  For scale, the numpy forward (``PolicyBundle.act``) on one observation.
- Cortex-M4 instructions per step under QEMU ``-icount``. QEMU does not model cycle timing:
  this is an instruction count, not cycles (a real M4F needs at least as many cycles, plus
  FPU/load latencies and flash wait states).

Needs the toolchain from ``firmware_export/install_toolchain.sh``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks.common import alternate, machine, ratio_summary, save
from firmware_export import check_toolchain, footprint, host_ns_per_step, run_on_cortex_m4
from robotrl.algos import td3
from robotrl.export import bundle_from_state
from robotrl.types import ArraySpec, EnvSpec, Field

RLTOOLS_FLOAT32_BYTES = 13_828 * 4  # [146, 64, 64, 4]: 146*64+64 + 64*64+64 + 64*4+4 params
L2F_SPEC = EnvSpec(
    name="l2f_actor_shape",
    obs=ArraySpec((146,)),
    action_low=(-1.0,) * 4,
    action_high=(1.0,) * 4,
    ctrl_dt=0.01,
    episode_length=500,
    reward_range=(-1.0, 1.0),
    obs_layout=(
        Field("position_error", 3, "m", "world", "position minus target"),
        Field("rotation_matrix", 9, "", "body->world", "R(q), row-major"),
        Field("linear_velocity", 3, "m/s", "world", "velocity"),
        Field("angular_velocity", 3, "rad/s", "body", "body rates"),
        Field("action_history", 128, "", "", "last 32 actions, oldest first"),
    ),
    action_layout=(Field("rotor_command", 4, "", "", "normalised rpm command"),),
)


def l2f_bundle():
    """A freshly initialised [146, 64, 64, 4] tanh TD3 actor with 32 golden pairs."""
    algo = td3.make(td3.TD3Config(actor_hidden=(64, 64), activation="tanh"), L2F_SPEC)
    state = algo.init(jax.random.PRNGKey(0))
    golden = np.random.default_rng(0).normal(size=(32, 146)).astype(np.float32)
    return bundle_from_state(algo, state, L2F_SPEC, golden, source={"run": "benchmark"})


def numpy_ns_per_step(bundle, steps: int = 2000) -> float:
    obs = bundle.golden_obs
    start = time.perf_counter()
    for k in range(steps):
        bundle.act(obs[k % len(obs)])
    return (time.perf_counter() - start) / steps * 1e9


def main(pairs: int = 5) -> dict:
    check_toolchain()
    bundle = l2f_bundle()
    results: dict = {"machine": machine(), "rltools_float32_bytes": RLTOOLS_FLOAT32_BYTES}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("footprint on the Cortex-M4 (arm-none-eabi-size)")
        results["footprint"] = {
            f"{q} {opt}": footprint(bundle, work / f"fp-{q}{opt}", quantize=q, opt=opt)
            for q in ("float32", "int8")
            for opt in ("-O2", "-Os")
        }
        print("host ns/step: float32 vs int8, alternating")
        runs = {q: iter(range(10**6)) for q in ("float32", "int8")}

        def timed(q: str) -> dict:
            ns = host_ns_per_step(
                bundle, work / f"host-{q}-{next(runs[q])}", quantize=q, steps=20_000
            )
            return {"ns": statistics.median(ns["cpu"]), "wall_ns": statistics.median(ns["wall"])}

        measured = alternate(lambda: timed("float32"), lambda: timed("int8"), pairs)
        results["host_ns_float32"] = [a["ns"] for a, _ in measured]
        results["host_ns_int8"] = [b["ns"] for _, b in measured]
        results["host_wall_ns_float32"] = [a["wall_ns"] for a, _ in measured]
        results["host_wall_ns_int8"] = [b["wall_ns"] for _, b in measured]
        results["int8_over_float32"] = ratio_summary([b["ns"] / a["ns"] for a, b in measured])
        results["numpy_ns_per_obs"] = numpy_ns_per_step(bundle)
        print("Cortex-M4 instructions/step under QEMU -icount")
        obs = np.random.default_rng(1).normal(size=(64, 146)).astype(np.float32)
        results["m4"] = {}
        for q in ("float32", "int8"):
            run = run_on_cortex_m4(bundle, obs, work / f"m4-{q}", quantize=q)
            results["m4"][q] = {
                "instructions_per_step": run.instructions_per_step,
                "self_test_failures": run.result.self_test_failures,
                "test_program": run.program,
            }
    results["load_at_end"] = machine()["load_at_start"]
    save("c_policy", results)
    return results


def report(results: dict) -> str:
    ref = results["rltools_float32_bytes"]
    fp = results["footprint"]
    med = lambda xs: statistics.median(xs)
    lines = [
        "## Exported C actor: footprint and inference time vs RLtools",
        "",
        "The Learning-to-Fly actor, [146, 64, 64, 4] tanh, exported by `firmware_export` "
        f"(float32, and int8 weights with per-channel scales). RLtools' exported actor: "
        f"13,828 float32 parameters = {ref:,} B (~55 KB). Flash = text + data from "
        "`arm-none-eabi-size` (Cortex-M4F, hard float); *shipped* = the policy object built "
        "with `-DPOLICY_NO_SELF_TEST` (no golden pairs); *linked* = what adding the policy "
        "to a minimal firmware costs (libm's `tanhf` included).",
        "",
        "| weights, opt | shipped flash (B) | vs RLtools | with goldens (B) | linked flash (B) "
        "| static RAM (B) |",
        "|---|---|---|---|---|---|",
    ]
    for key, f in fp.items():
        shipped = f["object_no_self_test"]["flash"]
        lines.append(
            f"| {key} | {shipped:,} | **{shipped / ref:.2f}x** | {f['object']['flash']:,} | "
            f"{f['linked']['flash']:,} | {f['object']['ram']:,} |"
        )
    f32, i8 = med(results["host_ns_float32"]), med(results["host_ns_int8"])
    r = results["int8_over_float32"]
    m4 = results["m4"]
    lines += [
        "",
        f"Goals: float32 <= {ref:,} B, int8 <= {ref // 3:,} B (a third).",
        "",
        "| inference | float32 | int8 |",
        "|---|---|---|",
        f"| host, C loop, gcc -O2 (CPU ns/step, median of {len(results['host_ns_float32'])}) | "
        f"{f32:,.0f} ({min(results['host_ns_float32']):,.0f}-"
        f"{max(results['host_ns_float32']):,.0f}) | {i8:,.0f} "
        f"({min(results['host_ns_int8']):,.0f}-{max(results['host_ns_int8']):,.0f}) |",
        f"| host, same, wall-clock ns/step (median) | {med(results['host_wall_ns_float32']):,.0f} "
        f"| {med(results['host_wall_ns_int8']):,.0f} |",
        f"| int8 / float32 CPU time, per pair | | {r['median']:.2f}x "
        f"({r['min']:.2f}-{r['max']:.2f}) |",
        f"| Cortex-M4, instructions/step (QEMU -icount, not cycles) | "
        f"{m4['float32']['instructions_per_step']:,.0f} | "
        f"{m4['int8']['instructions_per_step']:,.0f} |",
        "",
        f"For scale: numpy `PolicyBundle.act` on one observation took "
        f"{results['numpy_ns_per_obs'] / 1000:,.1f} us. Load (1/5/15 min) at start "
        f"{results['machine']['load_at_start']}, at end {results['load_at_end']}: the host "
        "times are only comparable within this run. QEMU does not model cycle timing, so the "
        "M4 figure is an instruction count; at 168 MHz and one instruction per cycle it would "
        f"be {m4['float32']['instructions_per_step'] / 168:,.0f} us (float32), a lower bound.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(main()))
