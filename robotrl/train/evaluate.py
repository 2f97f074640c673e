"""Evaluation: the deterministic policy for N episodes, summarised as mean/std/IQM."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.envs.host import HostEnv
from robotrl.types import Algorithm, PRNGKey


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of values (robust to a few outliers)."""
    x = np.sort(np.asarray(x, np.float64).ravel())
    n = len(x)
    lo, hi = int(np.floor(0.25 * n)), int(np.ceil(0.75 * n))
    return float(x[lo:hi].mean()) if hi > lo else float(x.mean())


def summarize(returns: np.ndarray, prefix: str = "eval/return") -> dict[str, float]:
    """Mean, std and IQM of episode returns (over every seed and episode given)."""
    r = np.asarray(returns, np.float64)
    return {
        f"{prefix}_mean": float(r.mean()),
        f"{prefix}_std": float(r.std()),
        f"{prefix}_iqm": iqm(r),
    }


class EvalResult(NamedTuple):
    """Deterministic-policy episodes: ``returns [S, B]``, the env's metrics at each episode's
    last step (``name -> [S, B]``: laps driven, final position error...), and, where the env
    judges episodes (``env.success(traces, lengths)``), which ones succeeded ``[S, B]``."""

    returns: np.ndarray
    metrics: dict[str, np.ndarray]
    success: np.ndarray | None = None


def summarize_eval(result: EvalResult) -> dict[str, float]:
    """Return statistics, the mean of every final-step metric and the success rate, keyed
    ``eval/...``."""
    row = summarize(result.returns)
    for name, values in result.metrics.items():
        row[f"eval/{name}"] = float(np.mean(values))
    if result.success is not None:
        row["eval/success_rate"] = float(np.mean(result.success))
    return row


def make_evaluator(eval_env: Any, algo: Algorithm, episode_length: int):
    """``evaluate(algo_state, key, obs_stats=None) -> (returns [B], lengths [B], metrics,
    traces)``.

    ``eval_env`` is a batched env without auto-reset (``make_eval_env``); each env plays one
    episode of at most ``episode_length`` steps; rewards after its end are ignored.
    ``metrics`` (``name -> [B]``) are the env's metrics at each episode's last step, ``traces``
    (``name -> [T, B]``) the same metrics at every step (held at their last value after an
    episode ends). With observation normalisation, ``obs_stats`` are the training run's
    (frozen) statistics.
    """

    def evaluate(algo_state: Any, key: PRNGKey, obs_stats: Any = None):
        policy, params = algo.make_policy(algo_state, True)
        k_reset, key = jax.random.split(key)
        state = (
            eval_env.reset(k_reset)
            if obs_stats is None
            else eval_env.reset(k_reset, stats=obs_stats)
        )
        batch = jax.tree.leaves(state.reward)[0].shape
        carry = policy.init_carry(batch)

        def body(c, _):
            state, carry, ret, length, alive, last, key = c
            key, sub = jax.random.split(key)
            action, carry, _ = policy.step(params, carry, state.obs, sub)
            state = eval_env.step(state, action)
            ret = ret + jnp.where(alive, state.reward, 0.0)
            length = length + alive.astype(jnp.int32)
            last = jax.tree.map(lambda new, old: jnp.where(alive, new, old), state.metrics, last)
            alive = jnp.logical_and(alive, jnp.logical_not(state.done))
            return (state, carry, ret, length, alive, last, key), last

        init = (
            state,
            carry,
            jnp.zeros(batch),
            jnp.zeros(batch, jnp.int32),
            jnp.ones(batch, bool),
            state.metrics,
            key,
        )
        (_, _, ret, length, _, last, _), traces = jax.lax.scan(
            body, init, None, length=episode_length
        )
        return ret, length, last, traces

    return evaluate


def evaluate_host(
    env: HostEnv,
    algo: Algorithm,
    algo_state: Any,
    seed: int,
    max_steps: int | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> EvalResult:
    """Plays the first episode of every env in a host batch (``transform``: the run's frozen
    observation normaliser, if any); returns ``[1, B]`` returns and final-step metrics."""
    policy, params = algo.make_policy(algo_state, True)
    act = jax.jit(policy.step)
    transform = transform or (lambda x: x)
    obs = transform(env.reset(seed))
    carry = policy.init_carry((env.num_envs,))
    ret = np.zeros(env.num_envs)
    alive = np.ones(env.num_envs, bool)
    last: dict[str, np.ndarray] = {}
    key = jax.random.PRNGKey(seed)
    for _ in range(max_steps or env.spec.episode_length):
        key, sub = jax.random.split(key)
        action, carry, _ = act(params, carry, obs, sub)
        out = env.step(np.asarray(action))
        ret += np.where(alive, out.reward, 0.0)
        for name, value in out.metrics.items():
            last[name] = np.where(alive, value, last.get(name, value))
        alive &= ~(out.terminated | out.truncated)
        obs = transform(out.obs)
        if not alive.any():
            break
    return EvalResult(ret[None], {k: v[None] for k, v in last.items()})
