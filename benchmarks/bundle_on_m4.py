"""Any policy bundle as C, against its numpy program: the host build on ``--host N`` random
observations, the emulated Cortex-M4 (self-test, agreement, instructions per step) on the first
``--m4 N`` of them, and the flash/RAM of the float32 and int8 objects.

    robotrl export RUN                     # writes RUN/export/policy.rlb
    python -m benchmarks.bundle_on_m4 RUN/export/policy.rlb

Observations are standard normal times ``--scale`` in the bundle's own units (seed 0). Needs the
toolchain from ``firmware_export/install_toolchain.sh``. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", help="a .rlb file")
    p.add_argument("--host", type=int, default=10_000, help="observations on the host C")
    p.add_argument("--m4", type=int, default=64, help="observations on the emulated M4")
    p.add_argument("--scale", type=float, default=2.0)
    args = p.parse_args(argv)

    from firmware_export import CPolicy, footprint, run_on_cortex_m4
    from policies.bundle import PolicyBundle

    bundle = PolicyBundle.load(args.bundle)
    rng = np.random.default_rng(0)
    obs = (rng.normal(size=(args.host, bundle.obs_dim)) * args.scale).astype(np.float32)
    expect = bundle.act(obs)
    work = Path(tempfile.mkdtemp(prefix="bundle-m4-"))
    host = CPolicy.build(bundle, work / "host")
    m4 = run_on_cortex_m4(bundle, obs[: args.m4], work / "m4")
    sizes = {q: footprint(bundle, work / f"size_{q}", quantize=q) for q in ("float32", "int8")}
    result = {
        "bundle": args.bundle,
        "host_self_test_failures": host.self_test(),
        "host_observations": args.host,
        "host_max_abs_difference": float(np.abs(host.act(obs) - expect).max()),
        "m4_self_test_failures": m4.result.self_test_failures,
        "m4_observations": args.m4,
        "m4_max_abs_difference": float(np.abs(m4.result.actions - expect[: args.m4]).max()),
        "m4_instructions_per_step": m4.instructions_per_step,
        **{f"flash_bytes_{q}": s["object_no_self_test"]["flash"] for q, s in sizes.items()},
        "ram_bytes": sizes["float32"]["object_no_self_test"]["ram"],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
