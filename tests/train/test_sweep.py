"""``robotrl sweep``: vmapped points equal their runs alone; the rest falls back to processes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from robotrl import cli
from robotrl.train import sweep

TINY = {
    "name": "tiny",
    "env": {"name": "pendulum"},
    "algo": {"name": "sac", "actor_hidden": [32, 32], "critic_hidden": [32, 32], "batch_size": 64},
    "train": {
        "total_steps": 1000,
        "learning_starts": 200,
        "log_every": 500,
        "eval_every": 1000,
        "eval_episodes": 4,
        "checkpoint_every": 1000,
    },
}


@pytest.fixture
def preset(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _last(run: Path) -> dict[str, float]:
    with (run / "metrics.csv").open() as f:
        return {k: float(v) for k, v in list(csv.DictReader(f))[-1].items() if v}


def test_plan_vmaps_float_algorithm_fields_only():
    grid = sweep.parse_grid(["algo.actor_lr=1e-4,3e-4", "algo.batch_size=32,64", "seed=0"])
    assert grid["algo.actor_lr"] == [1e-4, 3e-4]  # YAML 1.1 reads 1e-4 as a string
    groups = sweep.plan(TINY, grid)
    assert [g.fixed for g in groups] == [
        {"algo.batch_size": 32, "seed": 0},
        {"algo.batch_size": 64, "seed": 0},
    ]
    assert all(g.swept == [{"algo.actor_lr": 1e-4}, {"algo.actor_lr": 3e-4}] for g in groups)
    with pytest.raises(sweep.ConfigError, match="must look like"):
        sweep.parse_grid(["algo.actor_lr"])


def test_vmapped_points_equal_their_runs_alone(preset, tmp_path, capsys):
    out = tmp_path / "sweep"
    grid = ["--grid", "algo.actor_lr=1e-4,1e-3"]
    assert (
        cli.main(["sweep", str(preset), "--seeds", "2", *grid, "--out", str(out), "--quiet"]) == 0
    )
    summary = json.loads((out / "sweep.json").read_text())
    assert [g["how"] for g in summary["groups"]] == ["vmapped"]
    point = out / "actor_lr=0.001"
    assert yaml.safe_load((point / "config.yaml").read_text())["train"]["num_seeds"] == 2
    alone = tmp_path / "alone"
    sets = ["--set", "algo.actor_lr=0.001", "--set", "train.num_seeds=2"]
    assert cli.main(["train", str(preset), *sets, "--out", str(alone), "--quiet"]) == 0
    swept, single = _last(point), _last(alone)
    # Same seeds, same updates; the vmapped program sums in another order (1e-5 here), and a
    # 200-step pendulum episode amplifies that in the returns (0.2% here).
    for key in ("train/critic_loss", "train/actor_loss"):
        assert swept[key] == pytest.approx(single[key], rel=1e-3), key
    for key in ("eval/return/seed0", "eval/return/seed1"):
        assert swept[key] == pytest.approx(single[key], rel=1e-2), key
    other = _last(out / "actor_lr=0.0001")
    assert other["train/actor_loss"] != pytest.approx(swept["train/actor_loss"], rel=1e-3)
    # Each point is a whole run: its checkpoint evaluates like any run's.
    capsys.readouterr()
    assert cli.main(["eval", str(point), "--episodes", "2"]) == 0
    assert "return" in capsys.readouterr().out


@pytest.mark.slow
def test_untraceable_values_fall_back_to_processes(preset, tmp_path):
    # weight_decay is a float field, but the optimiser branches on it in Python (adam or adamw):
    # JAX cannot trace it, so each point trains in its own process.
    out = tmp_path / "sweep"
    grid = ["--grid", "algo.weight_decay=0.0,0.01"]
    sets = ["--set", "train.total_steps=500"]
    assert cli.main(["sweep", str(preset), *grid, *sets, "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert [g["how"] for g in summary["groups"]] == ["processes"]
    for name in ("weight_decay=0.0", "weight_decay=0.01"):
        assert _last(out / name)["step"] == 500


def test_bad_grid_is_one_line_and_trains_nothing(preset, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = cli.main(["sweep", str(preset), "--grid", "algo.actor_lrr=1,2", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "algo.actor_lrr" in err[0]
    assert not out.exists()
