"""SAC gradient updates per second, robotrl vs SBX, side by side (A B A B ...).

Same work on both sides: Pendulum-v1 transitions, [h, h] ReLU actor and twin critics, batch b,
UTD 1, one update per env step in the loop rates. Two sizes: 256x256/256 (compute-bound) and
64x64/100 (overhead-bound). Reports the median of per-pair ratios with min-max, and robotrl's
share of this machine's measured matmul ceiling.
"""

from __future__ import annotations

from benchmarks.common import alternate, machine, ours, peer_python, ratio_summary, run_json, save

SIZES = ((256, 256, 500), (64, 100, 2000))  # hidden, batch, updates per timed call


def update_flops(hidden: int, batch: int, obs: int = 3, act: int = 1) -> float:
    """FLOPs of one SAC update (twin critics), counting matmuls only (2 per multiply-add).

    Target: actor fwd + 2 target critics fwd; critic step: 2 critics fwd + bwd (weights and
    hidden inputs); actor step: actor fwd + 2 critics fwd + critics' input grads + actor bwd.
    """
    actor = obs * hidden + hidden * hidden + hidden * 2 * act
    critic = (obs + act) * hidden + hidden * hidden + hidden
    critic_input_grads = hidden * hidden + hidden  # dL/dx through layers 2..3
    macs = (
        actor
        + 2 * critic  # target
        + 2 * critic
        + 2 * (critic + critic_input_grads)  # critic fwd + bwd
        + actor
        + 2 * critic
        + 2 * critic_input_grads
        + actor
        + (actor - obs * hidden)
    )
    return 2.0 * macs * batch


def matmul_ceiling(hidden: int, batch: int) -> float:
    """GFLOP/s of a jitted, scanned chain of [batch, h] x [h, h] matmuls on this machine: the
    best of three fresh processes (``benchmarks/matmul_ceiling.py``)."""
    runs = [run_json(ours("matmul_ceiling.py", str(hidden), str(batch))) for _ in range(3)]
    return max(r["gflops"] for r in runs)


def main(pairs: int = 5) -> dict:
    peer = peer_python()
    results = {"machine": machine(), "sizes": []}
    for hidden, batch, steps in SIZES:
        print(f"SAC updates/s at {hidden}x{hidden}, batch {batch}: robotrl vs SBX")
        size = ["--hidden", str(hidden), "--batch", str(batch), "--steps", str(steps)]
        a = lambda size=size: run_json(ours("robotrl_sac_updates.py", *size, "--repeats", "3"))
        b = lambda size=size: run_json(
            [peer, "benchmarks/peers/sbx_sac_updates.py", *size, "--repeats", "3"]
        )
        measured = alternate(a, b, pairs)
        upd = [x["updates_per_s"] / y["updates_per_s"] for x, y in measured]
        loop = [x["loop_steps_per_s"] / y["learn_steps_per_s"] for x, y in measured]
        ceiling = matmul_ceiling(hidden, batch)
        flops = update_flops(hidden, batch)
        ours_rate = sorted(x["updates_per_s"] for x, _ in measured)[len(measured) // 2]
        results["sizes"].append(
            {
                "hidden": hidden,
                "batch": batch,
                "robotrl_updates_per_s": [x["updates_per_s"] for x, _ in measured],
                "sbx_updates_per_s": [y["updates_per_s"] for _, y in measured],
                "robotrl_loop_steps_per_s": [x["loop_steps_per_s"] for x, _ in measured],
                "sbx_learn_steps_per_s": [y["learn_steps_per_s"] for _, y in measured],
                "ratio_updates": ratio_summary(upd),
                "ratio_loop": ratio_summary(loop),
                "update_gflop": flops / 1e9,
                "matmul_ceiling_gflops": ceiling,
                "robotrl_share_of_ceiling": ours_rate * flops / 1e9 / ceiling,
            }
        )
        print(f"  updates ratio {ratio_summary(upd)}  loop ratio {ratio_summary(loop)}")
    save("sac_updates", results)
    return results


def report(results: dict) -> str:
    lines = [
        "## SAC gradient updates per second: robotrl vs SBX",
        "",
        "Median of per-pair ratios (min-max), 5 alternating pairs after a warm-up pair. "
        "*Updates only*: a jitted scan of updates (robotrl) vs `model.train(gradient_steps=N)` "
        "(SBX). *Training loop*: env step + insert + one update per step (robotrl scan loop "
        "on the JAX pendulum vs SBX `learn()` on gymnasium Pendulum-v1).",
        "",
        "| nets, batch | robotrl updates/s | SBX updates/s | ratio (updates) | "
        "robotrl loop steps/s | SBX learn steps/s | ratio (loop) | robotrl share of "
        "matmul ceiling |",
        "|---|---|---|---|---|---|---|---|",
    ]
    med = lambda xs: sorted(xs)[len(xs) // 2]
    for s in results["sizes"]:
        ru, rl = s["ratio_updates"], s["ratio_loop"]
        lines.append(
            f"| {s['hidden']}x{s['hidden']}, {s['batch']} | {med(s['robotrl_updates_per_s']):,.0f} "
            f"| {med(s['sbx_updates_per_s']):,.0f} | **{ru['median']:.2f}x** "
            f"({ru['min']:.2f}-{ru['max']:.2f}) | {med(s['robotrl_loop_steps_per_s']):,.0f} | "
            f"{med(s['sbx_learn_steps_per_s']):,.0f} | **{rl['median']:.2f}x** "
            f"({rl['min']:.2f}-{rl['max']:.2f}) | {100 * s['robotrl_share_of_ceiling']:.0f}% of "
            f"{s['matmul_ceiling_gflops']:.0f} GFLOP/s ({s['update_gflop']:.3f} GFLOP/update) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(main()))
