"""The diffusion policy: schedule math, the stochastic sampler's log-probabilities, windows."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from policies.diffusion import data
from policies.diffusion import schedule as sch
from policies.diffusion.policy import DiffusionConfig, DiffusionPolicy, Normalizer


def test_schedule_matches_its_definition():
    cfg = sch.ScheduleConfig(train_steps=100, inference_steps=10)
    s = sch.make_schedule(cfg)
    np.testing.assert_array_equal(s.timesteps, np.arange(90, -1, -10))
    np.testing.assert_array_equal(s.prev_timesteps, np.arange(80, -11, -10))
    # Cosine schedule: abar(t) = f((t + 1) / T) / f(0), beta capped at 0.999.
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    expect = [min(1 - f((i + 1) / 100) / f(i / 100), 0.999) for i in range(100)]
    np.testing.assert_allclose(s.betas, expect, rtol=1e-5)
    np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1 - np.array(expect)), rtol=1e-4)


def test_ddim_with_the_true_noise_recovers_the_clean_sample(key):
    """From x_t built with eps, a DDIM step given that eps lands on x_s built with the same
    eps (eta = 0): the deterministic sampler is exact for a perfect noise predictor."""
    cfg = sch.ScheduleConfig()
    s = sch.make_schedule(cfg)
    k1, k2 = jax.random.split(key)
    x0 = jax.random.uniform(k1, (8, 2), minval=-1, maxval=1)
    eps = jax.random.normal(k2, (8, 2))
    for t, prev in zip(s.timesteps, s.prev_timesteps, strict=True):
        x_t = sch.add_noise(s, x0[None], eps[None], t[None])[0]
        x_prev = sch.ddim_step(cfg, s, x_t, eps, t, prev, 0.0)
        expect = x0 if prev < 0 else sch.add_noise(s, x0[None], eps[None], prev[None])[0]
        np.testing.assert_allclose(x_prev, expect, atol=1e-4)


def _policy(**kw) -> tuple[DiffusionPolicy, object]:
    cfg = DiffusionConfig(horizon=4, action_steps=2, obs_horizon=2, width=32, depth=1, **kw)
    policy = DiffusionPolicy(cfg, state_dim=3, action_dim=2)
    norm = Normalizer.fit(np.array([[-1.0, -1, -1], [1, 1, 1]]), np.array([[0.0, 0], [10, 10]]))
    return policy, policy.init(jax.random.PRNGKey(1), norm)


def test_stochastic_step_log_prob_is_the_gaussian_of_the_transition(key):
    """Each denoising transition's log-probability, recomputed from the network's eps with the
    DDIM formulas written out in numpy, summed over the executed actions only."""
    policy, state = _policy()
    cfg = policy.cfg.schedule
    obs = {"state": jax.random.normal(key, (5, 2, 3))}
    chain = policy.sample_chain(state.params, state.norm, obs, jax.random.PRNGKey(2))
    assert chain.xs.shape == (5, cfg.inference_steps + 1, 4, 2)
    assert chain.log_probs.shape == (5, cfg.inference_steps)
    s = policy.schedule
    abar = np.asarray(s.alphas_cumprod, np.float64)
    cond = policy.encode(state.params, obs, state.norm)
    for k in range(cfg.inference_steps):
        t, prev = int(s.timesteps[k]), int(s.prev_timesteps[k])
        x = np.asarray(chain.xs[:, k], np.float64)
        eps = np.asarray(policy.eps(state.params, chain.xs[:, k], jnp.full((5,), t), cond))
        a_t, a_s = abar[t], (abar[prev] if prev >= 0 else 1.0)
        x0 = np.clip((x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t), -1, 1)
        sigma = math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))  # eta = 1
        mean = math.sqrt(a_s) * x0 + math.sqrt(max(1 - a_s - sigma**2, 0.0)) * eps
        std = max(sigma, cfg.std_floor)
        x_next = np.asarray(chain.xs[:, k + 1], np.float64)
        logp = -0.5 * ((x_next - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
        expect = logp[:, :2].sum(axis=(1, 2))  # the 2 executed actions of the 4
        np.testing.assert_allclose(chain.log_probs[:, k], expect, rtol=1e-4, atol=1e-3)
    # Rescoring the stored chain under the same parameters gives the sampling-time values.
    rescored = policy.step_log_probs(state.params, state.norm, obs, chain.xs)
    np.testing.assert_allclose(rescored, chain.log_probs, rtol=1e-5, atol=1e-4)
    # The last step's DDIM sigma is 0: the floor gives it a density.
    assert np.all(np.isfinite(chain.log_probs))


def test_windows_pad_history_at_the_start_and_actions_at_the_end():
    obs = np.arange(2 * 5 * 1, dtype=np.float32).reshape(2, 5, 1)
    actions = np.arange(2 * 5 * 1, dtype=np.float32).reshape(2, 5, 1) * 10
    demos = data.from_episodes(obs, actions, np.array([3, 5]))
    assert demos.size == 8
    o, a = data.windows(demos, jnp.array([0, 2, 3]), obs_horizon=2, horizon=3)
    np.testing.assert_array_equal(o["state"][..., 0], [[0, 0], [1, 2], [5, 5]])
    np.testing.assert_array_equal(a[..., 0], [[0, 10, 20], [20, 20, 20], [50, 60, 70]])


def test_bad_config_fails_with_one_line():
    with pytest.raises(ValueError, match="encoder"):
        DiffusionConfig(encoder="lidar")
    with pytest.raises(ValueError, match="action_steps"):
        DiffusionConfig(horizon=4, action_steps=5)
    with pytest.raises(ValueError, match="beta_schedule"):
        sch.ScheduleConfig(beta_schedule="cosine")


def test_imitation_learns_a_state_conditioned_chunk():
    """Two states, two action chunks: after 2,000 DDPM steps DDIM sampling returns each
    state's chunk (within 5% of the action range)."""
    from robotrl.train import rl100

    policy, _ = _policy()
    states = np.array([[[-1.0, 0, 0]] * 6, [[1.0, 0, 0]] * 6], np.float32)  # [N=2, T=6, 3]
    actions = np.stack([np.full((6, 2), 2.0), np.full((6, 2), 8.0)]).astype(np.float32)
    demos = data.from_episodes(states, actions, np.array([6, 6]))
    norm = Normalizer.fit(states, np.array([[0.0, 0], [10, 10]]))
    state = policy.init(jax.random.PRNGKey(0), norm)
    state = rl100.imitate(policy, state, demos, jax.random.PRNGKey(1), 2000, log_every=500)
    obs = {"state": jnp.asarray(states[:, :2])}
    chunk = policy.sample(state.ema_params, norm, obs, jax.random.PRNGKey(3))
    np.testing.assert_allclose(chunk[0], 2.0, atol=0.5)
    np.testing.assert_allclose(chunk[1], 8.0, atol=0.5)


def test_image_policy_trains_and_samples(key):
    """The image encoder (CNN + proprioception, random shift) through one update and both
    samplers; the shift keeps the image's shape and moves its content."""
    from policies.diffusion.network import random_shift

    cfg = DiffusionConfig(encoder="image", horizon=4, action_steps=2, width=32, depth=1)
    policy = DiffusionPolicy(cfg, state_dim=5, action_dim=2)
    norm = Normalizer.fit(np.array([[0.0] * 5, [512.0] * 5]), np.array([[0.0, 0], [512, 512]]))
    state = policy.init(key, norm, image_size=24)
    k1, k2 = jax.random.split(key)
    obs = {
        "state": jax.random.uniform(k1, (8, 2, 5)) * 512,
        "pixels": jax.random.randint(k2, (8, 2, 24, 24, 3), 0, 255).astype(jnp.uint8),
    }
    actions = jax.random.uniform(k1, (8, 4, 2)) * 512
    new, metrics = jax.jit(policy.update)(state, obs, actions, key)
    assert np.isfinite(float(metrics["diffusion/loss"]))
    moved = jax.tree.leaves(
        jax.tree.map(lambda a, b: jnp.abs(a - b).max(), state.params, new.params)
    )
    assert max(float(m) for m in moved) > 0
    chunk = policy.sample(new.ema_params, norm, obs, key)
    chain = policy.sample_chain(new.ema_params, norm, obs, key)
    assert chunk.shape == chain.actions.shape == (8, 4, 2)
    shifted = random_shift(jax.random.PRNGKey(3), obs["pixels"])
    assert shifted.shape == obs["pixels"].shape and shifted.dtype == jnp.uint8
    assert not np.array_equal(np.asarray(shifted), np.asarray(obs["pixels"]))


def test_image_imitation_on_the_host_loop_matches_the_scan(key):
    """``imitate`` runs image updates one jitted call each on a CPU (convolutions in a loop are
    slow there); the result is the scan's."""
    from robotrl.train import rl100

    cfg = DiffusionConfig(encoder="image", horizon=4, action_steps=2, width=32, depth=1)
    cfg = dataclasses.replace(cfg, batch_size=8)
    policy = DiffusionPolicy(cfg, state_dim=5, action_dim=2)
    k1, k2, k3 = jax.random.split(key, 3)
    obs = {
        "state": np.asarray(jax.random.uniform(k1, (2, 10, 5)) * 512),
        "pixels": np.asarray(jax.random.randint(k2, (2, 10, 24, 24, 3), 0, 255), np.uint8),
    }
    actions = np.asarray(jax.random.uniform(k3, (2, 10, 2)) * 512)
    demos = data.from_episodes(obs, actions, np.array([10, 7]))
    norm = Normalizer.fit(obs["state"], actions)
    state = policy.init(key, norm, image_size=24)
    rows = {}
    run = lambda host: rl100.imitate(
        policy, state, demos, k1, 6, 3, lambda i, r: rows.setdefault(host, []).append(r), host
    )
    host, scan = run(True), run(False)
    diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), host.params, scan.params)
    assert max(jax.tree.leaves(diff)) < 1e-4
    assert int(host.step) == int(scan.step) == 6
    for a, b in zip(rows[True], rows[False], strict=True):
        assert a["diffusion/loss"] == pytest.approx(b["diffusion/loss"], rel=1e-4)


@pytest.mark.parametrize("state_hidden", [(), (16,)])
def test_numpy_forward_matches_jax(key, state_hidden):
    """The numpy policy (no jax on a robot computer) gives the JAX policy's chunks for the same
    noise: the K-step DDIM sampler and the one-step map."""
    from policies.diffusion.numpy_policy import NumpyDiffusion

    cfg = DiffusionConfig(
        horizon=4,
        action_steps=2,
        width=32,
        depth=2,
        state_hidden=state_hidden,
        features=8,
        relative_to=(0, 1),
    )
    policy = DiffusionPolicy(cfg, state_dim=3, action_dim=2)
    norm = Normalizer.fit(np.array([[-1.0, -1, -1], [1, 1, 1]]), np.array([[-3.0, -1], [2, 5]]))
    state = policy.init(key, norm)
    # Non-zero output layer (it starts at zero) so the comparison has something to compare.
    params = jax.tree.map(
        lambda x: x + 0.05 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), state.params
    )
    k1, k2 = jax.random.split(key)
    obs = {"state": jax.random.uniform(k1, (6, 2, 3), minval=-1, maxval=1)}
    noise = jax.random.normal(k2, (6, 4, 2))
    params = {**params, **policy.init_student(key, params)}
    np_policy = NumpyDiffusion.from_jax(policy, params, norm)
    ref = policy.reference(obs)
    expect = norm.unaction(policy.denoise(params, norm, obs, noise)) + ref
    np.testing.assert_allclose(
        np_policy.sample(np.asarray(obs["state"]), np.asarray(noise)), expect, rtol=1e-4, atol=1e-4
    )
    one = norm.unaction(jnp.clip(policy.denoise_one_step(params, norm, obs, noise), -1, 1)) + ref
    np.testing.assert_allclose(
        np_policy.sample_one_step(np.asarray(obs["state"]), np.asarray(noise)),
        one,
        rtol=1e-4,
        atol=1e-4,
    )
