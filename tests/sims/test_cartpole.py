"""dm_control's Cartpole Balance on MuJoCo (``cartpole_balance``): the native backend against
dm_control's own env, MJX against native, the env contract, and PPO balancing it (slow)."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robotrl.envs import make_training_env
from robotrl.envs.randomize import make_randomizer
from sims.locomotion import PARAMETER_SETS, LocomotionConfig, MJXLocomotion, NativeLocomotionEnv
from tests.conftest import RUN_FEW_TIMES

suite = pytest.importorskip("dm_control.suite", reason="needs the dmc extra")


def _dm_obs(ts):
    return np.concatenate([ts.observation["position"], ts.observation["velocity"]])


def test_native_matches_dm_control_step_for_step():
    ref = suite.load("cartpole", "balance", task_kwargs={"random": 3})
    ts = ref.reset()
    env = NativeLocomotionEnv("cartpole_balance", 1)
    obs = env.reset_to(ref.physics.data.qpos.copy(), ref.physics.data.qvel.copy())
    np.testing.assert_allclose(obs[0], _dm_obs(ts), atol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(300):  # random actions swing the pole down: covers every reward term
        action = rng.uniform(-1.0, 1.0, (1, 1))
        ts = ref.step(action[0])
        out = env.step(action)
        # float32 observations of the same float64 physics
        np.testing.assert_allclose(out.final_obs[0], _dm_obs(ts), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out.reward[0], ts.reward, rtol=1e-6, atol=1e-7)
    assert not out.terminated[0]
    assert env.last_metrics["upright"][0] < 0.9  # the pole did fall


def test_spec_reset_distribution_and_time_limit():
    env = NativeLocomotionEnv("cartpole_balance", 256, LocomotionConfig(episode_length=5))
    spec = env.spec
    assert spec.obs.shape == (5,) and spec.action_dim == 1 and spec.ctrl_dt == pytest.approx(0.01)
    assert [f.name for f in spec.obs_layout][:3] == ["cart_position", "pole_cos", "pole_sin"]
    obs = env.reset(0)
    assert np.abs(obs[:, 0]).max() <= 0.1 and np.abs(obs[:, 0]).max() > 0.08
    angle = np.arctan2(obs[:, 2], obs[:, 1])
    assert np.abs(angle).max() <= 0.034 + 1e-6 and np.abs(angle).max() > 0.03
    for t in range(5):
        out = env.step(np.zeros((256, 1), np.float32))
        assert out.truncated.all() == (t == 4) and not out.terminated.any()
        assert np.all((out.reward > 0.5) & (out.reward <= 1.0))  # near upright, centred
    with pytest.raises(ValueError, match="no setting forward_reward_weight"):
        NativeLocomotionEnv("cartpole_balance", 1, LocomotionConfig(forward_reward_weight=1.0))


def test_native_is_deterministic_and_randomisation_changes_dynamics():
    def rollout(randomize):
        env = NativeLocomotionEnv("cartpole_balance", 8, randomize=randomize)
        env.reset(5)
        actions = np.random.default_rng(1).uniform(-1, 1, (50, 8, 1))
        return np.stack([env.step(a).obs for a in actions]), env.params["body_mass"]

    a, mass_a = rollout(None)
    b, _ = rollout(None)
    np.testing.assert_array_equal(a, b)
    c, mass_c = rollout(PARAMETER_SETS["train"])
    assert not np.allclose(mass_a, mass_c)
    assert np.abs(a - c).max() > 1e-3


@pytest.mark.slow
def test_mjx_matches_native_and_keeps_the_env_contract():
    """MJX (float32) one step from 16 states under randomised parameters equals native MuJoCo;
    the jitted training env runs 1,000 random steps at batch 64 finite and deterministically."""
    k = 16
    env = MJXLocomotion("cartpole_balance")
    rng = np.random.default_rng(0)
    qpos = rng.uniform(-0.5, 0.5, (k, 2))
    qvel = rng.uniform(-1.0, 1.0, (k, 2))
    action = rng.uniform(-1.0, 1.0, (k, 1)).astype(np.float32)
    defaults = {n: jnp.broadcast_to(v, (k, *v.shape)) for n, v in env.default_params().items()}
    params = jax.vmap(make_randomizer(PARAMETER_SETS["train"]))(
        jax.random.split(jax.random.PRNGKey(0), k), defaults
    )
    key = jax.random.PRNGKey(0)
    step_from = jax.vmap(lambda q, v, p, a: env.step(env.reset_to(key, q, v, p), a))
    one = jax.jit(step_from, compiler_options=RUN_FEW_TIMES)
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    out = one(f32(qpos), f32(qvel), params, f32(action))
    native = NativeLocomotionEnv("cartpole_balance", k)
    native.set_params({n: np.asarray(v) for n, v in params.items()})
    native.reset_to(qpos, qvel)
    ref = native.step(action)
    np.testing.assert_allclose(np.asarray(out.obs), ref.final_obs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.reward), ref.reward, rtol=1e-4, atol=1e-5)

    train_env = make_training_env(env, 64, randomize=make_randomizer(PARAMETER_SETS["train"]))

    @jax.jit
    def run(key):
        state = train_env.reset(key)

        def body(state, k):
            a = jax.random.uniform(k, (64, 1), minval=-1.0, maxval=1.0)
            state = train_env.step(state, a)
            return state, (state.obs, state.reward)

        return jax.lax.scan(body, state, jax.random.split(key, 1000))[1]

    obs, reward = run(jax.random.PRNGKey(1))
    assert obs.shape == (1000, 64, 5) and bool(jnp.all(jnp.isfinite(obs)))
    assert bool(jnp.all((reward >= 0.0) & (reward <= 1.0)))
    np.testing.assert_array_equal(np.asarray(obs), np.asarray(run(jax.random.PRNGKey(1))[0]))
