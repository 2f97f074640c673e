"""``env.reward_scale``: the training env's rewards (and reward range) are scaled, evaluation
returns stay in the task's units."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robotrl import experiment
from robotrl.algos import sac
from robotrl.config import ConfigError
from robotrl.envs import RewardScale, make_eval_env, make_training_env
from robotrl.envs.host import GymnasiumEnv, HostRewardScale
from sims.pendulum import Pendulum, PendulumConfig


def _rewards(env, steps=6):
    state = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    out = []
    for t in range(steps):
        state = step(state, jnp.full((2, 1), 0.5 * t - 1.0))
        out.append(np.asarray(state.reward))
    return np.stack(out)


def test_training_stack_scales_rewards_and_range_eval_stack_does_not():
    env = Pendulum(PendulumConfig(episode_length=4))
    plain = make_training_env(env, 2)
    scaled = make_training_env(env, 2, reward_scale=10.0)
    np.testing.assert_allclose(_rewards(scaled), 10.0 * _rewards(plain), rtol=1e-6)
    low, high = env.spec.reward_range
    assert scaled.spec.reward_range == pytest.approx((10 * low, 10 * high))
    assert make_eval_env(env, 2).spec.reward_range == env.spec.reward_range
    with pytest.raises(ValueError, match="positive"):
        RewardScale(env, 0.0)


class StagedPendulum(Pendulum):
    """A reward curriculum whose relabelled reward is the stage number."""

    @property
    def relabel_reward(self):
        return lambda batch, env_steps: jnp.broadcast_to(
            (env_steps // 40).astype(batch.reward.dtype), batch.reward.shape
        )


def test_curriculum_relabelling_is_scaled_through_the_stack():
    env = StagedPendulum()
    batch = type("Batch", (), {"reward": jnp.zeros(3)})()
    assert make_training_env(env, 2).relabel_reward is not None
    relabel = make_training_env(env, 2, reward_scale=0.1).relabel_reward
    np.testing.assert_allclose(relabel(batch, jnp.int32(120)), 0.3, rtol=1e-6)
    assert make_training_env(Pendulum(), 2, reward_scale=0.1).relabel_reward is None


def _config(scale, **env):
    return experiment.parse_config(
        {
            "env": {"name": "pendulum", "episode_length": 25, "reward_scale": scale, **env},
            "algo": {
                "name": "sac",
                "actor_hidden": [8],
                "critic_hidden": [8],
                "batch_size": 8,
                "critic": {"kind": "hl_gauss", "num_bins": 11},
            },
            "train": {
                "total_steps": 100,
                "num_envs": 2,
                "log_every": 100,
                "learning_starts": 1000,  # random actions only: both runs see the same episodes
                "eval_episodes": 2,
            },
        }
    )


def test_experiment_trains_on_scaled_rewards_and_evaluates_in_task_units():
    one, ten = experiment.Experiment(_config(1.0)), experiment.Experiment(_config(10.0))
    # The classification critic's support comes from the scaled reward range.
    support = lambda exp: np.asarray(sac.make_nets(exp.cfg.algo, exp.spec).head.support)
    np.testing.assert_allclose(support(ten), 10 * support(one), rtol=1e-5)
    results = {}
    for name, exp in (("one", one), ("ten", ten)):
        session = exp.session()
        chunk = session.run_chunk()
        results[name] = (
            float(chunk.metrics["train/episode_return"][0]),
            np.asarray(session.evaluate(7).returns),
        )
    assert results["ten"][0] == pytest.approx(10 * results["one"][0], rel=1e-5)
    np.testing.assert_allclose(results["ten"][1], results["one"][1], rtol=1e-6)


def test_bad_reward_scales_fail_clearly():
    for bad in (0, -1.0):
        with pytest.raises(ConfigError, match=r"env\.reward_scale"):
            _config(bad)
    data = {"env": {"name": "pendulum", "reward_scale": 2.0}, "train": {"dataset": "data/x"}}
    with pytest.raises(ConfigError, match=r"train\.dataset"):
        experiment.parse_config(data)


def test_host_envs_train_scaled_and_evaluate_unscaled():
    scaled = HostRewardScale(GymnasiumEnv("Pendulum-v1", 2, reward_range=(-16.3, 0.0)), 0.1)
    plain = GymnasiumEnv("Pendulum-v1", 2, reward_range=(-16.3, 0.0))
    assert scaled.spec.reward_range == pytest.approx((-1.63, 0.0))
    np.testing.assert_allclose(scaled.reset(3), plain.reset(3))
    action = np.full((2, 1), 0.7, np.float32)
    for _ in range(3):
        np.testing.assert_allclose(
            scaled.step(action).reward, 0.1 * plain.step(action).reward, rtol=1e-6
        )
    assert len(scaled.envs) == 2  # the env's own attributes pass through
    scaled.close(), plain.close()
    cfg = experiment.parse_config(
        {
            "env": {"name": "gym/Pendulum-v1", "reward_range": [-16.3, 0.0], "reward_scale": 0.1},
            "algo": {"name": "sac", "actor_hidden": [8], "critic_hidden": [8]},
            "train": {"eval_episodes": 1},
        }
    )
    exp = experiment.Experiment(cfg)
    assert isinstance(exp.host_env, HostRewardScale)
    assert exp.spec.reward_range == pytest.approx((-1.63, 0.0))
    session = exp.session()
    evaluation_env = session._make_env(1)
    assert not isinstance(evaluation_env, HostRewardScale)  # evaluation in the task's units
    evaluation_env.close()
    session.close()
