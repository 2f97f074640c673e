"""The numpy replay buffer for host loops; the same layout and sampling as the device buffer."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


class HostReplay:
    """Ring buffer of pytrees with leaves ``[L, E, ...]`` in host memory."""

    def __init__(self, example: Any, capacity: int, seed: int = 0):
        num_envs = jax.tree.leaves(example)[0].shape[0]
        self.rows = max(1, capacity // num_envs)
        self.num_envs = num_envs
        self.data = jax.tree.map(
            lambda x: np.zeros((self.rows, *np.shape(x)), np.asarray(x).dtype), example
        )
        self.pos = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size * self.num_envs

    def add(self, item: Any) -> None:
        """Writes one row ``[E, ...]``."""

        def write(buf, x):
            buf[self.pos] = x

        jax.tree.map(write, self.data, item)
        self.pos = (self.pos + 1) % self.rows
        self.size = min(self.size + 1, self.rows)

    def sample(self, batch_size: int) -> Any:
        rows = self.rng.integers(0, max(self.size, 1), batch_size)
        envs = self.rng.integers(0, self.num_envs, batch_size)
        return jax.tree.map(lambda buf: buf[rows, envs], self.data)

    def sample_windows(self, batch_size: int, length: int) -> Any:
        oldest = self.pos if self.size == self.rows else 0
        start = self.rng.integers(0, max(self.size - length + 1, 1), batch_size)
        rows = (oldest + start[:, None] + np.arange(length)) % self.rows
        envs = self.rng.integers(0, self.num_envs, batch_size)[:, None]
        return jax.tree.map(lambda buf: buf[rows, envs], self.data)

    def state_dict(self) -> dict[str, Any]:
        return {"data": self.data, "pos": np.int64(self.pos), "size": np.int64(self.size)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data = jax.tree.map(np.asarray, state["data"])
        self.pos, self.size = int(state["pos"]), int(state["size"])
