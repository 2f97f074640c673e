"""``make demo``: train SAC on the pure-JAX pendulum, evaluate it, plot, say where the run is."""

from __future__ import annotations

import sys
from pathlib import Path

from robotrl import cli

PRESET = Path(__file__).resolve().parents[1] / "configs" / "sac_pendulum.yaml"


def main() -> int:
    print(f"robotrl demo: SAC on the JAX pendulum ({PRESET.name}); compiling takes a few seconds")
    out = Path("runs") / "demo-sac_pendulum"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    code = cli.main(["train", str(PRESET), "--out", str(out)])
    if code != 0:
        return code
    code = cli.main(["eval", str(out), "--episodes", "20"])
    if code == 0:
        print(f"\nDone. Run directory: {out.resolve()}")
        print(f"  learning curve: {out.resolve() / 'learning_curve.png'}")
        print(f"  metrics:        {out.resolve() / 'metrics.csv'}")
        print(f"  resume:         robotrl train --resume {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
