"""Multi-layer perceptrons and the ensemble of critics built from them."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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
                x = nn.LayerNorm(use_fast_variance=False)(x)  # two-pass: as exported
            x = act(x)
        init = nn.initializers.variance_scaling(self.out_scale, "fan_avg", "uniform")
        return nn.Dense(self.out_dim, kernel_init=init)(x)


def mlp_program(
    params: dict, activation: str, layer_norm: bool, head: str, prefix: str = "pi"
) -> tuple[dict, dict[str, np.ndarray]]:
    """An ``MLP``'s parameters as the layer program of a policy bundle (``policies.bundle``).

    Returns ``(spec, arrays)``: ``spec = {"layers": [...], "head": head}`` and the float32
    arrays it names. The order mirrors ``MLP.__call__``: Dense, [LayerNorm], activation, ...,
    Dense.
    """
    dense = sorted((k for k in params if k.startswith("Dense_")), key=lambda k: int(k[6:]))
    layers, arrays = [], {}
    for i, name in enumerate(dense):
        w, b = f"{prefix}.{i}.w", f"{prefix}.{i}.b"
        arrays[w] = np.asarray(params[name]["kernel"], np.float32)
        arrays[b] = np.asarray(params[name]["bias"], np.float32)
        layers.append({"op": "dense", "weight": w, "bias": b})
        if i == len(dense) - 1:
            break
        if layer_norm:
            ln = params[f"LayerNorm_{i}"]
            s, c = f"{prefix}.{i}.ln.scale", f"{prefix}.{i}.ln.bias"
            arrays[s] = np.asarray(ln["scale"], np.float32)
            arrays[c] = np.asarray(ln["bias"], np.float32)
            layers.append({"op": "layernorm", "scale": s, "bias": c, "eps": 1e-6})
        layers.append({"op": "activation", "fn": activation})
    return {"layers": layers, "head": head}, arrays


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
