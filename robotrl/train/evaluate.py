"""Evaluation: the deterministic policy for N episodes, summarised as mean/std/IQM."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.envs.host import HostEnv
from robotrl.types import Algorithm, Policy, PRNGKey


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


def every_k_steps(policy: Policy, interval: int, example_obs: Any) -> Policy:
    """``policy`` deciding every ``interval`` steps, open loop in between: at a decision its
    carry restarts and it sees the observation; between decisions it is stepped on the
    observation of the last decision. A feed-forward policy therefore holds its action; a
    sequence policy (SRL) plays its planned primitives, then replans from that stale
    observation. ``example_obs``: an observation batch of the shape the policy will see.
    ``interval`` 1 is ``policy`` itself."""
    if interval == 1:
        return policy

    def init_carry(batch_shape):
        seen = jax.tree.map(jnp.zeros_like, example_obs)
        return policy.init_carry(batch_shape), jnp.zeros(batch_shape, jnp.int32), seen

    def step(params, carry, obs, key):
        inner, count, seen = carry
        decide = count % interval == 0
        seen = jax.tree.map(lambda new, old: _select(decide, new, old), obs, seen)
        fresh = policy.init_carry(count.shape)
        inner = jax.tree.map(lambda f, c: _select(decide, f, c), fresh, inner)
        action, inner, extras = policy.step(params, inner, seen, key)
        return action, (inner, count + 1, seen), extras

    return Policy(init_carry, step)


def _select(flag: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    return jnp.where(flag.reshape(flag.shape + (1,) * (new.ndim - flag.ndim)), new, old)


def frequency_averaged_score(
    intervals: Sequence[int], returns: Sequence[float], floor: float, ceiling: float
) -> float:
    """FAS: the area under normalised return against decision frequency (log2 axis, from
    ``1 / max(intervals)`` to ``1 / min(intervals)``), divided by that span, so 1 is a policy
    as good as ``ceiling`` at every frequency and 0 one no better than ``floor`` (returns are
    normalised to ``(R - floor) / (ceiling - floor)`` and clipped to [0, 1])."""
    order = np.argsort(intervals)[::-1]  # lowest frequency first
    x = -np.log2(np.asarray(intervals, np.float64)[order])
    span = max(ceiling - floor, 1e-12)
    y = np.clip((np.asarray(returns, np.float64)[order] - floor) / span, 0.0, 1.0)
    if len(x) == 1:
        return float(y[0])
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def make_evaluator(eval_env: Any, algo: Algorithm, episode_length: int, decision_interval: int = 1):
    """``evaluate(algo_state, key, obs_stats=None) -> (returns [B], lengths [B], metrics,
    traces)``; ``decision_interval`` k > 1 queries the policy every k steps, open loop in
    between (``every_k_steps``).

    ``eval_env`` is a batched env without auto-reset (``make_eval_env``); each env plays one
    episode of at most ``episode_length`` steps; rewards after its end are ignored.
    ``metrics`` (``name -> [B]``) are the env's metrics at each episode's last step, ``traces``
    (``name -> [T, B]``) the same metrics at every step (held at their last value after an
    episode ends). With observation normalisation, ``obs_stats`` are the training run's
    (frozen) statistics.
    """

    play = play_episodes(eval_env, episode_length, decision_interval)

    def evaluate(algo_state: Any, key: PRNGKey, obs_stats: Any = None):
        policy, params = algo.make_policy(algo_state, True)
        return play(policy, params, key, obs_stats)

    return evaluate


def play_episodes(eval_env: Any, episode_length: int, decision_interval: int = 1):
    """``play(policy, params, key, obs_stats=None) -> (returns [B], lengths [B], metrics,
    traces)`` for any ``Policy`` (``make_evaluator`` gives it an algorithm's deterministic
    one)."""

    def play(policy: Policy, params: Any, key: PRNGKey, obs_stats: Any = None):
        k_reset, key = jax.random.split(key)
        state = (
            eval_env.reset(k_reset)
            if obs_stats is None
            else eval_env.reset(k_reset, stats=obs_stats)
        )
        policy = every_k_steps(policy, decision_interval, state.obs)
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

    return play


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
