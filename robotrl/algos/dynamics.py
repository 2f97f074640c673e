"""A probabilistic dynamics ensemble (PETS/MBPO style) for model-based off-policy evaluation.

``N`` MLPs, each predicting a diagonal Gaussian over the change of the state, ``y - x_state``
(inputs and targets standardised with the training data's statistics), trained by Gaussian
negative log-likelihood with soft bounds on the log-std. After training, the ``num_elites``
members with the lowest held-out error are the elites; a prediction draws one random elite per
sample and samples its Gaussian (RL-100's AM-Q rollouts: 7 members, 5 elites).

Shapes: ``B`` batch, ``N`` members, ``X`` input (state then action), ``S`` state.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from robotrl.nets.mlp import MLP
from robotrl.types import Metrics, Params, PRNGKey


@dataclasses.dataclass(frozen=True, kw_only=True)
class DynamicsConfig:
    num_members: int = 7
    num_elites: int = 5
    hidden: tuple[int, ...] = (200, 200, 200)
    activation: str = "silu"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 256

    def __post_init__(self) -> None:
        if not 1 <= self.num_elites <= self.num_members:
            raise ValueError("num_elites must be in [1, num_members]")


class _Member(nn.Module):
    hidden: tuple[int, ...]
    out_dim: int
    activation: str

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden, 2 * self.out_dim, self.activation)(x)
        mean, log_std = jnp.split(out, 2, axis=-1)
        max_log_std = self.param("max_log_std", nn.initializers.constant(0.5), (self.out_dim,))
        min_log_std = self.param("min_log_std", nn.initializers.constant(-5.0), (self.out_dim,))
        max_log_std = jnp.broadcast_to(max_log_std, log_std.shape)
        min_log_std = jnp.broadcast_to(min_log_std, log_std.shape)
        log_std = max_log_std - nn.softplus(max_log_std - log_std)
        log_std = min_log_std + nn.softplus(log_std - min_log_std)
        return mean, log_std


Ensemble = nn.vmap(
    _Member,
    variable_axes={"params": 0},
    split_rngs={"params": True},
    in_axes=0,  # each member its own inputs: bootstrap minibatches in training
    out_axes=0,
)


def _standardise(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    return (x - jnp.broadcast_to(mean, x.shape)) / jnp.broadcast_to(std, x.shape)


class DynamicsState(flax.struct.PyTreeNode):
    params: Params
    opt_state: Any
    x_mean: jax.Array  # [X]
    x_std: jax.Array
    y_mean: jax.Array  # [S] (of the state change)
    y_std: jax.Array
    elites: jax.Array  # [num_elites] member indices


class Dynamics:
    """The ensemble for one state size ``S`` and action size; methods are pure functions."""

    def __init__(self, cfg: DynamicsConfig, state_dim: int, action_dim: int):
        self.cfg, self.state_dim, self.action_dim = cfg, state_dim, action_dim
        self.net = Ensemble(cfg.hidden, state_dim, cfg.activation)
        self.opt = optax.adamw(cfg.lr, weight_decay=cfg.weight_decay)

    def init(self, key: PRNGKey, states: jax.Array, actions: jax.Array, next_states: jax.Array):
        """Parameters and the standardisation of the data ``[B, S]``, ``[B, A]``, ``[B, S]``."""
        x = jnp.concatenate([states, actions], axis=-1)
        y = next_states - states
        params = self.net.init(key, jnp.broadcast_to(x[:1], (self.cfg.num_members, 1, x.shape[-1])))
        return DynamicsState(
            params=params,
            opt_state=self.opt.init(params),
            x_mean=x.mean(0),  # [X]
            x_std=x.std(0) + 1e-6,
            y_mean=y.mean(0),
            y_std=y.std(0) + 1e-6,
            elites=jnp.arange(self.cfg.num_elites),
        )

    def _forward(self, state: DynamicsState, params: Params, s: jax.Array, a: jax.Array):
        """``s [B, S]``, ``a [B, A]`` (the same for every member) or ``[N, B, ...]`` (one batch
        per member) -> mean, log-std ``[N, B, S]`` of the standardised state change."""
        x = _standardise(jnp.concatenate([s, a], axis=-1), state.x_mean, state.x_std)
        if x.ndim == 2:
            x = jnp.broadcast_to(x, (self.cfg.num_members, *x.shape))
        return self.net.apply(params, x)

    def loss(self, params, state: DynamicsState, s, a, s_next) -> tuple[jax.Array, Metrics]:
        """Gaussian NLL of the standardised state change, summed over members; inputs ``[B,
        ...]`` or ``[N, B, ...]``."""
        mean, log_std = self._forward(state, params, s, a)
        target = jnp.broadcast_to(_standardise(s_next - s, state.y_mean, state.y_std), mean.shape)
        nll = 0.5 * ((target - mean) / jnp.exp(log_std)) ** 2 + log_std
        bounds = params["params"]["max_log_std"].sum() - params["params"]["min_log_std"].sum()
        mse = jnp.mean((target - mean) ** 2)
        return nll.mean(axis=(1, 2)).sum() + 0.01 * bounds, {"dynamics/mse": mse}

    def train(
        self, state: DynamicsState, data: tuple[jax.Array, ...], key: PRNGKey, steps: int
    ) -> tuple[DynamicsState, Metrics]:
        """``steps`` Adam steps on minibatches of ``data = (s, a, s_next)`` (jittable)."""
        n = data[0].shape[0]

        def one(state, k):
            # Each member its own minibatch (sampled with replacement: a bootstrap).
            idx = jax.random.randint(k, (self.cfg.num_members, self.cfg.batch_size), 0, n)
            batch = jax.tree.map(lambda d: d[idx], data)  # [N, B, ...]
            (_, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(
                state.params, state, *batch
            )
            updates, opt_state = self.opt.update(grads, state.opt_state, state.params)
            return state.replace(
                params=optax.apply_updates(state.params, updates), opt_state=opt_state
            ), metrics

        state, metrics = jax.lax.scan(one, state, jax.random.split(key, steps))
        return state, jax.tree.map(jnp.mean, metrics)

    def select_elites(self, state: DynamicsState, s, a, s_next) -> DynamicsState:
        """The ``num_elites`` members with the lowest held-out error on ``(s, a, s_next)``."""
        err = self.errors(state, s, a, s_next)
        return state.replace(elites=jnp.argsort(err)[: self.cfg.num_elites])

    def errors(self, state: DynamicsState, s, a, s_next) -> jax.Array:
        """``[N]``: each member's mean squared error of the standardised state change."""
        mean, _ = self._forward(state, state.params, s, a)
        target = jnp.broadcast_to(_standardise(s_next - s, state.y_mean, state.y_std), mean.shape)
        return jnp.mean((target - mean) ** 2, axis=(1, 2))

    def predict(self, state: DynamicsState, s: jax.Array, a: jax.Array, key: PRNGKey):
        """A sampled next state ``[B, S]``: one random elite per sample."""
        k_member, k_noise = jax.random.split(key)
        mean, log_std = self._forward(state, state.params, s, a)
        b = s.shape[0]
        member = state.elites[jax.random.randint(k_member, (b,), 0, self.cfg.num_elites)]
        mean, log_std = mean[member, jnp.arange(b)], log_std[member, jnp.arange(b)]
        delta = mean + jnp.exp(log_std) * jax.random.normal(k_noise, mean.shape)
        y_std, y_mean = (jnp.broadcast_to(v, s.shape) for v in (state.y_std, state.y_mean))
        return s + delta * y_std + y_mean


__all__ = ["Dynamics", "DynamicsConfig", "DynamicsState"]
