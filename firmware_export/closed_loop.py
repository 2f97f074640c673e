"""Closed loop: an exported policy (numpy bundle, the generated C through ctypes, its int8 twin)
flies the simulated robot from the same initial states as the JAX policy.

The env is a functional robotrl env (``reset(key)``/``step``) batched over the episodes; the
policy is any host function ``act(obs [B, O]) -> actions [B, A]`` in the env's action units (a
``PolicyBundle.act`` or ``CPolicy.act``). Episodes whose env judges them (``env.success``) report
success the same way evaluation does. Only jax is needed here for the simulator, never for the
policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.envs import make_eval_env
from robotrl.types import actor_obs


@dataclasses.dataclass(frozen=True)
class Flight:
    """What ``fly`` measured for ``B`` episodes."""

    returns: np.ndarray  # [B]
    lengths: np.ndarray  # [B] steps before the episode ended
    success: np.ndarray | None  # [B] bool, where the env judges episodes
    traces: dict[str, np.ndarray]  # metric -> [T, B], the env's per-step metrics
    actions: np.ndarray  # [T, B, A] what the policy commanded

    @property
    def success_rate(self) -> float | None:
        return None if self.success is None else float(np.mean(self.success))


def fly(
    env,
    act: Callable[[np.ndarray], np.ndarray],
    episodes: int = 100,
    seed: int = 0,
) -> Flight:
    """Plays ``episodes`` episodes of ``env`` (unbatched functional env) with a host policy.

    The initial states depend only on ``(env, episodes, seed)``, so two policies flown with the
    same arguments start from the same states and meet the same disturbances; they are those
    of robotrl's own evaluation (``robotrl.train.evaluate``) with key ``PRNGKey(seed)``.
    """
    batched = make_eval_env(env, episodes)
    spec = batched.spec
    length = int(spec.episode_length)
    low, high = np.asarray(spec.action_low), np.asarray(spec.action_high)
    reset = jax.jit(batched.reset)
    step = jax.jit(batched.step)
    k_reset, _ = jax.random.split(jax.random.PRNGKey(seed))  # as the evaluator splits it
    state = reset(k_reset)
    alive = np.ones(episodes, bool)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, np.int64)
    traces: dict[str, list[np.ndarray]] = {}
    actions = []
    for _ in range(length):
        obs = np.asarray(actor_obs(state.obs), np.float32)
        action = np.clip(np.asarray(act(obs), np.float32), low, high)
        actions.append(action)
        state = step(state, jnp.asarray(action))
        reward, done = np.asarray(state.reward), np.asarray(state.done)
        returns += np.where(alive, reward, 0.0)
        lengths += alive
        for name, value in state.metrics.items():
            traces.setdefault(name, []).append(np.asarray(value))
        alive &= ~done
    stacked = {name: np.stack(values) for name, values in traces.items()}
    judge = getattr(getattr(env, "unwrapped", env), "success", None)
    success = None
    if judge is not None:
        # Steps after an episode ended repeat its last metrics (as evaluation does).
        full = {name: _hold_last(values, lengths) for name, values in stacked.items()}
        success = np.asarray(judge(full, lengths), bool)
    return Flight(returns, lengths, success, stacked, np.stack(actions))


def _hold_last(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``[T, B]`` with each column frozen after its episode's last step."""
    t = np.arange(values.shape[0])[:, None]
    last = np.clip(lengths - 1, 0, values.shape[0] - 1)[None, :]
    return np.where(t <= last, values, np.take_along_axis(values, last, axis=0))
