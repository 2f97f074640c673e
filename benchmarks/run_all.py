"""``make bench``: every benchmark, one markdown report with the machine and the date."""

from __future__ import annotations

from benchmarks import (
    c_policy,
    env_throughput,
    mjx_vs_native,
    pendulum_solve,
    ppo_vs_playground,
    quadrotor_vs_l2f,
    sac_updates,
)
from benchmarks.common import ROOT, machine

BENCHMARKS = (
    sac_updates,
    pendulum_solve,
    c_policy,
    env_throughput,
    quadrotor_vs_l2f,
    mjx_vs_native,
    ppo_vs_playground,
)


def main() -> None:
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
        sections += [bench.report(bench.main()), ""]
    path = ROOT / "benchmarks" / "REPORT.md"
    path.write_text("\n".join(sections))
    print(f"report written to {path}")


if __name__ == "__main__":
    main()
