"""Closed loop: exported policies fly the simulated quadrotor from the same initial states as the
JAX policy (``firmware_export.closed_loop``). An untrained actor crashes at varied times, which
exercises every part: identical starts, per-step actions, termination, returns, success judging.
The trained case (a hovering policy, C float32 and int8) is in ``tests/train/test_learning.py``."""

import jax
import numpy as np

from firmware_export import CPolicy
from firmware_export.closed_loop import fly
from robotrl.algos import td3
from robotrl.envs import make_eval_env
from robotrl.export import bundle_from_state
from robotrl.train.evaluate import make_evaluator
from sims.quadrotor import Quadrotor, QuadrotorConfig
from tests.firmware_export.conftest import perturbed_state

EPISODES = 24


def test_c_and_numpy_policies_fly_the_same_episodes_as_jax_evaluation(tmp_path, host_compiler):
    env = Quadrotor(QuadrotorConfig(action_history=8, episode_length=200))
    cfg = td3.TD3Config(actor_hidden=(32, 32), activation="tanh")
    algo, state = perturbed_state(td3, cfg, env.spec, seed=4)
    golden = np.random.default_rng(0).normal(size=(8, env.spec.obs_dim)).astype(np.float32)
    bundle = bundle_from_state(algo, state, env.spec, golden)

    numpy_flight = fly(env, bundle.act, EPISODES, seed=3)
    c_flight = fly(env, CPolicy.build(bundle, tmp_path / "c").act, EPISODES, seed=3)
    # The untrained actor crashes, at different times: a real spread of episode lengths.
    assert numpy_flight.lengths.min() < numpy_flight.lengths.max()
    np.testing.assert_array_equal(c_flight.lengths, numpy_flight.lengths)
    np.testing.assert_allclose(c_flight.returns, numpy_flight.returns, rtol=1e-4, atol=1e-3)
    # float32 rounding differences (C vs numpy, ~1e-7) grow through the closed loop; the first
    # steps agree to the forward pass's precision, later ones to ~3e-3 (measured).
    np.testing.assert_allclose(c_flight.actions[:20], numpy_flight.actions[:20], atol=1e-5)
    np.testing.assert_array_equal(c_flight.success, numpy_flight.success)

    # The same episodes through robotrl's own (JAX, in-graph) evaluation of the same policy.
    evaluate = jax.jit(make_evaluator(make_eval_env(env, EPISODES), algo, 200))
    returns, lengths, _, _ = evaluate(state, jax.random.PRNGKey(3))
    np.testing.assert_array_equal(np.asarray(lengths), numpy_flight.lengths)
    np.testing.assert_allclose(np.asarray(returns), numpy_flight.returns, rtol=1e-4, atol=1e-3)
