"""Time to a hovering quadrotor policy: robotrl vs RLtools, same configuration, same criterion.

Both sides train Learning to Fly with SAC as RLtools' L2F zoo config sets it up (robotrl:
``configs/sac_quadrotor.yaml``; RLtools: ``peers/rltools_l2f_hover.cpp`` against the rltools
wheel's headers, MKL) and evaluate every ``EVAL_EVERY`` env steps on 32 deterministic episodes.
An episode *flies* when it never terminates and its position error stays below 5 cm over the
last 2 s; the policy *hovers* at the first evaluation where >= 80% of the episodes fly. Time
counts from the start of training with compilation included (RLtools' one-time C++ build is
reported apart, as its cached binary is reused). Differences that remain: robotrl adds L2F's
curriculum, and its initial attitudes reach 90 degrees where RLtools' sampler stops near 57.

Measured: one seed (robotrl with a cold and a warm JAX cache, RLtools), and ``MANY`` seeds
(robotrl vmapped in one process vs RLtools running them one after another).

Run: ``python -m benchmarks.time_to_hover``.
"""

from __future__ import annotations

import tempfile

from benchmarks.common import PEERS, machine, ours, peer_python, run_json, save

EVAL_EVERY = 50_000
MAX_STEPS = 2_000_000
MANY = 8


def robotrl(seeds: int, cache: str, seed: int = 0) -> dict:
    return run_json(
        ours(
            "robotrl_time_to_solve.py",
            "--config",
            "configs/sac_quadrotor.yaml",
            "--seeds",
            str(seeds),
            "--seed",
            str(seed),
            "--success-threshold",
            "0.8",
            "--eval-every",
            str(EVAL_EVERY),
            "--eval-episodes",
            "32",
            "--max-steps",
            str(MAX_STEPS),
            "--benchmark",
            "time_to_hover",
        ),
        env={"JAX_COMPILATION_CACHE_DIR": cache},
        timeout=1800,
    )


def rltools(peer: str, seed: int) -> dict:
    return run_json(
        [
            peer,
            str(PEERS / "rltools_l2f_hover.py"),
            "--seed",
            str(seed),
            "--max-steps",
            str(MAX_STEPS),
            "--eval-every",
            str(EVAL_EVERY),
            "--threshold",
            "0.8",
            "--time-limit",
            "300",
            "--timeout",
            "330",
        ],
        timeout=400,
    )


def main() -> dict:
    peer = peer_python()
    cache = tempfile.mkdtemp(prefix="robotrl-cold-")
    print("time to hover, one seed: robotrl (cold, warm cache) vs RLtools")
    single = {"robotrl_cold": robotrl(1, cache), "robotrl_warm": robotrl(1, cache)}
    single["rltools"] = rltools(peer, 0)
    print(f"{MANY} seeds: robotrl vmapped vs RLtools one after another")
    many = {"robotrl": robotrl(MANY, cache), "rltools": [rltools(peer, s) for s in range(MANY)]}
    data = {"machine": machine(), "single": single, "many": many}
    save("time_to_hover", data)
    return data


def _fmt(x) -> str:
    return "not reached" if x is None else f"{x:.1f}"


def report(data: dict) -> str:
    s, m = data["single"], data["many"]
    rl = s["rltools"]
    lines = [
        "## Time to a hovering quadrotor policy: robotrl vs RLtools (Learning to Fly, SAC)",
        "",
        "Training wall time to the first evaluation with >= 80% of 32 episodes flying (5 cm over "
        "the last 2 s), compilation included; RLtools' cold C++ build apart.",
        "",
        "| run | hovers after (env steps) | time to hover (s) | env steps/s |",
        "|---|---|---|---|",
    ]
    for name, run in (
        ("robotrl, cold cache", s["robotrl_cold"]),
        ("robotrl, warm", s["robotrl_warm"]),
    ):
        sps = run["env_steps"] / run["train_wall_s"]
        lines.append(
            f"| {name} | {run['solve_steps'][0]} | {_fmt(run['time_to_solve_s'])} | {sps:,.0f} |"
        )
    lines.append(
        f"| RLtools (build {rl.get('cold_build_s', float('nan')):.1f} s once) | "
        f"{rl.get('steps_to_hover')} | {_fmt(rl.get('time_to_hover_s'))} | "
        f"{rl.get('steps_per_s', float('nan')):,.0f} |"
    )
    seq = [r.get("time_to_hover_s") for r in m["rltools"]]
    seq_total = sum(r["train_wall_s"] for r in m["rltools"])
    lines += [
        "",
        f"{MANY} seeds: robotrl vmapped in one process: {m['robotrl']['solved']}/{MANY} hover, "
        f"all by {_fmt(m['robotrl']['time_to_solve_s'])} s (training wall "
        f"{m['robotrl']['train_wall_s']:.0f} s); RLtools one after another: "
        f"{sum(x is not None for x in seq)}/{MANY} hover, {seq_total:.0f} s of training in all.",
    ]
    warm, peer = s["robotrl_warm"]["time_to_solve_s"], rl.get("time_to_hover_s")
    if warm is not None and peer:
        lines.append(f"One seed: robotrl (warm) / RLtools = {warm / peer:.1f}x (goal <= 3x).")
    many_time = m["robotrl"]["time_to_solve_s"]
    if many_time is not None:
        lines.append(
            f"{MANY} seeds: robotrl all hovering / RLtools' sequential training = "
            f"{many_time / seq_total:.2f}x (goal <= 1x)."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(main()))
