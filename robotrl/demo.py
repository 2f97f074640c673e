"""``make demo``: the flagship path, from simulation to a microcontroller.

1. Train a Crazyflie hover/recover controller on the pure-JAX quadrotor (``PRESET``), with
   evaluations of the deterministic policy (success: flying, error < 10 cm over the last 2 s,
   under disturbances) along the way; time to hover = wall time from the start of training
   (compilation included) to the first evaluation with ``HOVER_RATE`` of its episodes flying.
2. Export the policy: the portable bundle, C99 float32 and int8 (``robotrl export``).
3. Compile the C for this host (strict flags), load it with ctypes, run its self-test (the
   embedded golden pairs) and compare it with the numpy forward on 10,000 observations.
4. Cross-compile for a Cortex-M4F (STM32F405), run the self-test and the same golden inputs
   under QEMU, report flash/RAM; skipped with a note when the toolchain is missing
   (``make toolchain``).
5. Fly the compiled C policies (float32 and int8) in the simulator from the same 100 initial
   states as the JAX policy and compare their success.
Everything lands in ``runs/demo-quadrotor/``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

PRESET = Path(__file__).resolve().parents[1] / "configs" / "ppo_quadrotor.yaml"
HOVER_RATE = 0.4  # share of evaluation episodes flying that counts as "hovering"
TOLERANCE = "env.options.success_tolerance=0.1"  # m: flying = error < 10 cm over the last 2 s
EPISODES = 100  # closed-loop episodes per policy


def _say(text: str) -> None:
    print(text, flush=True)


def train(out: Path, overrides: list[str]) -> tuple[float | None, dict]:
    """Trains the preset; returns (time to hover or None, the last evaluation row)."""
    from robotrl import experiment
    from robotrl.cache import enable_compilation_cache, use_cpu_cores_as_devices

    use_cpu_cores_as_devices()
    enable_compilation_cache()
    cfg = experiment.load_config(PRESET, [TOLERANCE, *overrides])
    start = time.time()
    hover_at: list[float | None] = [None]
    last: dict = {}

    def on_log(step: int, row: dict) -> None:
        rate = row.get("eval/success_rate")
        if rate is None or not np.isfinite(rate):
            return
        elapsed = time.time() - start
        last.update(row, step=step)
        _say(
            f"  step {step:>11,}  {elapsed:6.1f} s  eval return {row['eval/return_mean']:7.1f}  "
            f"flying {rate:.0%}  final position error {row['eval/position_error'] * 100:.1f} cm"
        )
        if hover_at[0] is None and rate >= HOVER_RATE:
            hover_at[0] = elapsed

    experiment.train(cfg, out=out, on_log=[on_log])
    return hover_at[0], last


def main(argv: list[str] | None = None) -> int:
    from robotrl.config import ConfigError

    overrides = list(sys.argv[1:] if argv is None else argv)
    out = Path("runs") / "demo-quadrotor"
    if out.exists():
        shutil.rmtree(out)
    _say(f"robotrl demo: learning to fly a Crazyflie ({PRESET.name}), then C and a Cortex-M4")
    _say("1/5 training (JAX, all on this CPU; compiling takes a few seconds)")
    try:
        hover_s, last = train(out, overrides)
    except ConfigError as err:
        print(f"robotrl demo: error: {err}", file=sys.stderr)
        return 2
    summary = {"time to hover": "not reached" if hover_s is None else f"{hover_s:.0f} s"}
    summary["final evaluation"] = (
        f"{last.get('eval/success_rate', float('nan')):.0%} of episodes flying"
        f" (< 10 cm over the last 2 s)"
    )

    _say("2/5 exporting the policy (bundle, C float32, C int8)")
    from policies.bundle import PolicyBundle
    from robotrl.export import export_run

    export = out / "export"
    written = {}
    for fmt in ("c", "c-int8"):
        written.update(export_run(out, fmt, out=export)["files"])
    bundle = PolicyBundle.load(written["bundle"])

    _say("3/5 compiling the C for this host (-std=c99 -Wall -Wextra -Werror -pedantic)")
    from firmware_export import CPolicy

    c32 = CPolicy.build(bundle, export / "host-float32")
    c8 = CPolicy.build(bundle, export / "host-int8", quantize="int8")
    rng = np.random.default_rng(0)
    probe = bundle.golden_obs[rng.integers(0, len(bundle.golden_obs), 10_000)]
    probe = probe + rng.normal(0.0, 0.05, probe.shape).astype(np.float32)
    err32 = float(np.abs(c32.act(probe) - bundle.act(probe)).max())
    err8 = float(np.abs(c8.act(probe) - bundle.act(probe)).max())
    summary["host C self-test"] = (
        f"float32 {'pass' if c32.self_test() == 0 else 'FAIL'}, "
        f"int8 {'pass' if c8.self_test() == 0 else 'FAIL'}"
    )
    summary["C vs numpy (10,000 obs)"] = f"float32 max |diff| {err32:.1e}, int8 {err8:.3f}"

    _say("4/5 cross-compiling for a Cortex-M4F and running it on an emulated STM32F405 (QEMU)")
    from firmware_export import ToolchainMissing, footprint, run_on_cortex_m4

    try:
        m4 = run_on_cortex_m4(bundle, bundle.golden_obs, export / "m4-float32")
        diff = float(np.abs(m4.result.actions - bundle.golden_actions).max())
        summary["Cortex-M4 self-test"] = (
            f"{'pass' if m4.result.self_test_failures == 0 else 'FAIL'}; "
            f"{len(bundle.golden_obs)} golden inputs max |diff| {diff:.1e}; "
            f"{m4.instructions_per_step:,.0f} instructions/step"
        )
        for quantize in ("float32", "int8"):
            size = footprint(bundle, export / f"m4-size-{quantize}", quantize=quantize)["linked"]
            summary[f"M4 footprint {quantize}"] = (
                f"flash {size['flash']:,} B, RAM {size['ram']:,} B"
            )
    except ToolchainMissing as err:
        summary["Cortex-M4"] = f"skipped: {err}"

    _say(f"5/5 flying the compiled C policies in the simulator ({EPISODES} episodes each)")
    rates = fly_all(out, bundle, {"C float32": c32, "C int8": c8})
    summary["closed loop (flying)"] = ", ".join(f"{k} {v:.0%}" for k, v in rates.items())

    _say("\nDone.")
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        _say(f"  {key:<{width}}  {value}")
    _say(f"  {'run directory':<{width}}  {out.resolve()}")
    _say(f"  {'bundle':<{width}}  {Path(written['bundle']).resolve()}")
    _say(f"  {'C float32':<{width}}  {(export / 'c').resolve()} (policy.h, policy.c)")
    _say(f"  {'C int8':<{width}}  {(export / 'c-int8').resolve()} (policy.h, policy.c)")
    return 0


def fly_all(run: Path, bundle, c_policies: dict) -> dict[str, float]:
    """Success rates of the bundle (numpy) and each C policy over the same episodes."""
    from firmware_export.closed_loop import fly
    from robotrl import experiment
    from robotrl.runs import RunDir

    cfg = experiment.parse_config(RunDir.open(run).config())
    env, _ = experiment.make_functional_env(cfg.env)
    rates = {"numpy": fly(env, bundle.act, EPISODES).success_rate}
    for name, policy in c_policies.items():
        rates[name] = fly(env, policy.act, EPISODES).success_rate
    return rates


if __name__ == "__main__":
    sys.exit(main())
