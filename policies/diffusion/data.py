"""Demonstrations as training windows: an observation history and the action chunk that follows.

Episodes are stored flat (only their valid steps, back to back) with each step's episode start
and end, and windows are gathered on the device per minibatch, so image demonstrations are held
once. At an episode's start the first observation repeats (history padding); past its end the
last action repeats (Diffusion Policy's edge padding).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Demos(NamedTuple):
    """Flat valid steps: ``obs`` dict of ``[S, ...]``, ``actions [S, A]``, ``first``/``last``
    ``[S]`` int32 (flat index of the step's episode's first and last step)."""

    obs: dict[str, jax.Array]
    actions: jax.Array
    first: jax.Array
    last: jax.Array

    @property
    def size(self) -> int:
        return int(self.actions.shape[0])


def from_episodes(obs, actions: np.ndarray, lengths: np.ndarray) -> Demos:
    """From padded episodes ``[N, T, ...]`` (``collect_demonstrations``' layout; a plain array
    of observations is taken as the ``state``) and ``lengths [N]``."""
    obs = obs if isinstance(obs, dict) else {"state": obs}
    lengths = np.asarray(lengths, np.int64)
    if np.any(lengths < 1):
        raise ValueError("every demonstration needs at least one step")
    keep = np.arange(actions.shape[1])[None, :] < lengths[:, None]  # [N, T]
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    last = first + np.repeat(lengths, lengths) - 1
    return Demos(
        obs={k: jnp.asarray(np.asarray(v)[keep]) for k, v in obs.items()},
        actions=jnp.asarray(np.asarray(actions, np.float32)[keep]),
        first=jnp.asarray(first, jnp.int32),
        last=jnp.asarray(last, jnp.int32),
    )


def windows(demos: Demos, idx: jax.Array, obs_horizon: int, horizon: int):
    """The windows at flat steps ``idx [B]``: ``obs`` dict of ``[B, To, ...]`` (ending at the
    step) and ``actions [B, H, A]`` (starting at it)."""
    past = idx[:, None] + jnp.arange(1 - obs_horizon, 1)[None]
    past = jnp.maximum(past, demos.first[idx][:, None])
    future = jnp.minimum(idx[:, None] + jnp.arange(horizon)[None], demos.last[idx][:, None])
    obs = {k: v[past] for k, v in demos.obs.items()}
    return obs, demos.actions[future]


def sample(demos: Demos, key: jax.Array, batch: int, obs_horizon: int, horizon: int):
    """A uniform minibatch of windows."""
    idx = jax.random.randint(key, (batch,), 0, demos.actions.shape[0])
    return windows(demos, idx, obs_horizon, horizon)


__all__ = ["Demos", "from_episodes", "sample", "windows"]
