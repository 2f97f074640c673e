"""Host adapters: gymnasium and dm_control behind the batch semantics of the functional envs."""

import numpy as np
import pytest

from robotrl.envs.host import DMControlEnv, GymnasiumEnv


def test_gymnasium_adapter_spec_and_truncation():
    env = GymnasiumEnv("Pendulum-v1", 3, max_episode_steps=7)
    spec = env.spec
    assert spec.obs.shape == (3,) and spec.action_low == (-2.0,) and spec.action_high == (2.0,)
    assert spec.ctrl_dt == pytest.approx(0.05) and spec.episode_length == 7
    obs = env.reset(seed=0)
    assert obs.shape == (3, 3) and obs.dtype == np.float32
    for t in range(7):
        out = env.step(np.zeros((3, 1), np.float32))
        assert out.reward.shape == (3,) and not out.terminated.any()
        if t < 6:
            np.testing.assert_allclose(out.obs, out.final_obs)
    assert out.truncated.all()
    # After the time limit the batch holds fresh reset observations, final_obs the last ones.
    assert not np.allclose(out.obs, out.final_obs)
    env.close()


def test_gymnasium_adapter_reports_termination_separately():
    env = GymnasiumEnv("MountainCarContinuous-v0", 1)
    env.reset(seed=0)
    env.envs[0].unwrapped.state = np.array([0.6, 0.06])  # past the goal at 0.45 next step
    out = env.step(np.ones((1, 1), np.float32))
    assert out.terminated.all() and not out.truncated.any()
    env.close()


def test_gymnasium_rejects_non_box_spaces():
    with pytest.raises(ValueError, match="Box"):
        GymnasiumEnv("CartPole-v1", 1)


def test_dm_control_adapter_flattens_and_truncates():
    env = DMControlEnv("cartpole", "swingup", 2, time_limit=0.1)  # 10 control steps of 0.01 s
    spec = env.spec
    names = [f.name for f in spec.obs_layout]
    assert names == ["position", "velocity"] and spec.obs.shape == (5,)
    assert spec.action_low == (-1.0,) and spec.episode_length == 10
    obs = env.reset(seed=3)
    assert obs.shape == (2, 5)
    for _ in range(10):
        out = env.step(np.zeros((2, 1), np.float32))
    assert out.truncated.all() and not out.terminated.any()
    assert np.all((out.reward >= 0) & (out.reward <= 1))
    env.close()
