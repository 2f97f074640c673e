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


def two_stage_config(root, **pretrain_train):
    """A preset with a Cal-QL pretraining stage on the random dataset, then the fine-tune."""
    cfg = finetune_config(root, total_steps=600, learning_starts=300, random_warmup=False)
    del cfg["train"]["init_from"]
    cfg["pretrain"] = {
        "algo": {"name": "cql", "calql": True, **NETS},
        "train": {
            "dataset": str(root / "random"),
            "total_steps": 300,
            "log_every": 100,
            "eval_every": 0,
            "eval_episodes": 5,
            "checkpoint_every": 0,
            **pretrain_train,
        },
    }
    return cfg


def test_one_preset_pretrains_offline_then_fine_tunes_from_it(pretrained, tmp_path):
    """``robotrl train`` on a preset with a ``pretrain`` section: an offline Cal-QL run in
    OUT/pretrain, then the fine-tune in OUT, starting from that run's actor (the warmup does
    not change it, so after learning_starts steps it is still the pretrained one)."""
    cfg = two_stage_config(pretrained)
    cfg["train"].update(total_steps=300, log_every=300, checkpoint_every=300)
    out = tmp_path / "wsrl"
    path = write(tmp_path / "wsrl.yaml", cfg)
    assert cli.main(["train", str(path), "--out", str(out), "--quiet"]) == 0
    pre_rows = read_metrics(out / "pretrain" / "metrics.csv")
    assert pre_rows[-1]["step"] == 300 and np.isfinite(pre_rows[-1]["train/critic_loss"])
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["init_from"] == str(
        out / "pretrain"
    )
    assert yaml.safe_load((out / "pretrain" / "config.yaml").read_text())["algo"]["name"] == "cql"
    pre = experiment.restore_run(out / "pretrain").algo_state.actor_params
    ft = experiment.restore_run(out).algo_state.actor_params
    for a, b in zip(jax.tree.leaves(pre), jax.tree.leaves(ft), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "change, needles",
    [
        (lambda c: c["pretrain"]["train"].pop("dataset"), ("pretrain.train.dataset",)),
        (lambda c: c["pretrain"].update(env={"name": "pendulum"}), ("pretrain.env",)),
        (lambda c: c["train"].update(init_from="runs/x"), ("train.init_from",)),
        (lambda c: c["pretrain"]["algo"].update(bogus=1), ("bogus",)),
    ],
)
def test_bad_two_stage_presets_fail_before_training(pretrained, tmp_path, capsys, change, needles):
    cfg = two_stage_config(pretrained)
    change(cfg)
    out = tmp_path / "bad"
    code = cli.main(["train", str(write(tmp_path / "bad.yaml", cfg)), "--out", str(out), "--quiet"])
    assert_one_error_line(code, capsys.readouterr().err, *needles)
    assert not out.exists()


def test_two_stage_into_an_existing_run_fails_before_pretraining(pretrained, tmp_path, capsys):
    path = write(tmp_path / "wsrl.yaml", two_stage_config(pretrained))
    code = cli.main(["train", str(path), "--out", str(pretrained / "pre"), "--quiet"])
    assert_one_error_line(code, capsys.readouterr().err, "already holds a run")
    assert not (pretrained / "pre" / "pretrain").exists()


def test_every_shipped_preset_validates():
    """Every preset in configs/ parses, both stages of the two-stage ones, whose fine-tune
    networks match the pretraining's (same sizes, critics and LayerNorm)."""
    from pathlib import Path

    from robotrl.config import load_yaml
    from robotrl.train import finetune

    presets = sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml"))
    assert len(presets) >= 14
    nets = ("actor_hidden", "critic_hidden", "activation", "num_critics", "critic_layer_norm")
    for path in presets:
        pre, ft = finetune.split_stages(load_yaml(path))
        ft_cfg = experiment.parse_config(ft)
        if pre is not None:
            pre_cfg = experiment.parse_config(pre)
            assert pre_cfg.train.offline, path
            for key in (*nets, "privileged_critic"):
                assert getattr(pre_cfg.algo, key) == getattr(ft_cfg.algo, key), (path, key)
