"""ARSQ's signature on the 2-D one-step bandit (``sims/bandit``): P(optimal) over seeds for ARSQ
and for the factorised (CQN-style) baseline, both trained online with the suboptimal
demonstrations mixed into every batch.

    python -m benchmarks.arsq_bandit                          # both variants, 10 seeds each
    python -m benchmarks.arsq_bandit dataset data/bandit2d-demos   # just write the dataset

A seed "picks the optimum" when its deterministic policy's action lands in the r = 1 quadrant.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from robotrl import data, experiment
from sims.bandit import demonstrations

PRESET = "configs/arsq_bandit2d.yaml"


def write_dataset(path: str | Path, count: int = 10_000, seed: int = 0) -> Path:
    """The bandit's demonstrations (``sims.bandit.DEMO_MIX``) as a dataset folder that
    ``train.dataset`` reads."""
    raw = demonstrations(count, seed)
    streams = raw._replace(**{k: getattr(raw, k)[:, None] for k in raw._fields if k != "extras"})
    meta = {
        "env_name": "bandit2d",
        "env": {"name": "bandit2d"},
        "behaviour": {"policy": "sims.bandit.demonstrations", "seed": seed},
    }
    return data.save(data.from_streams(streams, 0.99, meta), path)


def train_seeds(
    dataset: str | Path, factorized: bool, seeds: int = 10, overrides: tuple[str, ...] = ()
) -> dict:
    """Trains ``seeds`` vmapped seeds of the preset (one program) and evaluates each seed's
    deterministic policy; returns per-seed returns, P(optimal) and the wall time."""
    cfg = experiment.load_config(
        PRESET,
        [
            f"train.dataset={dataset}",
            f"train.num_seeds={seeds}",
            f"algo.factorized={str(factorized).lower()}",
            *overrides,
        ],
    )
    t0 = time.perf_counter()
    session = experiment.Experiment(cfg).session()
    while session.env_steps() < cfg.train.total_steps:
        session.run_chunk()
    returns = session.evaluate(seed=123).returns.mean(axis=-1)  # [S]
    optimal = returns > 0.5 * (1.0 + 0.1)  # above the common mode's 0.1: the r = 1 quadrant
    return {
        "factorized": factorized,
        "returns": returns.round(3).tolist(),
        "p_optimal": float(optimal.mean()),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="study", choices=["study", "dataset"])
    parser.add_argument("out", nargs="?", default=None, help="dataset folder (dataset command)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--transitions", type=int, default=10_000)
    parser.add_argument("--set", action="append", default=[], help="preset overrides")
    args = parser.parse_args()
    if args.command == "dataset":
        print(write_dataset(args.out or "data/bandit2d-demos", args.transitions))
        return
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_dataset(Path(tmp) / "demos", args.transitions)
        mix = data.load(dataset).transitions
        print(f"demonstrations: {len(mix.reward)}, mean reward {np.mean(mix.reward):.3f}")
        for factorized in (False, True):
            result = train_seeds(dataset, factorized, args.seeds, tuple(args.set))
            print(json.dumps(result))


if __name__ == "__main__":
    main()
