"""Offline-to-online fine-tuning switches (WSRL and its baselines): start from a pretrained
run, warm up with the pretrained policy instead of random actions, and retain (or not) the
offline data in the batches."""

import jax
import numpy as np
import pytest
import yaml

from robotrl import cli, experiment
from robotrl.config import ConfigError
from robotrl.runs import read_metrics
from tests.test_cli import assert_one_error_line

NETS = {"actor_hidden": [32, 32], "critic_hidden": [32, 32], "batch_size": 64}


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A SAC pendulum policy after 4,000 steps (about -150 to -400 per episode; random actions
    score about -1,200) and a small random-action dataset."""
    root = tmp_path_factory.mktemp("finetune")
    cfg = {
        "name": "pre",
        "env": {"name": "pendulum"},
        "algo": {"name": "sac", **NETS, "actor_lr": 1e-3, "critic_lr": 1e-3, "temp_lr": 1e-3},
        "train": {
            "total_steps": 4000,
            "learning_starts": 500,
            "log_every": 1000,
            "eval_every": 4000,
            "checkpoint_every": 4000,
        },
    }
    assert (
        cli.main(
            ["train", str(write(root / "pre.yaml", cfg)), "--out", str(root / "pre"), "--quiet"]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "dataset",
                "collect",
                "pendulum",
                "--out",
                str(root / "random"),
                "--transitions",
                "4000",
            ]
        )
        == 0
    )
    return root


def finetune_config(root, **train):
    return {
        "name": "ft",
        "env": {"name": "pendulum"},
        "algo": {"name": "sac", **NETS},
        "train": {
            "total_steps": 2000,
            "learning_starts": 2000,
            "log_every": 1000,
            "eval_every": 0,
            "eval_episodes": 5,
            "checkpoint_every": 0,
            "init_from": str(root / "pre"),
            **train,
        },
    }


def test_warmup_acts_with_the_pretrained_policy_and_does_not_learn(pretrained, tmp_path):
    """During warmup no gradient step runs and the episodes are the pretrained policy's
    (returns far above random actions'); the default random warmup scores like random."""
    returns = {}
    for random_warmup in (False, True):
        out = tmp_path / f"ft-{random_warmup}"
        cfg = finetune_config(pretrained, random_warmup=random_warmup)
        path = write(tmp_path / f"ft-{random_warmup}.yaml", cfg)
        assert cli.main(["train", str(path), "--out", str(out), "--quiet"]) == 0
        rows = read_metrics(out / "metrics.csv")
        assert all(np.isnan(r.get("train/critic_loss", np.nan)) for r in rows)  # no updates
        returns[random_warmup] = np.nanmean([r["train/episode_return"] for r in rows])
    assert returns[False] > -600 and returns[True] < -900, returns
    # and the starting point is the pretrained actor, unchanged by the warmup
    pre = experiment.restore_run(pretrained / "pre").algo_state.actor_params
    ft = experiment.restore_run(tmp_path / "ft-False").algo_state.actor_params
    for a, b in zip(jax.tree.leaves(pre), jax.tree.leaves(ft), strict=True):
        np.testing.assert_array_equal(a, b)


def test_offline_data_is_sampled_only_when_retained(pretrained):
    """WSRL proper holds no dataset at all, so no batch can contain offline data; the
    RLPD-style baseline mixes it in at ``offline_fraction``."""
    base = experiment.parse_config(finetune_config(pretrained))
    session = experiment.Experiment(base).session()
    assert session._data is None
    retained = experiment.parse_config(
        finetune_config(pretrained, dataset=str(pretrained / "random"), offline_fraction=0.5)
    )
    session = experiment.Experiment(retained).session()
    assert session._data is not None and int(session._data.size) == 4000
    session.run_chunk()  # mixing compiles and runs


def test_mismatched_pretrained_networks_are_one_line(pretrained, tmp_path, capsys):
    cfg = finetune_config(pretrained)
    cfg["algo"] = {**cfg["algo"], "critic_hidden": [64, 64]}
    code = cli.main(
        ["train", str(write(tmp_path / "bad.yaml", cfg)), "--out", str(tmp_path / "bad"), "--quiet"]
    )
    assert_one_error_line(code, capsys.readouterr().err, "train.init_from", "do not match")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="offline_fraction"):
        experiment.parse_config(finetune_config(pretrained, offline_fraction=1.5))
