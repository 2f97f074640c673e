"""Prints the GFLOP/s of a jitted, lax.scan-ned chain of [B, h] x [h, h] matmuls (+ tanh).

Usage: python benchmarks/matmul_ceiling.py HIDDEN BATCH  -> one JSON line.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    import jax
    import jax.numpy as jnp

    hidden, batch, layers = int(sys.argv[1]), int(sys.argv[2]), 200

    def chain(ws, x):
        return jax.lax.scan(lambda x, w: (jnp.tanh(x @ w), None), x, ws)[0]

    ws, x = jnp.full((layers, hidden, hidden), 0.01), jnp.ones((batch, hidden))
    f = jax.jit(chain)
    f(ws, x).block_until_ready()
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        f(ws, x).block_until_ready()
        flops = 2 * hidden * hidden * batch * layers
        best = max(best, flops / (time.perf_counter() - t) / 1e9)
    print(
        json.dumps(
            {"benchmark": "matmul_ceiling", "hidden": hidden, "batch": batch, "gflops": best}
        )
    )


if __name__ == "__main__":
    main()
