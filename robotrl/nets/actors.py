"""Actors: a tanh-squashed Gaussian (SAC family) and a deterministic tanh actor (TD3).

Both act in the normalised action box ``[-1, 1]^A``; ``ActionScaler`` maps to and from the env's
bounds, so buffers and datasets store actions in env units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from robotrl.nets.mlp import MLP

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class TanhGaussianActor(nn.Module):
    """``obs [..., O] -> (mean [..., A], log_std [..., A])`` of the pre-tanh Gaussian."""

    hidden: Sequence[int]
    action_dim: int
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden, 2 * self.action_dim, self.activation, self.layer_norm, 0.01)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        # Squash log_std smoothly into its range instead of clipping (keeps gradients).
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(log_std) + 1)
        return mean, log_std


def tanh_gaussian_sample(
    mean: jax.Array, log_std: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample ``a = tanh(mean + std * eps)`` and its log-probability ``[...]``."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    logp_u = jax.scipy.stats.norm.logpdf(u, mean, jnp.exp(log_std)).sum(-1)
    # log(1 - tanh(u)^2) written stably as 2 (log 2 - u - softplus(-2u)).
    log_det = (2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))).sum(-1)
    return jnp.tanh(u), logp_u - log_det


def tanh_gaussian_log_prob(
    mean: jax.Array, log_std: jax.Array, action: jax.Array, eps: float = 1e-5
) -> jax.Array:
    """Log-probability ``[...]`` of ``action`` in ``[-1, 1]`` (clipped to ``1 - eps``) under
    ``tanh(N(mean, std))``: the likelihood of dataset actions (AWR, behaviour cloning)."""
    a = jnp.clip(action, -1.0 + eps, 1.0 - eps)
    u = jnp.arctanh(a)
    logp_u = jax.scipy.stats.norm.logpdf(u, mean, jnp.exp(log_std)).sum(-1)
    return logp_u - jnp.log1p(-(a**2)).sum(-1)


class DeterministicActor(nn.Module):
    """``obs [..., O] -> action [..., A]`` in ``[-1, 1]``."""

    hidden: Sequence[int]
    action_dim: int
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.tanh(MLP(self.hidden, self.action_dim, self.activation, self.layer_norm)(obs))


class ActionScaler(NamedTuple):
    """Affine map between ``[-1, 1]^A`` and the env's action box ``[low, high]``."""

    offset: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_bounds(cls, low: Sequence[float], high: Sequence[float]) -> ActionScaler:
        low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("action bounds must be finite to rescale actions")
        return cls((high + low) / 2, (high - low) / 2)

    def to_env(self, a: jax.Array) -> jax.Array:
        return jnp.broadcast_to(self.offset, a.shape) + jnp.broadcast_to(self.scale, a.shape) * a

    def from_env(self, a: jax.Array) -> jax.Array:
        offset, scale = (
            jnp.broadcast_to(self.offset, a.shape),
            jnp.broadcast_to(self.scale, a.shape),
        )
        return jnp.clip((a - offset) / scale, -1.0, 1.0)
