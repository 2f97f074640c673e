"""Datasets from the project's own policies: uniform random actions, or a trained run's
checkpoint (a *medium* one partway through training, an *expert* one at the end).

The behaviour policy acts stochastically by default (as D4RL's behaviour policies did), so the
data covers more than one action per state. Functional envs collect in one jitted ``lax.scan``
over ``E`` parallel envs; host envs (native MuJoCo, gymnasium, dm_control) in a Python loop.
Both give ``[T, E]`` streams that ``dataset.from_streams`` cuts into episodes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.config import to_dict
from robotrl.data.dataset import Dataset, from_streams
from robotrl.envs.normalize import map_state
from robotrl.types import Transition


def _behaviour(exp: Any, algo_state: Any, stats: Any, deterministic: bool):
    """``act(obs, key) -> action`` for a batch, or None for uniform random actions."""
    if algo_state is None:
        return None
    policy, params = exp.algo.make_policy(algo_state, deterministic)
    if policy.init_carry((1,)) != ():
        raise ValueError("collecting with a recurrent policy is not supported yet")

    def act(obs, key):
        if stats is not None:
            obs = map_state(obs, stats.normalize)
        return policy.step(params, (), obs, key)[0]

    return act


def _uniform(spec, key, batch: int) -> jax.Array:
    low = jnp.asarray(spec.action_low, jnp.float32)
    high = jnp.asarray(spec.action_high, jnp.float32)
    return jax.random.uniform(key, (batch, spec.action_dim), minval=low, maxval=high)


def _functional_streams(exp, act, transitions: int, num_envs: int, seed: int) -> Transition:
    env = exp.training_env(num_envs)
    steps = math.ceil(transitions / num_envs)

    def step(state, key):
        action = _uniform(env.spec, key, num_envs) if act is None else act(state.obs, key)
        nxt = env.step(state, action)
        out = Transition(
            obs=state.obs,
            action=action,
            reward=nxt.reward,
            terminated=nxt.terminated,
            truncated=nxt.truncated,
            next_obs=nxt.info["final_obs"],
        )
        return nxt, out

    @jax.jit
    def run(key):
        k_reset, k_steps = jax.random.split(key)
        return jax.lax.scan(step, env.reset(k_reset), jax.random.split(k_steps, steps))[1]

    return jax.device_get(run(jax.random.PRNGKey(seed)))


def _host_streams(exp, act, transitions: int, num_envs: int, seed: int) -> Transition:
    env = exp.training_env(num_envs)
    steps = math.ceil(transitions / num_envs)
    act = None if act is None else jax.jit(act)
    rng, key = np.random.default_rng(seed), jax.random.PRNGKey(seed)
    low = np.asarray(env.spec.action_low, np.float32)
    high = np.asarray(env.spec.action_high, np.float32)
    rows = []
    try:
        obs = env.reset(seed)
        for _ in range(steps):
            key, k_act = jax.random.split(key)
            if act is None:
                action = rng.uniform(low, high, (num_envs, len(low))).astype(np.float32)
            else:
                action = np.asarray(act(obs, k_act), np.float32)
            out = env.step(action)
            rows.append(
                Transition(obs, action, out.reward, out.terminated, out.truncated, out.final_obs)
            )
            obs = out.obs
    finally:
        env.close()
    return jax.tree.map(lambda *xs: np.stack(xs), *rows)


def collect(
    exp: Any,
    algo_state: Any = None,
    *,
    transitions: int,
    num_envs: int = 16,
    seed: int = 0,
    obs_stats: Any = None,
    deterministic: bool = False,
    gamma: float = 0.99,
    behaviour: dict[str, Any] | None = None,
) -> Dataset:
    """About ``transitions`` steps (rounded up to whole ``num_envs`` batches) of the behaviour
    policy in ``exp``'s env: ``algo_state``'s policy, or uniform random actions when None."""
    act = _behaviour(exp, algo_state, obs_stats, deterministic)
    streams_of = _host_streams if exp.is_host else _functional_streams
    streams = streams_of(exp, act, transitions, num_envs, seed)
    meta = {
        "env_name": exp.cfg.env.name,
        "env": to_dict(exp.cfg.env),
        "behaviour": {
            "policy": "random" if algo_state is None else "checkpoint",
            "deterministic": deterministic,
            "seed": seed,
            **(behaviour or {}),
        },
    }
    return from_streams(streams, gamma, meta)


def collect_from(
    source: str,
    *,
    transitions: int,
    num_envs: int = 16,
    seed: int = 0,
    step: int | None = None,
    deterministic: bool = False,
    gamma: float = 0.99,
    env_overrides: tuple[str, ...] = (),
) -> Dataset:
    """``source`` is a run directory (its checkpoint ``step``, default the latest) or an env
    name (uniform random actions). The env is the run's own, changed by ``env_overrides``."""
    from robotrl import experiment
    from robotrl.config import apply_overrides

    if Path(source).is_dir():
        # Datasets hold the task's own rewards, whatever env.reward_scale the run trained with.
        restored = experiment.restore_run(source, step, ("env.reward_scale=1", *env_overrides))
        behaviour = {
            "run": str(restored.run.path),
            "checkpoint_step": restored.step,
            "preset": restored.exp.cfg.name,
            "algo": restored.exp.cfg.algo_name,
        }
        exp, algo_state, stats = restored.exp, restored.algo_state, restored.obs_stats
    else:
        data = apply_overrides({"env": {"name": source}}, env_overrides)
        exp = experiment.Experiment(experiment.parse_config(data))
        algo_state, stats, behaviour = None, None, {}
    return collect(
        exp,
        algo_state,
        transitions=transitions,
        num_envs=num_envs,
        seed=seed,
        obs_stats=stats,
        deterministic=deterministic,
        gamma=gamma,
        behaviour=behaviour,
    )
