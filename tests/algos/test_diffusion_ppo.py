"""PPO over the denoising steps (RL-100) against a plain reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from policies.diffusion.policy import DiffusionConfig, DiffusionPolicy, Normalizer
from robotrl.algos import diffusion_ppo


def test_surrogate_matches_a_plain_loop(key):
    k1, k2, k3 = jax.random.split(key, 3)
    new, old = jax.random.normal(k1, (64,)) * 0.3, jax.random.normal(k2, (64,)) * 0.3
    adv = jax.random.normal(k3, (64,))
    loss, metrics = diffusion_ppo.surrogate_loss(new, old, adv, 0.25)
    total = 0.0
    for n, o, a in zip(np.asarray(new), np.asarray(old), np.asarray(adv), strict=True):
        r = np.exp(n - o)
        total += min(r * a, min(max(r, 0.75), 1.25) * a)
    np.testing.assert_allclose(loss, -total / 64, rtol=1e-5)
    clipped = np.mean(np.abs(np.exp(np.asarray(new - old)) - 1) > 0.25)
    np.testing.assert_allclose(metrics["ppo/clip_fraction"], clipped)


def test_clipped_value_loss_matches_a_plain_loop(key):
    v, v_old, target = (jax.random.normal(k, (32,)) for k in jax.random.split(key, 3))
    expect = np.mean(
        [
            0.5 * max((a - c) ** 2, (b + np.clip(a - b, -0.2, 0.2) - c) ** 2)
            for a, b, c in zip(np.asarray(v), np.asarray(v_old), np.asarray(target), strict=True)
        ]
    )
    np.testing.assert_allclose(diffusion_ppo.value_loss(v, v_old, target, 0.2), expect, rtol=1e-5)


def test_update_takes_one_step_per_denoising_step_and_follows_the_advantage(key):
    cfg = DiffusionConfig(horizon=4, action_steps=2, width=32, depth=1)
    policy = DiffusionPolicy(cfg, state_dim=3, action_dim=2)
    norm = Normalizer.fit(np.array([[-1.0, -1, -1], [1, 1, 1]]), np.array([[0.0, 0], [1, 1]]))
    state = policy.init(jax.random.PRNGKey(0), norm)
    params = state.params
    obs = {"state": jax.random.normal(key, (64, 2, 3))}
    chain = policy.sample_chain(params, norm, obs, jax.random.PRNGKey(1))
    # Favour the chains whose first executed action dimension ended high.
    adv = chain.xs[:, -1, 0, 0]
    ppo = diffusion_ppo.DiffusionPPOConfig(lr=1e-3)
    opt = diffusion_ppo.make_optimizer(ppo)
    update = jax.jit(diffusion_ppo.make_update(policy, ppo))
    new, opt_state, metrics = update(
        params, opt.init(params), norm, obs, chain.xs, chain.log_probs, adv
    )
    # Adam's step count: one optimiser step per denoising step.
    counts = [x for x in jax.tree.leaves(opt_state) if x.dtype == jnp.int32]
    assert int(counts[0]) == cfg.schedule.inference_steps
    # The encoder is frozen by default; the noise network moved.
    for a, b in zip(
        jax.tree.leaves(params["encoder"]), jax.tree.leaves(new["encoder"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    moved = [
        float(jnp.abs(a - b).max())
        for a, b in zip(
            jax.tree.leaves(params["noise"]), jax.tree.leaves(new["noise"]), strict=True
        )
    ]
    assert max(moved) > 0
    # The likelihood of the favoured chains rose relative to the others.
    gain = (policy.step_log_probs(new, norm, obs, chain.xs) - chain.log_probs).sum(axis=1)
    assert float(jnp.corrcoef(gain, adv)[0, 1]) > 0.3
    assert set(metrics) == {"ppo/policy_loss", "ppo/approx_kl", "ppo/clip_fraction"}
