"""PPO: GAE against a plain loop, distributions against scipy, one update on a fake rollout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from robotrl.algos import ppo
from robotrl.nets import ValueHeadConfig
from robotrl.types import Transition
from tests.algos.test_algorithms import SPEC


def plain_gae(r, v, nv, term, trunc, gamma, lam):
    """Reference: one env at a time, backwards, in plain Python."""
    T, E = r.shape
    adv = np.zeros((T, E))
    for e in range(E):
        running = 0.0
        for t in reversed(range(T)):
            delta = r[t, e] + gamma * (0.0 if term[t, e] else nv[t, e]) - v[t, e]
            if term[t, e] or trunc[t, e]:
                running = 0.0
            running = delta + gamma * lam * running
            adv[t, e] = running
    return adv, adv + v


def test_gae_matches_a_plain_loop_with_terminated_and_truncated_apart():
    rng = np.random.default_rng(0)
    T, E = 17, 5
    r, v, nv = (rng.normal(size=(T, E)).astype(np.float32) for _ in range(3))
    term, trunc = rng.random((T, E)) < 0.1, rng.random((T, E)) < 0.1
    trunc &= ~term
    adv, ret = jax.jit(ppo.gae, static_argnums=(5, 6))(
        jnp.asarray(r),
        jnp.asarray(v),
        jnp.asarray(nv),
        jnp.asarray(term),
        jnp.asarray(trunc),
        0.97,
        0.9,
    )
    ref_adv, ref_ret = plain_gae(r, v, nv, term, trunc, 0.97, 0.9)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-4, atol=1e-5)


def test_truncated_step_bootstraps_terminated_does_not():
    r = jnp.zeros((1, 2))
    v = jnp.zeros((1, 2))
    nv = jnp.full((1, 2), 10.0)
    adv, _ = ppo.gae(r, v, nv, jnp.array([[True, False]]), jnp.array([[False, True]]), 0.9, 0.95)
    np.testing.assert_allclose(adv, [[0.0, 9.0]])


def test_beta_distribution_matches_scipy():
    d = ppo._beta()
    a, b = jnp.array([[2.0, 3.5]]), jnp.array([[4.0, 1.5]])
    x = jnp.array([[0.3, 0.8]])
    ref = stats.beta.logpdf(np.asarray(x), np.asarray(a), np.asarray(b)).sum(-1)
    np.testing.assert_allclose(d.log_prob((a, b), x), ref, rtol=1e-5)
    np.testing.assert_allclose(
        d.entropy((a, b)), stats.beta.entropy(np.asarray(a), np.asarray(b)).sum(-1), rtol=1e-5
    )
    np.testing.assert_allclose(d.mode((a, b)), 2 * a / (a + b) - 1)


def test_normal_log_prob_and_entropy_match_scipy():
    d = ppo._normal()
    mean, log_std = jnp.array([[0.1, -0.4]]), jnp.array([0.2, -1.0])
    raw = jnp.array([[0.5, 0.0]])
    ref = stats.norm.logpdf(np.asarray(raw), np.asarray(mean), np.exp(np.asarray(log_std)))
    np.testing.assert_allclose(d.log_prob((mean, log_std), raw), ref.sum(-1), rtol=1e-5)
    ref_h = stats.norm.entropy(0, np.exp(np.asarray(log_std))).sum()
    np.testing.assert_allclose(d.entropy((mean, log_std)), [ref_h], rtol=1e-5)


def fake_rollout(algo, state, T=8, E=4, seed=0):
    rng = np.random.default_rng(seed)
    obs = jnp.asarray(rng.normal(size=(T, E, 5)), jnp.float32)
    policy, params = algo.make_policy(state, False)
    action, _, extras = policy.step(params, (), obs, jax.random.PRNGKey(seed))
    return Transition(
        obs=obs,
        action=action,
        reward=jnp.asarray(rng.normal(size=(T, E)), jnp.float32),
        terminated=jnp.asarray(rng.random((T, E)) < 0.05),
        truncated=jnp.asarray(rng.random((T, E)) < 0.05),
        next_obs=jnp.asarray(rng.normal(size=(T, E, 5)), jnp.float32),
        extras=extras,
    )


@pytest.mark.parametrize("distribution", ["normal", "beta"])
@pytest.mark.parametrize("head", ["mse", "hl_gauss"])
def test_update_is_finite_keeps_structure_and_changes_params(distribution, head):
    cfg = ppo.PPOConfig(
        actor_hidden=(16,),
        critic_hidden=(16,),
        rollout_length=8,
        minibatch_size=8,
        epochs=2,
        distribution=distribution,
        critic=ValueHeadConfig(kind=head, num_bins=21),
    )
    algo = ppo.make(cfg, SPEC)
    state = algo.init(jax.random.PRNGKey(0))
    update = jax.jit(algo.update)
    new, metrics = update(state, fake_rollout(algo, state), jax.random.PRNGKey(1))
    assert {
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clip_fraction",
        "explained_variance",
        "value_mean",
    } <= set(metrics)
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
    assert jax.tree.structure(new) == jax.tree.structure(state)
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), state.params, new.params)
    assert all(jax.tree.leaves(changed))  # every leaf, log-std included, moved
    new, _ = update(new, fake_rollout(algo, new, seed=1), jax.random.PRNGKey(2))
    assert update._cache_size() == 1
    assert algo.rollout_length == 8


def test_actions_stay_in_bounds_and_extras_carry_log_probs():
    for distribution in ("normal", "beta"):
        cfg = ppo.PPOConfig(
            actor_hidden=(16,), critic_hidden=(16,), distribution=distribution, init_log_std=1.0
        )
        algo = ppo.make(cfg, SPEC)
        state = algo.init(jax.random.PRNGKey(0))
        policy, params = algo.make_policy(state, False)
        obs = jnp.ones((256, 5))
        action, _, extras = policy.step(params, (), obs, jax.random.PRNGKey(1))
        action = np.asarray(action)
        assert np.all(action >= np.array(SPEC.action_low) - 1e-5)
        assert np.all(action <= np.array(SPEC.action_high) + 1e-5)
        assert extras["log_prob"].shape == (256,) and np.isfinite(extras["log_prob"]).all()
