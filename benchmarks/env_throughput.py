"""Env steps per second of every registered env at batch 1, 256 and 4,096.

Functional envs are timed as training runs them: the full training stack (vmap, auto-reset,
episode limit, the "train" randomisation), random actions, inside one jitted ``lax.scan``, after
a compiling call; compile time is reported separately. Envs with a native (host) backend are
also timed through it. Each figure is the median of 3 timed calls in a fresh process per env.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from benchmarks.common import machine, ours, run_json, save

BATCHES = (1, 256, 4096)
STEPS = {1: 2000, 256: 200, 4096: 50}  # scan length per timed call, per batch size
SLOW_COMPILE = {"hopper", "halfcheetah", "walker2d", "ant"}  # MJX: batch 1 and 256 only


def measure(name: str, batch: int, backend: str) -> dict:
    """In-process measurement (called in a fresh process by ``main``)."""
    import jax
    import numpy as np

    from robotrl import registry
    from robotrl.envs import make_training_env
    from robotrl.envs.randomize import make_randomizer

    cfg_cls, make, sets = registry.ENVS[name].load()
    ranges = sets.get("train")
    steps = STEPS[batch]
    if backend == "native":
        env = registry.ENVS[name].native()(cfg_cls(), batch, ranges)
        spec = env.spec
        rng = np.random.default_rng(0)
        env.reset(0)
        actions = rng.uniform(spec.action_low, spec.action_high, (steps, batch, spec.action_dim))
        rates = []
        for _ in range(3):
            t = time.perf_counter()
            for a in actions:
                env.step(a.astype(np.float32))
            rates.append(steps * batch / (time.perf_counter() - t))
        env.close()
        return {
            "env": name,
            "backend": "native",
            "batch": batch,
            "steps_per_s": statistics.median(rates),
            "compile_s": 0.0,
        }
    base = make(cfg_cls())
    env = make_training_env(base, batch, randomize=make_randomizer(ranges) if ranges else None)
    spec = env.spec
    low, high = np.asarray(spec.action_low), np.asarray(spec.action_high)

    def run(state, key):
        def body(s, k):
            a = jax.random.uniform(k, (batch, spec.action_dim), minval=low, maxval=high)
            return env.step(s, a), None

        return jax.lax.scan(body, state, jax.random.split(key, steps))[0]

    f = jax.jit(run, donate_argnums=0)
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    t = time.perf_counter()
    state = jax.block_until_ready(f(state, jax.random.PRNGKey(1)))
    compile_s = time.perf_counter() - t
    rates = []
    for i in range(3):
        t = time.perf_counter()
        state = jax.block_until_ready(f(state, jax.random.PRNGKey(2 + i)))
        rates.append(steps * batch / (time.perf_counter() - t))
    return {
        "env": name,
        "backend": "jax",
        "batch": batch,
        "steps_per_s": statistics.median(rates),
        "compile_s": compile_s,
    }


def main() -> dict:
    from robotrl import registry

    results = []
    for name in sorted(registry.ENVS):
        backends = ["jax"] + (["native"] if registry.ENVS[name].native else [])
        for backend in backends:
            for batch in BATCHES:
                if backend == "jax" and name in SLOW_COMPILE and batch > 256:
                    continue
                print(f"env throughput: {name} ({backend}) at batch {batch}")
                results.append(
                    run_json(
                        ours("env_throughput.py", "--one", name, str(batch), backend), timeout=900
                    )
                )
    data = {"machine": machine(), "results": results}
    save("env_throughput", data)
    return data


def report(data: dict) -> str:
    lines = [
        "## Env steps per second (training stack, random actions)",
        "",
        "jax: vmapped functional env with auto-reset, time limit and the train "
        "randomisation, in a jitted scan (compile time in brackets); native: the host env's "
        "batched `step`.",
        "",
        "| env | backend | batch 1 | batch 256 | batch 4,096 |",
        "|---|---|---|---|---|",
    ]
    rows: dict[tuple[str, str], dict[int, dict]] = {}
    for r in data["results"]:
        rows.setdefault((r["env"], r["backend"]), {})[r["batch"]] = r
    for (name, backend), by_batch in sorted(rows.items()):
        cells = []
        for b in BATCHES:
            r = by_batch.get(b)
            if r is None:
                cells.append("n/a")
            elif backend == "jax":
                cells.append(f"{r['steps_per_s']:,.0f} ({r['compile_s']:.0f} s)")
            else:
                cells.append(f"{r['steps_per_s']:,.0f}")
        lines.append(f"| {name} | {backend} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=3, metavar=("ENV", "BATCH", "BACKEND"))
    args = parser.parse_args()
    if args.one:
        name, batch, backend = args.one
        print(json.dumps(measure(name, int(batch), backend)))
        sys.exit(0)
    print(report(main()))
