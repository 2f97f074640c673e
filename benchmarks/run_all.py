"""``make bench``: every benchmark, one markdown report with the machine and the date.

``python -m benchmarks.run_all NAME ...`` runs only the named benchmarks and renders the others
from their last saved results (``benchmarks/out/<name>.json``), marked with their own date;
``--render`` runs nothing and renders them all.
"""

from __future__ import annotations

import json
import sys

from benchmarks import (
    arsq_locomotion_study,
    c_policy,
    carl_minibatch,
    critic_heads_study,
    diffusion_latency,
    dual_rl_study,
    env_throughput,
    fas_study,
    l2f_study,
    mjx_vs_native,
    noisy_regression,
    pendulum_solve,
    ppo_vs_playground,
    practice_study,
    quadrotor_vs_l2f,
    rl100_study,
    ros_latency,
    sac_updates,
    scaling,
    time_to_hover,
    wsrl_study,
)
from benchmarks.common import OUT, ROOT, machine

BENCHMARKS = (
    sac_updates,
    pendulum_solve,
    c_policy,
    env_throughput,
    quadrotor_vs_l2f,
    mjx_vs_native,
    ppo_vs_playground,
    time_to_hover,
    carl_minibatch,
    l2f_study,
    wsrl_study,
    dual_rl_study,
    rl100_study,
    diffusion_latency,
    ros_latency,
    practice_study,
    scaling,
    fas_study,
    noisy_regression,
    critic_heads_study,
    arsq_locomotion_study,
)


def _name(bench) -> str:
    return bench.__name__.rsplit(".", 1)[-1]


def main(only: list[str] | None = None, render: bool = False) -> None:
    names = [_name(b) for b in BENCHMARKS]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {names}")
    m = machine()
    sections = [
        "# robotrl benchmark report",
        "",
        f"- date: {m['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['platform']}",
        f"- load at start (1/5/15 min): {m['load_at_start']}",
        f"- robotrl side: Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "- peers: their own venvs (`benchmarks/peers/setup_peer_env.sh`, Python 3.11, CPU torch; "
        "`setup_playground_env.sh`, Python 3.12, jax 0.9.2 + brax)",
        "- protocol: `shared/design/BENCHMARKS.md` (alternating runs, medians of ratios)",
        "",
    ]
    for bench in BENCHMARKS:
        name, saved = _name(bench), OUT / f"{_name(bench)}.json"
        if render or (only and name not in only):
            if not saved.exists():
                sections += [f"## {name}", "", "(not run yet)", ""]
                continue
            data = json.loads(saved.read_text())
            date = data.get("machine", {}).get("date", "an earlier run")
            sections += [bench.report(data), "", f"(results of {date})", ""]
            continue
        sections += [bench.report(bench.main()), ""]
    path = ROOT / "benchmarks" / "REPORT.md"
    path.write_text("\n".join(sections))
    print(f"report written to {path}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main([a for a in args if a != "--render"], render="--render" in args)
