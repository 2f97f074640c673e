"""Multi-layer perceptrons and the ensemble of critics built from them."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "silu": nn.silu,
}


def activation(name: str):
    """Activations by name, so a network spec can be written out (bundle, C export)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Dense -> [LayerNorm] -> activation for each hidden size, then a linear output layer.

    ``x: [..., D] -> [..., out_dim]``.
    """

    hidden: Sequence[int]
    out_dim: int
    activation: str = "relu"
    layer_norm: bool = False
    out_scale: float = 1.0  # variance scale of the output layer's init (small for policy heads)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation(self.activation)
        for size in self.hidden:
            x = nn.Dense(size)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        init = nn.initializers.variance_scaling(self.out_scale, "fan_avg", "uniform")
        return nn.Dense(self.out_dim, kernel_init=init)(x)


class Critic(nn.Module):
    """Q(s, a): ``obs [..., O], action [..., A] -> [..., M]`` (M = value-head outputs)."""

    hidden: Sequence[int]
    num_outputs: int = 1
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(self.hidden, self.num_outputs, self.activation, self.layer_norm)(x)


class CriticEnsemble(nn.Module):
    """``num`` independent critics evaluated with one vmapped call: ``-> [N, ..., M]``."""

    num: int
    hidden: Sequence[int]
    num_outputs: int = 1
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            Critic,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num,
        )
        return ensemble(self.hidden, self.num_outputs, self.activation, self.layer_norm)(
            obs, action
        )
