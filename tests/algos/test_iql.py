"""IQL and its value losses (IQL's expectile, Dual RL's f-DVL chi-square and total variation,
XQL's Gumbel); offline training on a generated dataset beats the behaviour policy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml

from robotrl import cli
from robotrl.algos.iql import IQLConfig, value_loss
from robotrl.data import load
from robotrl.runs import read_metrics
from tests.test_cli import assert_one_error_line


def test_value_losses_against_their_formulas():
    x = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    got = value_loss(x, IQLConfig(value_loss="expectile", expectile=0.8))
    np.testing.assert_allclose(got, [0.2 * 4, 0.2 * 0.25, 0, 0.8 * 0.25, 0.8 * 4], rtol=1e-6)
    a = 0.7
    chi2 = value_loss(x, IQLConfig(value_loss="chi2", alpha=a))
    want = [a * max(v + v * v / 4, 0) - (1 - a) * v for v in x.tolist()]
    np.testing.assert_allclose(chi2, want, rtol=1e-6)
    tv = value_loss(x, IQLConfig(value_loss="tv", alpha=a))
    np.testing.assert_allclose(tv, [a * max(v, 0) - (1 - a) * v for v in x.tolist()], rtol=1e-6)
    g = value_loss(x, IQLConfig(value_loss="gumbel", gumbel_beta=0.5))
    np.testing.assert_allclose(g, np.exp(x / 0.5) - x / 0.5 - 1, rtol=1e-6)
    with pytest.raises(ValueError, match="value_loss must be one of"):
        IQLConfig(value_loss="l2")


@pytest.mark.parametrize("tau", [0.5, 0.9])
def test_expectile_value_converges_to_the_expectile(tau):
    """Minimising the expectile loss over a scalar V gives the tau-expectile of the Q samples
    (the mean at 0.5, an upper one at 0.9): the defining property of IQL's value."""
    q = jax.random.normal(jax.random.PRNGKey(0), (4096,)) * 2.0 + 1.0
    cfg = IQLConfig(value_loss="expectile", expectile=tau)
    loss = lambda v: value_loss(q - v, cfg).mean()
    opt = optax.adam(0.05)
    v, state = jnp.zeros(()), opt.init(jnp.zeros(()))
    for _ in range(2000):
        updates, state = opt.update(jax.grad(loss)(v), state)
        v = v + updates
    # the expectile solves tau E[(q - v)+] = (1 - tau) E[(v - q)+]
    qs = np.asarray(q)
    grid = np.linspace(qs.min(), qs.max(), 20001)
    balance = [
        abs(tau * np.clip(qs - g, 0, None).mean() - (1 - tau) * np.clip(g - qs, 0, None).mean())
        for g in grid
    ]
    expectile = grid[int(np.argmin(balance))]
    assert float(v) == pytest.approx(expectile, abs=0.01)
    if tau == 0.5:
        assert float(v) == pytest.approx(qs.mean(), abs=0.01)


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def medium_pendulum(tmp_path_factory):
    """A 'medium' dataset: SAC's pendulum policy after 3,000 steps, acting stochastically."""
    root = tmp_path_factory.mktemp("offline")
    sac = {
        "name": "sac_medium",
        "env": {"name": "pendulum"},
        "algo": {
            "name": "sac",
            "actor_hidden": [64, 64],
            "critic_hidden": [64, 64],
            "batch_size": 128,
            "actor_lr": 1e-3,
            "critic_lr": 1e-3,
            "temp_lr": 1e-3,
        },
        "train": {
            "total_steps": 3000,
            "learning_starts": 500,
            "log_every": 1000,
            "eval_every": 3000,
            "checkpoint_every": 1000,
        },
    }
    run = root / "sac"
    config = write(root / "sac.yaml", sac)
    assert cli.main(["train", str(config), "--out", str(run), "--quiet"]) == 0
    out = root / "medium"
    args = ["dataset", "collect", str(run), "--out", str(out), "--transitions", "50000"]
    assert cli.main([*args, "--num-envs", "10", "--seed", "3"]) == 0
    return root, out


def iql_config(dataset, **algo):
    return {
        "name": "iql_pendulum",
        "env": {"name": "pendulum"},
        "algo": {"name": "iql", "actor_hidden": [64, 64], "critic_hidden": [64, 64], **algo},
        "train": {
            "total_steps": 40000,
            "log_every": 2000,
            "eval_every": 20000,
            "eval_episodes": 20,
            "checkpoint_every": 0,
            "dataset": str(dataset),
        },
    }


@pytest.mark.slow
def test_iql_beats_the_behaviour_policy_of_a_medium_dataset(medium_pendulum):
    root, dataset = medium_pendulum
    behaviour = load(dataset).meta["behaviour_return_mean"]
    assert -900 < behaviour < -250  # a medium policy: better than random (~-1300), not solved
    run = root / "iql"
    assert (
        cli.main(
            [
                "train",
                str(write(root / "iql.yaml", iql_config(dataset))),
                "--out",
                str(run),
                "--quiet",
            ]
        )
        == 0
    )
    rows = read_metrics(run / "metrics.csv")
    # offline: steps are gradient steps, every row updated, no env episodes collected
    assert [int(r["step"]) for r in rows] == list(range(2000, 42000, 2000))
    assert all(np.isnan(r["train/episode_return"]) for r in rows)
    final = rows[-1]["eval/return_mean"]
    assert final > behaviour + 100, (final, behaviour)


def test_offline_config_errors_are_one_line(medium_pendulum, tmp_path, capsys):
    _, dataset = medium_pendulum
    bad_env = iql_config(dataset)
    bad_env["env"] = {"name": "quadrotor"}
    code = cli.main(
        ["train", str(write(tmp_path / "a.yaml", bad_env)), "--out", str(tmp_path / "a"), "--quiet"]
    )
    assert_one_error_line(code, capsys.readouterr().err, "observations are (3,), env quadrotor")
    missing = iql_config(tmp_path / "nowhere")
    code = cli.main(
        ["train", str(write(tmp_path / "b.yaml", missing)), "--out", str(tmp_path / "b"), "--quiet"]
    )
    assert_one_error_line(code, capsys.readouterr().err, "is not a dataset")
    many_envs = iql_config(dataset)
    many_envs["train"]["num_envs"] = 4
    code = cli.main(
        [
            "train",
            str(write(tmp_path / "c.yaml", many_envs)),
            "--out",
            str(tmp_path / "c"),
            "--quiet",
        ]
    )
    assert_one_error_line(code, capsys.readouterr().err, "num_envs must be 1")
