"""Privileged state supervision of the image encoder: pretraining, then imitation with it frozen."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from policies.diffusion import data
from policies.diffusion.policy import DiffusionConfig, DiffusionPolicy, Normalizer
from robotrl.train import rl100

SIZE = 16  # px: the encoder takes any image size


def _dots(key: jax.Array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` frames ``[n, SIZE, SIZE, 3]`` of a 2x2 white dot on black at a random position and
    their states ``[n, 3]``: the dot's column and row (px) and an angle the image does not show
    (the read-out can only learn its mean)."""
    pos = np.asarray(jax.random.randint(key, (n, 2), 0, SIZE - 1))
    pixels = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    for i, (col, row) in enumerate(pos):
        pixels[i, row : row + 2, col : col + 2] = 255
    angle = np.asarray(jax.random.uniform(jax.random.fold_in(key, 1), (n, 1))) * 2 * np.pi
    return pixels, np.concatenate([pos.astype(np.float32), angle], axis=1)


def _policy(freeze: bool, **kw) -> DiffusionPolicy:
    cfg = DiffusionConfig(
        encoder="image",
        obs_horizon=1,
        horizon=4,
        action_steps=2,
        width=32,
        depth=1,
        features=8,
        image_hidden=(16,),
        freeze_encoder=freeze,
        batch_size=8,
        **kw,
    )
    return DiffusionPolicy(cfg, state_dim=3, action_dim=2)


def _demos(pixels: np.ndarray, states: np.ndarray) -> data.Demos:
    """One episode per frame, the action the dot's position."""
    obs = {"pixels": pixels[:, None], "state": states[:, None]}
    return data.from_episodes(obs, states[:, None, :2], np.ones(len(states), np.int32))


def _norm(states: np.ndarray) -> Normalizer:
    return Normalizer.fit(states, states[:, :2])


def test_targets_round_trip_and_wrap_the_angle():
    states = jnp.array([[3.0, 9.0, 0.1], [12.0, 1.0, 2 * np.pi - 0.1]])
    norm = _norm(np.asarray(states))
    targets = rl100.state_targets(norm, states, (2,))
    assert targets.shape == (2, 4)
    np.testing.assert_allclose(targets[:, :2], [[-1, 1], [1, -1]], atol=1e-6)
    np.testing.assert_allclose(rl100.decode_state(norm, targets, (2,)), states, atol=1e-5)
    # 0.1 and 2 pi - 0.1 are 0.2 rad apart: so are their targets, not 2 pi - 0.2.
    assert float(jnp.linalg.norm(targets[0, 2:] - targets[1, 2:])) < 0.21


def test_pretraining_regresses_the_state_on_held_out_frames():
    """300 updates on 256 frames: the held-out position error falls to a fraction of the
    mean predictor's, and of the untrained trunk's with its read-out fitted by least squares
    (the trunk, not only the read-out, has learned); the noise network is untouched."""
    pixels, states = _dots(jax.random.PRNGKey(0), 320)
    train, held = _demos(pixels[:256], states[:256]), pixels[256:]
    policy = _policy(freeze=True, augment=False)
    norm = _norm(states)
    state = policy.init(jax.random.PRNGKey(1), norm, image_size=SIZE)

    def position_error(state, head):
        pred = rl100.predict_state(policy, state.params, head, norm, held, (2,))
        return float(jnp.abs(pred[:, :2] - states[256:, :2]).mean())

    def least_squares_head(state):
        feats = np.asarray(policy.frame_features(state.params, train.obs["pixels"][:, None])[:, 0])
        target = np.asarray(rl100.state_targets(norm, train.obs["state"], (2,)))
        design = np.concatenate([feats, np.ones((len(feats), 1))], axis=1)
        coef = np.linalg.lstsq(design, target, rcond=None)[0]
        return {"w": jnp.asarray(coef[:-1]), "b": jnp.asarray(coef[-1])}

    mean_error = float(np.abs(states[:256, :2].mean(0) - states[256:, :2]).mean())
    untrained = position_error(state, least_squares_head(state))
    new, head = rl100.pretrain_encoder(
        policy, state, train, jax.random.PRNGKey(2), 300, angles=(2,), batch_size=32
    )
    trained = position_error(new, head)
    assert trained < 0.4 * mean_error and trained < 0.5 * untrained, (
        trained,
        untrained,
        mean_error,
    )
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(new.ema_params), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree.leaves(state.params["noise"]), jax.tree.leaves(new.params["noise"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_frozen_trunk_stays_bit_identical_while_the_rest_trains():
    """Imitation on the frozen trunk's features (``frame_demos``) and a pixel update: the
    trunk's parameters and their EMA stay bit-identical, the MLP after it and the noise network
    move, and features computed once condition the policy as the pixels do."""
    pixels, states = _dots(jax.random.PRNGKey(0), 32)
    demos = _demos(pixels, states)
    policy = _policy(freeze=True)
    state = policy.init(jax.random.PRNGKey(1), _norm(states), image_size=SIZE)
    frames = rl100.frame_demos(policy, state.params, demos)
    assert set(frames.obs) == {"state", "frames"} and frames.obs["frames"].shape == (32, 8)

    obs = {"state": demos.obs["state"][:, None], "pixels": demos.obs["pixels"][:, None]}
    via_frames = {"state": obs["state"], "frames": frames.obs["frames"][:, None]}
    np.testing.assert_allclose(
        policy.encode(state.params, via_frames, state.norm),
        policy.encode(state.params, obs, state.norm),
        rtol=1e-5,
        atol=1e-5,
    )

    trained = rl100.imitate(policy, state, frames, jax.random.PRNGKey(2), 20, log_every=10)
    actions = jnp.repeat(demos.actions[:, None], 4, axis=1)
    stepped, _ = jax.jit(policy.update)(trained, obs, actions, jax.random.PRNGKey(3))
    frozen = policy.frozen(state.params)
    moved = {"trunk": [], "rest": []}
    for new in (trained, stepped):
        for tree in (new.params, new.ema_params):
            diff = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, tree)
            for f, d in zip(jax.tree.leaves(frozen), jax.tree.leaves(diff), strict=True):
                moved["trunk" if f else "rest"].append(d)
    assert sum(jax.tree.leaves(frozen)) == 2 * 4 + 2 + 2  # 4 convolutions, projection, norm
    assert not any(moved["trunk"])
    assert all(moved["rest"])


def test_frame_features_need_a_frozen_trunk():
    pixels, states = _dots(jax.random.PRNGKey(0), 4)
    policy = _policy(freeze=False)
    state = policy.init(jax.random.PRNGKey(1), _norm(states), image_size=SIZE)
    with pytest.raises(ValueError, match="freeze_encoder"):
        rl100.frame_demos(policy, state.params, _demos(pixels, states))
    with pytest.raises(ValueError, match="image"):
        DiffusionConfig(freeze_encoder=True)
