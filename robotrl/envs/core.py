"""The functional environment state and the wrappers that batch and shape episodes.

An env is any object with ``spec: EnvSpec``, ``default_params()``, ``reset(key, params=None) ->
EnvState`` and ``step(state, action) -> EnvState`` (pure, jittable, unbatched). ``params`` are the
physical (and visual) parameters the episode runs with; an env given none uses its defaults.
Passing them *into* reset (rather than swapping them in afterwards) keeps the first observation
of an episode consistent with them (rendered colours, privileged disturbance). Wrappers compose:

    VmapWrapper(AutoReset(EpisodeLimit(DomainRandomization(ActionRepeat(env)))))

``make_training_env``/``make_eval_env`` build that stack from one place so every loop sees the same
episode semantics. Only the training stack can scale rewards (``RewardScale``): evaluation
returns stay in the task's own units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from robotrl.types import EnvSpec, Obs, PRNGKey


class EnvState(flax.struct.PyTreeNode):
    """State of one (or, under ``vmap``, a batch of) environment(s).

    Attributes:
      obs: observation after the last step (``[O]`` or a dict, see ``robotrl.types``).
      reward: reward of the last step, scalar float32.
      terminated: the last step ended the episode with no bootstrap (bool).
      truncated: the last step ended the episode by a limit; bootstrap from ``obs`` (bool).
      physics: the simulator's own state (any pytree).
      params: physical parameters this episode runs with; domain randomisation replaces them.
      key: the env's PRNG stream for noise, disturbances and resets.
      metrics: per-step scalars for logging (fixed keys from ``reset`` on).
      info: wrapper bookkeeping (fixed keys from ``reset`` on).
    """

    obs: Obs
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    physics: Any
    params: Any
    key: jax.Array
    metrics: dict[str, jax.Array] = flax.struct.field(default_factory=dict)
    info: dict[str, Any] = flax.struct.field(default_factory=dict)

    @property
    def done(self) -> jax.Array:
        """Episode ended, for either reason (use only to reset, never in a TD target)."""
        return jnp.logical_or(self.terminated, self.truncated)


class Wrapper:
    """Forwards everything to the inner env; subclasses override what they change."""

    def __init__(self, env: Any):
        self.env = env

    @property
    def spec(self) -> EnvSpec:
        return self.env.spec

    @property
    def unwrapped(self) -> Any:
        return getattr(self.env, "unwrapped", self.env)

    def default_params(self) -> Any:
        return self.env.default_params()

    def reset(self, key: PRNGKey, params: Any = None) -> EnvState:
        return self.env.reset(key, params)

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        return self.env.step(state, action)

    @property
    def relabel_reward(self) -> Callable[[Any, jax.Array], jax.Array] | None:
        """The env's reward curriculum hook (``relabel_reward(transition, env_steps)``), or None;
        wrappers that change rewards (``RewardScale``) change it too."""
        return getattr(self.env, "relabel_reward", None)


class RewardScale(Wrapper):
    """Multiplies every reward by ``scale`` > 0, and the spec's ``reward_range`` with it, so a
    classification critic derives its value range from the scaled rewards. A reward curriculum's
    relabelled rewards are scaled too."""

    def __init__(self, env: Any, scale: float):
        if not scale > 0:
            raise ValueError(f"reward scale must be positive, got {scale}")
        super().__init__(env)
        self.scale = float(scale)

    @property
    def spec(self) -> EnvSpec:
        spec = self.env.spec
        if spec.reward_range is None:
            return spec
        low, high = spec.reward_range
        return dataclasses.replace(spec, reward_range=(low * self.scale, high * self.scale))

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        state = self.env.step(state, action)
        return state.replace(reward=state.reward * self.scale)

    @property
    def relabel_reward(self) -> Callable[[Any, jax.Array], jax.Array] | None:
        inner = getattr(self.env, "relabel_reward", None)
        if inner is None:
            return None
        return lambda transition, env_steps: inner(transition, env_steps) * self.scale


class EpisodeLimit(Wrapper):
    """Truncates the episode after ``max_steps`` control steps (``spec.episode_length`` default)."""

    def __init__(self, env: Any, max_steps: int | None = None):
        super().__init__(env)
        self.max_steps = max_steps or env.spec.episode_length

    @property
    def spec(self) -> EnvSpec:
        return dataclasses.replace(self.env.spec, episode_length=self.max_steps)

    def reset(self, key: PRNGKey, params: Any = None) -> EnvState:
        state = self.env.reset(key, params)
        return state.replace(info={**state.info, "steps": jnp.zeros((), jnp.int32)})

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        steps = state.info["steps"] + 1
        state = self.env.step(state, action)
        truncated = jnp.logical_or(state.truncated, steps >= self.max_steps)
        truncated = jnp.logical_and(truncated, jnp.logical_not(state.terminated))
        return state.replace(truncated=truncated, info={**state.info, "steps": steps})


class ActionRepeat(Wrapper):
    """Applies each action ``repeat`` times; rewards are summed, stopping at the episode's end."""

    def __init__(self, env: Any, repeat: int):
        super().__init__(env)
        self.repeat = repeat

    @property
    def spec(self) -> EnvSpec:
        spec = self.env.spec
        return dataclasses.replace(
            spec,
            ctrl_dt=spec.ctrl_dt * self.repeat,
            episode_length=max(1, spec.episode_length // self.repeat),
            reward_range=None
            if spec.reward_range is None
            else tuple(r * self.repeat for r in spec.reward_range),
        )

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        def body(carry, _):
            state, total, ended = carry
            new = self.env.step(state, action)
            # Once the episode has ended, later sub-steps are discarded.
            new = jax.tree.map(lambda a, b: jnp.where(ended, a, b), state, new)
            total = total + jnp.where(ended, 0.0, new.reward)
            return (new, total, jnp.logical_or(ended, new.done)), None

        init = (state, jnp.zeros(()), jnp.zeros((), bool))
        (state, total, _), _ = jax.lax.scan(body, init, None, length=self.repeat)
        return state.replace(reward=total)


class DomainRandomization(Wrapper):
    """Draws new parameters for every episode: ``randomize(key, default_params) -> params``,
    handed to the env's reset (explicit ``params`` given to ``reset`` win).

    ``randomize`` is a pure function of the env's default parameters, so evaluation on held-out
    parameter sets is another ``randomize`` with other ranges.
    """

    def __init__(self, env: Any, randomize: Callable[[PRNGKey, Any], Any]):
        super().__init__(env)
        self.randomize = randomize

    def reset(self, key: PRNGKey, params: Any = None) -> EnvState:
        key, sub = jax.random.split(key)
        if params is None:
            params = self.randomize(sub, self.env.default_params())
        return self.env.reset(key, params)


class AutoReset(Wrapper):
    """Resets an env whose episode ended; keeps that step's reward and flags.

    ``info["final_obs"]`` holds the true last observation of the step (equal to ``obs`` unless the
    episode just ended), which is the ``next_obs`` a transition must store.
    """

    def reset(self, key: PRNGKey, params: Any = None) -> EnvState:
        state = self.env.reset(key, params)
        return state.replace(info={**state.info, "final_obs": state.obs})

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        info = {k: v for k, v in state.info.items() if k != "final_obs"}
        state = self.env.step(state.replace(info=info), action)
        key, sub = jax.random.split(state.key)
        fresh = self.env.reset(sub)
        done = state.done

        def pick(new, old):
            return jax.tree.map(lambda a, b: jnp.where(done, a, b), new, old)

        # Reward, flags and metrics describe the step just taken; the rest starts afresh.
        return state.replace(
            obs=pick(fresh.obs, state.obs),
            physics=pick(fresh.physics, state.physics),
            params=pick(fresh.params, state.params),
            key=pick(fresh.key, key),
            info={**pick(fresh.info, state.info), "final_obs": state.obs},
        )


class VmapWrapper(Wrapper):
    """Batches an unbatched env over ``num_envs`` copies with ``jax.vmap``."""

    def __init__(self, env: Any, num_envs: int):
        super().__init__(env)
        self.num_envs = num_envs

    def reset(self, key: PRNGKey, params: Any = None) -> EnvState:
        """Resets every copy; ``params``, when given, carry a leading ``[num_envs]`` axis."""
        keys = jax.random.split(key, self.num_envs)
        if params is None:
            return jax.vmap(lambda k: self.env.reset(k))(keys)
        return jax.vmap(self.env.reset)(keys, params)

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        return jax.vmap(self.env.step)(state, action)


def make_training_env(
    env: Any,
    num_envs: int,
    *,
    episode_length: int | None = None,
    action_repeat: int = 1,
    randomize: Callable[[PRNGKey, Any], Any] | None = None,
    reward_scale: float = 1.0,
) -> VmapWrapper:
    """The standard training stack: batched, auto-resetting, time-limited; rewards times
    ``reward_scale`` (``RewardScale``)."""
    env = _episodes(env, episode_length, action_repeat, randomize)
    if reward_scale != 1.0:
        env = RewardScale(env, reward_scale)
    return VmapWrapper(AutoReset(env), num_envs)


def make_eval_env(
    env: Any,
    num_envs: int,
    *,
    episode_length: int | None = None,
    action_repeat: int = 1,
    randomize: Callable[[PRNGKey, Any], Any] | None = None,
) -> VmapWrapper:
    """Like the training stack but without auto-reset: each env plays exactly one episode."""
    return VmapWrapper(_episodes(env, episode_length, action_repeat, randomize), num_envs)


def _episodes(env, episode_length, action_repeat, randomize) -> EpisodeLimit:
    """Action repeat, then per-episode randomisation, then the time limit."""
    if action_repeat > 1:
        env = ActionRepeat(env, action_repeat)
    if randomize is not None:
        env = DomainRandomization(env, randomize)
    return EpisodeLimit(env, episode_length)
