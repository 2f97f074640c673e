"""Networks of the diffusion policy: observation encoders and the noise-prediction network.

Shapes: ``B`` batch, ``To`` observation history, ``H`` action chunk (prediction horizon), ``A``
action dimension, ``C`` observation features.

* ``StateEncoder``: the normalised state history ``[B, To, O]`` -> ``[B, C]`` (an MLP on the
  flattened history; ``hidden=()`` passes the flattened history through).
* ``ImageEncoder``: pixels ``[B, To, H, W, 3]`` uint8 plus the proprioceptive part of the state
  ``[B, To, P]`` -> ``[B, C]``: a small stride-2 CNN per frame (Diffusion Policy uses a
  ResNet-18; this one is sized for a CPU), a linear projection with LayerNorm, and the
  proprioception appended (then an optional MLP, as the state encoder's). ``random_shift`` is
  DrQ's augmentation (pad 4 px, random crop), the one Diffusion Policy applies as its random
  crop.
* ``NoiseNet``: ``eps_hat(x_t, t, c)``. The noisy chunk ``[B, H, A]`` is flattened and lifted
  to ``width``; each residual block (LayerNorm, Dense, activation, Dense) is modulated by FiLM
  from the observation features and a sinusoidal embedding of ``t``, as Diffusion Policy's
  conditional residual blocks are. An MLP rather than the 1-D temporal U-Net: chunks here are
  short (H <= 16) and the network must train on two CPU cores.
* ``StudentNet``: the distilled one-step policy, ``x0_hat(noise, c)``: a plain MLP on the
  observation features and the flattened noise. Plain on purpose: at zero noise it is a layer
  program (dense, activation), so a ``PolicyBundle`` holds it and ``firmware_export`` turns it
  into C for a microcontroller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "silu": nn.silu, "tanh": nn.tanh, "gelu": nn.gelu, "elu": nn.elu}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Dense + activation per hidden size, then a linear output (``policies`` never imports
    ``robotrl``, so this is not ``robotrl.nets.MLP``)."""

    hidden: Sequence[int]
    out_dim: int
    activation: str = "silu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for size in self.hidden:
            x = activation(self.activation)(nn.Dense(size)(x))
        return nn.Dense(self.out_dim)(x)


def step_embedding(t: jax.Array, dim: int) -> jax.Array:
    """Sinusoidal embedding ``[B] -> [B, dim]`` of the diffusion step (as in DDPM)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half) / max(half - 1, 1))
    angles = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class StateEncoder(nn.Module):
    hidden: Sequence[int] = ()
    features: int = 64
    activation: str = "silu"

    @nn.compact
    def __call__(self, state: jax.Array) -> jax.Array:
        flat = state.reshape(state.shape[0], -1)
        if not self.hidden:
            return flat
        return MLP(self.hidden, self.features, self.activation)(flat)


def random_shift(key: jax.Array, pixels: jax.Array, pad: int = 4) -> jax.Array:
    """DrQ's augmentation: pad ``[B, To, H, W, C]`` by replication and crop back at a random
    offset per sample (the same offset for a sample's whole history)."""
    b, _, h, w, _ = pixels.shape
    padded = jnp.pad(pixels, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = jax.random.randint(key, (b, 2), 0, 2 * pad + 1)

    def crop(img, off):
        return jax.lax.dynamic_slice(
            img, (0, off[0], off[1], 0), (img.shape[0], h, w, img.shape[3])
        )

    return jax.vmap(crop)(padded, offsets)


class ImageEncoder(nn.Module):
    """``trunk`` (the CNN, projection and LayerNorm per frame) then ``fuse`` (the frames'
    features and the proprioception, through an MLP when ``hidden`` is set). Two methods so
    that a frozen trunk's features can be computed once and only ``fuse`` trained on them."""

    channels: Sequence[int] = (32, 32, 64, 64)
    features: int = 64
    activation: str = "silu"
    hidden: Sequence[int] = ()  # MLP on [frame features, proprioception]; () concatenates

    def setup(self) -> None:
        self.convs = [nn.Conv(ch, (3, 3), strides=(2, 2), padding="SAME") for ch in self.channels]
        self.project = nn.Dense(self.features)
        self.norm = nn.LayerNorm()
        if self.hidden:
            self.mlp = MLP(self.hidden, self.features, self.activation)

    def trunk(self, pixels: jax.Array) -> jax.Array:
        """Per-frame features ``[B, To, H, W, 3]`` uint8 -> ``[B, To, features]``."""
        act = activation(self.activation)
        b, to = pixels.shape[:2]
        x = pixels.reshape(b * to, *pixels.shape[2:]).astype(jnp.float32) / 255.0 - 0.5
        for conv in self.convs:
            x = act(conv(x))
        x = self.norm(self.project(x.reshape(b * to, -1)))
        return x.reshape(b, to, self.features)

    def fuse(self, frames: jax.Array, proprio: jax.Array) -> jax.Array:
        """``frames [B, To, features]`` and ``proprio [B, To, P]`` -> ``[B, C]``."""
        b = frames.shape[0]
        x = jnp.concatenate([frames.reshape(b, -1), proprio.reshape(b, -1)], axis=-1)
        return self.mlp(x) if self.hidden else x

    def __call__(self, pixels: jax.Array, proprio: jax.Array) -> jax.Array:
        return self.fuse(self.trunk(pixels), proprio)


class NoiseNet(nn.Module):
    horizon: int  # H
    action_dim: int  # A
    width: int = 256
    depth: int = 3  # residual blocks
    step_dim: int = 64
    activation: str = "silu"

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        act = activation(self.activation)
        b = x.shape[0]
        temb = step_embedding(t, self.step_dim)
        temb = nn.Dense(self.step_dim)(act(nn.Dense(self.step_dim * 2)(temb)))
        context = jnp.concatenate([cond, temb], axis=-1)
        h = nn.Dense(self.width)(x.reshape(b, -1))
        for _ in range(self.depth):
            film = nn.Dense(2 * self.width)(act(context))
            scale, shift = jnp.split(film, 2, axis=-1)
            y = nn.LayerNorm()(h) * (1.0 + scale) + shift
            y = nn.Dense(self.width)(act(nn.Dense(self.width)(y)))
            h = h + act(y)
        h = act(nn.LayerNorm()(h))
        out = nn.Dense(self.horizon * self.action_dim, kernel_init=nn.initializers.zeros)(h)
        return out.reshape(b, self.horizon, self.action_dim)


class StudentNet(nn.Module):
    horizon: int  # H
    action_dim: int  # A
    hidden: Sequence[int] = (256, 256, 256)
    activation: str = "silu"

    @nn.compact
    def __call__(self, noise: jax.Array, cond: jax.Array) -> jax.Array:
        b = noise.shape[0]
        x = jnp.concatenate([cond, noise.reshape(b, -1)], axis=-1)
        out = MLP(self.hidden, self.horizon * self.action_dim, self.activation)(x)
        return out.reshape(b, self.horizon, self.action_dim)


__all__ = [
    "ImageEncoder",
    "NoiseNet",
    "StateEncoder",
    "StudentNet",
    "random_shift",
    "step_embedding",
]
