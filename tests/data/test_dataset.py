"""Offline datasets: Monte-Carlo returns, episode cutting, the on-disk format (memory-mapped,
checked on load), mixtures, and collection from random and trained policies."""

import json

import numpy as np
import pytest
import yaml

from robotrl import cli
from robotrl.data import (
    DatasetError,
    check_fits,
    collect_from,
    from_streams,
    load,
    mc_returns,
    mix,
    save,
)
from robotrl.types import Transition
from tests.test_cli import TINY, assert_one_error_line


def test_mc_returns_restart_at_every_episode_end():
    reward = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    done = np.array([False, False, True, False, True])
    got = mc_returns(reward, done, gamma=0.5)
    np.testing.assert_allclose(got, [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3, 10 + 0.5 * 20, 20])


def streams(steps=6, envs=2, dict_obs=True):
    """[T, E] streams: env 0 ends an episode at t=2 (terminated), env 1 at t=3 (truncated)."""
    obs = np.arange(steps * envs * 3, dtype=np.float32).reshape(steps, envs, 3)
    terminated = np.zeros((steps, envs), bool)
    truncated = np.zeros((steps, envs), bool)
    terminated[2, 0] = True
    truncated[3, 1] = True
    wrap = (
        (lambda x: {"state": x, "privileged_state": x[..., :2] * 2}) if dict_obs else (lambda x: x)
    )
    return Transition(
        obs=wrap(obs),
        action=np.ones((steps, envs, 2), np.float32),
        reward=np.ones((steps, envs), np.float32),
        terminated=terminated,
        truncated=truncated,
        next_obs=wrap(obs + 0.5),
    )


def test_streams_become_contiguous_episodes_with_cut_tails_truncated():
    d = from_streams(streams(), gamma=1.0, meta={"env_name": "x"})
    t = d.transitions
    # env 0's six steps first, then env 1's; each stream keeps its time order
    first = [0, 6, 12, 18, 24, 30, 3, 9, 15, 21, 27, 33]
    np.testing.assert_array_equal(t.obs["state"][:, 0], first)
    np.testing.assert_array_equal(np.flatnonzero(t.terminated), [2])
    # env 1's time limit at t=3, and both streams' unfinished tails, cut by the collection
    np.testing.assert_array_equal(np.flatnonzero(t.truncated), [5, 9, 11])
    # returns to go restart after every end (all rewards 1, gamma 1)
    np.testing.assert_array_equal(t.extras["mc_return"], [3, 2, 1, 3, 2, 1, 4, 3, 2, 1, 2, 1])
    assert d.meta["num_episodes"] == 4 and d.meta["cut_episodes"] == 2
    # the behaviour's return counts only the episodes the env ended (lengths 3 and 4)
    assert d.meta["behaviour_return_mean"] == 3.5 and d.meta["behaviour_episodes"] == 2
    np.testing.assert_array_equal(d.episode_returns(), [3, 3, 4, 2])


def test_save_load_round_trip_is_memory_mapped(tmp_path):
    d = from_streams(streams(), gamma=0.9, meta={"env_name": "x"})
    save(d, tmp_path / "ds")
    back = load(tmp_path / "ds")
    assert isinstance(back.transitions.obs["state"], np.memmap)
    for a, b in zip(_leaves(d.transitions), _leaves(back.transitions), strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.meta["gamma"] == 0.9 and len(back) == 12
    with pytest.raises(DatasetError, match="not empty"):
        save(d, tmp_path / "ds")


def _leaves(t):
    import jax

    return jax.tree.leaves(t)


def test_bad_datasets_fail_with_a_clear_message(tmp_path):
    save(from_streams(streams(), gamma=0.9, meta={}), tmp_path / "ds")
    with pytest.raises(DatasetError, match="is not a dataset"):
        load(tmp_path)
    # a truncated array (a copy cut short)
    reward = tmp_path / "ds" / "reward.npy"
    reward.write_bytes(reward.read_bytes()[:-8])
    with pytest.raises(DatasetError, match=r"reward.npy is truncated or corrupt"):
        load(tmp_path / "ds")
    save(from_streams(streams(), gamma=0.9, meta={}), tmp_path / "ds2")
    (tmp_path / "ds2" / "action.npy").unlink()
    with pytest.raises(DatasetError, match=r"action\.npy is missing"):
        load(tmp_path / "ds2")
    save(from_streams(streams(), gamma=0.9, meta={}), tmp_path / "ds3")
    meta = json.loads((tmp_path / "ds3" / "dataset.json").read_text())
    (tmp_path / "ds3" / "dataset.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(DatasetError, match="version 99"):
        load(tmp_path / "ds3")


def test_a_dataset_for_another_env_is_refused(tmp_path):
    from sims.pendulum import Pendulum
    from sims.quadrotor import Quadrotor

    flat = from_streams(streams(dict_obs=False), gamma=0.9, meta={})
    with pytest.raises(DatasetError, match=r"actions are \(2,\), env pendulum has \(1,\)"):
        check_fits(flat, Pendulum().spec)
    with pytest.raises(DatasetError, match="observations are"):
        check_fits(flat, Quadrotor().spec)


def test_mix_concatenates_episodes_and_weights_the_behaviour_return():
    a = from_streams(streams(), gamma=1.0, meta={"env_name": "x"})
    s = streams()
    b = from_streams(s._replace(reward=s.reward * 3), gamma=1.0, meta={"env_name": "x"})
    m = mix([a, b])
    assert len(m) == 24 and m.meta["num_episodes"] == 8
    assert m.meta["behaviour_return_mean"] == pytest.approx((3.5 * 2 + 10.5 * 2) / 4)
    np.testing.assert_array_equal(m.episode_returns(), [3, 3, 4, 2, 9, 9, 12, 6])
    with pytest.raises(DatasetError, match="different gammas"):
        mix([a, from_streams(streams(), gamma=0.5, meta={})])


@pytest.mark.parametrize("env", ["pendulum", "hopper"])
def test_random_collection_functional_and_host_envs(env):
    d = collect_from(env, transitions=600, num_envs=4, seed=1)
    spec_dim = {"pendulum": 3, "hopper": 11}[env]
    assert d.transitions.obs.shape == (600, spec_dim) and len(d) == 600
    assert d.meta["behaviour"]["policy"] == "random" and d.meta["env_name"] == env
    done = d.done
    # every stream ends its last row: 4 streams, so at least 4 episode ends
    assert done.sum() >= 4 and done[-1]
    # next_obs of a non-final step is the following obs of the same stream
    inner = np.flatnonzero(~done[:-1])
    np.testing.assert_allclose(d.transitions.next_obs[inner], d.transitions.obs[inner + 1])


def test_collect_from_a_trained_run_with_the_cli(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    assert cli.main(["train", str(cfg), "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "medium"
    args = ["dataset", "collect", str(run), "--out", str(out), "--transitions", "800"]
    code = cli.main([*args, "--step", "400", "--num-envs", "2"])
    assert code == 0
    d = load(out)
    assert d.meta["behaviour"]["checkpoint_step"] == 400 and d.meta["behaviour"]["algo"] == "sac"
    assert len(d) == 800 and d.meta["behaviour_return_mean"] < 0  # pendulum returns
    capsys.readouterr()
    code = cli.main(["dataset", "collect", "pendulum", "--out", str(out), "--transitions", "64"])
    assert_one_error_line(code, capsys.readouterr().err, "not empty")
    code = cli.main(["dataset", "info", str(tmp_path)])
    assert_one_error_line(code, capsys.readouterr().err, "is not a dataset")


@pytest.mark.parametrize("env", ["pendulum", "quadrotor"])
def test_minari_round_trip(tmp_path, env):
    """Written as a Minari dataset and read back, a dataset is the same, dict observations
    included (Minari's episodes carry N + 1 observations)."""
    import jax
    import minari

    from robotrl.data.minari_io import from_minari, to_minari

    d = collect_from(env, transitions=600, num_envs=4)
    to_minari(d, f"robotrl/{env}-random-v0", root=tmp_path)
    with minari_root(tmp_path):
        assert (
            minari.load_dataset(f"robotrl/{env}-random-v0").total_episodes == d.meta["num_episodes"]
        )
    back = from_minari(f"robotrl/{env}-random-v0", root=tmp_path, gamma=0.99)
    for a, b in zip(jax.tree.leaves(d.transitions), jax.tree.leaves(back.transitions), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-6)
    with pytest.raises(DatasetError, match="Minari dataset 'robotrl/none-v0'"):
        from_minari("robotrl/none-v0", root=tmp_path)


def minari_root(path):
    from robotrl.data.minari_io import _root

    return _root(path)
