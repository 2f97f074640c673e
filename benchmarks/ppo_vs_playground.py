"""PPO on MuJoCo's CartpoleBalance: robotrl vs MuJoCo Playground's Brax PPO, on this CPU.

The task is dm_control's Cartpole Balance on MuJoCo on both sides (ours: ``cartpole_balance``,
dm_control's own XML, native MuJoCo through the host loop, the CPU default; Playground: its
``CartpoleBalance`` on MJX with ``impl="jax"``), 1000-step episodes with rewards in [0, 1].
Each side trains with its own tuned PPO (ours: ``configs/ppo_cartpole_balance.yaml``, 256 envs;
Playground: its ``brax_ppo_config("CartpoleBalance")`` with 256 envs, the figure BENCHMARKS.md
quotes) and evaluates with the deterministic policy after each training chunk.

Measured, all wall clock from ``train()`` (compilation included, imports excluded):
  time to solve    first evaluation with mean return >= 900
  env steps/s      env steps trained / training wall time (evaluations excluded on
                   Playground's side, whose figure is brax's own ``training/sps``; ours
                   includes them, so the ratio understates us)
robotrl runs twice (cold JAX compilation cache, then warm); Playground once (its run is
minutes long, bounded by ``--time-limit``). Peer venv: ``peers/setup_playground_env.sh``.

Run: ``python -m benchmarks.ppo_vs_playground``.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from benchmarks.common import PEERS, machine, ours, run_json, save

THRESHOLD = 900.0
PEER_TIME_LIMIT_S = 480


def playground_python() -> str:
    """The Playground venv's interpreter, created on first use."""
    result = subprocess.run(
        ["bash", str(PEERS / "setup_playground_env.sh")], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"playground env setup failed:\n{result.stderr[-2000:]}")
    return str(Path(result.stdout.strip().splitlines()[-1]) / "bin" / "python")


def robotrl(cache: str) -> dict:
    return run_json(
        ours(
            "robotrl_time_to_solve.py",
            "--config",
            "configs/ppo_cartpole_balance.yaml",
            "--threshold",
            str(THRESHOLD),
            "--eval-every",
            "65536",
            "--eval-episodes",
            "16",
            "--max-steps",
            "3000000",
            "--benchmark",
            "ppo_cartpole_balance",
        ),
        env={"JAX_COMPILATION_CACHE_DIR": cache},
    )


def main() -> dict:
    peer = playground_python()
    print("PPO CartpoleBalance: robotrl (cold, warm cache) vs Playground/Brax (256 envs)")
    cache = tempfile.mkdtemp(prefix="robotrl-cold-")
    cold = robotrl(cache)
    warm = robotrl(cache)
    print("  robotrl done; Playground (minutes)")
    playground = run_json(
        [
            peer,
            str(PEERS / "playground_ppo_cartpole.py"),
            "--num-envs",
            "256",
            "--deterministic-eval",
            "--threshold",
            str(THRESHOLD),
            "--time-limit",
            str(PEER_TIME_LIMIT_S),
            "--timeout",
            str(PEER_TIME_LIMIT_S + 120),
        ],
        timeout=PEER_TIME_LIMIT_S + 180,
    )
    data = {
        "machine": machine(),
        "robotrl_cold": cold,
        "robotrl_warm": warm,
        "playground": playground,
    }
    save("ppo_vs_playground", data)
    return data


def _sps(run: dict) -> float:
    return run["env_steps"] / run["train_wall_s"]


def report(data: dict) -> str:
    cold, warm, pg = data["robotrl_cold"], data["robotrl_warm"], data["playground"]
    pg_time = pg.get("time_to_threshold_s")
    pg_sps = pg.get("steps_per_s_steady") or pg.get("steps_per_s_excl_eval")
    lines = [
        "## PPO CartpoleBalance vs MuJoCo Playground (Brax PPO), CPU",
        "",
        "Time from `train()` to the first deterministic evaluation with mean return >= 900 "
        "(compilation included), and env steps per second.",
        "",
        "| side | time to 900 (s) | env steps to 900 | env steps/s | final/best eval |",
        "|---|---|---|---|---|",
    ]
    for name, run in (("robotrl (cold cache)", cold), ("robotrl (warm cache)", warm)):
        steps = run["solve_steps"][0]
        lines.append(
            f"| {name} | {run['time_to_solve_s'] or float('nan'):.1f} | "
            f"{steps if steps is not None else 'not solved'} | {_sps(run):,.0f} | "
            f"{run['final_returns'][0]:.0f} |"
        )
    lines.append(
        f"| Playground/Brax PPO | "
        f"{pg_time if pg_time is not None else 'not solved in ' + str(pg['train_wall_s'])} | "
        f"{pg.get('steps_to_threshold')} | {pg_sps or float('nan'):,.0f} | "
        f"{pg.get('best_eval_reward')} |"
    )
    if pg_time is not None and cold["time_to_solve_s"]:
        lines.append("")
        ratio_cold = pg_time / cold["time_to_solve_s"]
        ratio_warm = pg_time / warm["time_to_solve_s"]
        lines.append(
            f"Time-to-solve ratio (Playground / robotrl): cold {ratio_cold:.1f}x, "
            f"warm {ratio_warm:.1f}x (goal >= 3x)."
        )
    elif pg_time is None:
        lines.append("")
        lines.append(
            f"Playground did not reach 900 within {pg['train_wall_s']:.0f} s "
            f"({pg['env_steps']:,} env steps; stop: {pg['stop_reason']}); the ratio is at least "
            f"{pg['train_wall_s'] / cold['time_to_solve_s']:.1f}x (cold)."
        )
    if pg_sps:
        lines.append(
            f"Env steps/s ratio (robotrl incl. evaluations / Playground steady): "
            f"{_sps(cold) / pg_sps:.1f}x cold, {_sps(warm) / pg_sps:.1f}x warm."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(main()))
