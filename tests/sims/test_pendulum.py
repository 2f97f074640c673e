"""The JAX pendulum against gymnasium's Pendulum-v1, and the registered-env checks."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from sims.pendulum import Pendulum


def test_pendulum_matches_gymnasium_step_for_step():
    env = Pendulum()
    step = jax.jit(env.step)
    ref = gym.make("Pendulum-v1")
    ref.reset(seed=0)
    rng = np.random.default_rng(0)
    for episode in range(5):
        th, thdot = rng.uniform(-np.pi, np.pi), rng.uniform(-8, 8)
        ref.unwrapped.state = np.array([th, thdot])
        state = env.reset_to(jax.random.PRNGKey(episode), jnp.float32(th), jnp.float32(thdot))
        for _ in range(50):
            action = rng.uniform(-3, 3, size=1).astype(np.float32)  # beyond bounds: both clip
            obs_ref, reward_ref, term, _, _ = ref.step(action)
            # Reference state becomes ours each step, so float32 drift does not accumulate.
            state = step(state, jnp.asarray(action))
            np.testing.assert_allclose(state.obs, obs_ref, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(state.reward, reward_ref, rtol=1e-4, atol=1e-4)
            assert not term and not bool(state.terminated)
            state = env.reset_to(state.key, *map(jnp.float32, ref.unwrapped.state))


def test_pendulum_reset_distribution_matches_gymnasium():
    states = jax.vmap(Pendulum().reset)(jax.random.split(jax.random.PRNGKey(0), 4000))
    th, thdot = np.asarray(states.physics).T
    assert th.min() >= -np.pi and th.max() <= np.pi and abs(th.mean()) < 0.1
    assert thdot.min() >= -1 and thdot.max() <= 1
