"""Device-resident replay buffer: pure ``init/add/sample`` over a pytree of arrays.

Storage is time-major per environment stream, ``[L, E, ...]`` (L rows of E parallel envs), so
a flat sample is a random (row, env) pair and a trajectory window is a run of consecutive rows of
one env. Windows never cross the write head; they may cross episode ends, and ``window_mask``
says which steps still belong to the window's first episode.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from robotrl.types import PRNGKey


class ReplayState(flax.struct.PyTreeNode):
    data: Any  # pytree, every leaf [L, E, ...]
    pos: jax.Array  # next row to write, int32
    size: jax.Array  # rows filled so far, int32 (<= L)

    @property
    def rows(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]

    @property
    def num_envs(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[1]

    @property
    def num_transitions(self) -> jax.Array:
        return self.size * self.num_envs


def init(example: Any, capacity: int) -> ReplayState:
    """An empty buffer for ``capacity`` transitions shaped like ``example`` (leaves ``[E]``)."""
    num_envs = jax.tree.leaves(example)[0].shape[0]
    rows = max(1, capacity // num_envs)
    data = jax.tree.map(lambda x: jnp.zeros((rows, *x.shape), x.dtype), example)
    return ReplayState(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def add(state: ReplayState, item: Any) -> ReplayState:
    """Writes one row ``[E, ...]`` (one step of every env), overwriting the oldest when full."""
    # dynamic_update_slice updates in place inside a scan; a scatter (.at[].set) may copy.
    write = lambda buf, x: jax.lax.dynamic_update_index_in_dim(
        buf, x.astype(buf.dtype), state.pos, 0
    )
    data = jax.tree.map(write, state.data, item)
    return ReplayState(data, (state.pos + 1) % state.rows, jnp.minimum(state.size + 1, state.rows))


def extend(state: ReplayState, items: Any) -> ReplayState:
    """Writes ``T`` rows ``[T, E, ...]`` at once (datasets, rollouts)."""
    steps = jax.tree.leaves(items)[0].shape[0]
    idx = (state.pos + jnp.arange(steps)) % state.rows
    data = jax.tree.map(lambda buf, x: buf.at[idx].set(x.astype(buf.dtype)), state.data, items)
    return ReplayState(
        data, (state.pos + steps) % state.rows, jnp.minimum(state.size + steps, state.rows)
    )


def sample(state: ReplayState, key: PRNGKey, batch_size: int) -> Any:
    """Uniform transitions, ``[batch_size, ...]``. The buffer must not be empty."""
    k_row, k_env = jax.random.split(key)
    rows = jax.random.randint(k_row, (batch_size,), 0, jnp.maximum(state.size, 1))
    envs = jax.random.randint(k_env, (batch_size,), 0, state.num_envs)
    return jax.tree.map(lambda buf: buf[rows, envs], state.data)


def sample_windows(state: ReplayState, key: PRNGKey, batch_size: int, length: int) -> Any:
    """Windows of ``length`` consecutive steps of one env stream: ``[batch_size, length, ...]``.

    Needs ``state.size >= length``.
    """
    k_start, k_env = jax.random.split(key)
    oldest = jnp.where(state.size == state.rows, state.pos, 0)
    start = jax.random.randint(k_start, (batch_size,), 0, jnp.maximum(state.size - length + 1, 1))
    rows = (oldest + start[:, None] + jnp.arange(length)[None]) % state.rows  # [B, T]
    envs = jax.random.randint(k_env, (batch_size,), 0, state.num_envs)[:, None]
    return jax.tree.map(lambda buf: buf[rows, envs], state.data)


def window_mask(terminated: jax.Array, truncated: jax.Array) -> jax.Array:
    """``[..., T]`` True for steps up to and including the first episode end of the window."""
    done = jnp.logical_or(terminated, truncated).astype(jnp.int32)
    ended_before = jnp.cumsum(done, axis=-1) - done
    return ended_before == 0


def sample_mixed(
    key: PRNGKey,
    offline: ReplayState,
    online: ReplayState,
    batch_size: int,
    offline_fraction: float,
) -> Any:
    """Offline/online mixing (RLPD-style): ``round(batch_size * offline_fraction)`` offline
    transitions, the rest online, concatenated along the batch axis ``[batch_size, ...]``."""
    n_off = round(batch_size * offline_fraction)
    k_off, k_on = jax.random.split(key)
    parts = []
    if n_off > 0:
        parts.append(sample(offline, k_off, n_off))
    if batch_size - n_off > 0:
        parts.append(sample(online, k_on, batch_size - n_off))
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)
