"""Running observation statistics and the batched normalisation wrapper.

The statistics live in the env state (``info["obs_stats"]``), so they are checkpointed with the run
and exported with the policy; a deployed policy applies the same ``normalize`` to raw sensor data.
As with any running normaliser, transitions stored early in a replay buffer were normalised with
older statistics; freeze the statistics (``update=False``) after a warm-up if that matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from robotrl.envs.core import EnvState, Wrapper
from robotrl.types import STATE_KEY, Obs, PRNGKey


class RunningStats(flax.struct.PyTreeNode):
    """Mean and variance of a stream of vectors ``[O]`` (parallel Welford merge)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, dim: int) -> RunningStats:
        return cls(jnp.zeros(dim), jnp.ones(dim), jnp.zeros(()))

    def update(self, x: jax.Array) -> RunningStats:
        """Merges a batch ``x: [B, O]``."""
        n = x.shape[0]
        batch_mean, batch_var = x.mean(0), x.var(0)
        total = self.count + n
        delta = batch_mean - self.mean
        mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        return RunningStats(mean, m2 / total, total)

    def normalize(self, x: jax.Array, clip: float = 10.0) -> jax.Array:
        mean = jnp.broadcast_to(self.mean, x.shape)
        std = jnp.broadcast_to(jnp.sqrt(self.var + 1e-8), x.shape)
        return jnp.clip((x - mean) / std, -clip, clip)


def map_state(obs: Obs, fn) -> Obs:
    """``fn`` applied to the actor's state observation (the obs itself, or its ``"state"``)."""
    if isinstance(obs, Mapping):
        return {**obs, STATE_KEY: fn(obs[STATE_KEY])}
    return fn(obs)


def _state_of(obs: Obs) -> jax.Array:
    return obs[STATE_KEY] if isinstance(obs, Mapping) else obs


class ObsNormalization(Wrapper):
    """Normalises the actor observation of a *batched* env with running statistics.

    Wrap the output of ``make_training_env`` (statistics are shared across the batch). With
    ``update=False`` the statistics stay as they are (evaluation, frozen deployment).
    """

    def __init__(self, env, update: bool = True, clip: float = 10.0):
        super().__init__(env)
        self.update = update
        self.clip = clip

    def reset(
        self, key: PRNGKey, params: Any = None, stats: RunningStats | None = None
    ) -> EnvState:
        """``stats``: start from these statistics (evaluation with a run's frozen ones)."""
        state = self.env.reset(key, params)
        if stats is None:
            stats = RunningStats.create(self.spec.obs_dim).update(_state_of(state.obs))
        return self._normalized(state, stats)

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        stats = state.info["obs_stats"]
        raw = state.info["raw_obs"]
        inner = {k: v for k, v in state.info.items() if k not in ("obs_stats", "raw_obs")}
        state = self.env.step(state.replace(obs=raw, info=inner), action)
        if self.update:
            stats = stats.update(_state_of(state.obs))
        return self._normalized(state, stats)

    def _normalized(self, state: EnvState, stats: RunningStats) -> EnvState:
        norm = lambda o: map_state(o, lambda x: stats.normalize(x, self.clip))
        info = {**state.info, "obs_stats": stats, "raw_obs": state.obs}
        if "final_obs" in info:
            info["final_obs"] = norm(info["final_obs"])
        return state.replace(obs=norm(state.obs), info=info)


class HostObsNormalizer:
    """``RunningStats`` for host loops, in numpy: the same statistics, merge and normalisation,
    so a bundle exports them identically whichever loop trained the policy."""

    def __init__(self, dim: int, clip: float = 10.0):
        self.mean = np.zeros(dim)
        self.var = np.ones(dim)
        self.count = 0.0
        self.clip = clip

    def update(self, x: np.ndarray) -> None:
        """Merges a batch ``x: [B, O]``."""
        x = np.asarray(x, np.float64)
        n = x.shape[0]
        batch_mean, batch_var = x.mean(0), x.var(0)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = total

    def normalize(self, x: np.ndarray, clip: float | None = None) -> np.ndarray:
        clip = self.clip if clip is None else clip
        return np.clip((np.asarray(x) - self.mean) / np.sqrt(self.var + 1e-8), -clip, clip).astype(
            np.float32
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "var": self.var, "count": np.float64(self.count)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.mean = np.asarray(state["mean"], np.float64)
        self.var = np.asarray(state["var"], np.float64)
        self.count = float(state["count"])
