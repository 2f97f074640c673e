"""The contracts every part of robotrl builds on.

Shape letters used in docstrings across the package:
  B  batch (environments or minibatch)     T  time (trajectory window, rollout)
  N  ensemble members                      A  action dimension
  K  diffusion / denoising steps           M  value-head outputs (1 for mse, bins otherwise)
  S  seeds (vmapped training runs)

Observations are either one array (the actor's state vector) or a dict of arrays with at least
``"state"`` (what the actor sees) and optionally ``"privileged_state"`` (what an asymmetric critic
sees) and other named inputs such as ``"pixels"``. ``actor_obs``/``critic_obs`` pick the right one,
so every algorithm treats both forms alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np

PRNGKey = jax.Array
Params = Any  # a pytree of arrays
Carry = Any  # a pytree; () for feed-forward policies
Metrics = dict[str, jax.Array]
Obs = Any  # jax.Array | Mapping[str, jax.Array]

STATE_KEY = "state"
PRIVILEGED_KEY = "privileged_state"


@dataclasses.dataclass(frozen=True)
class Field:
    """A named slice of a flat vector (observation or action), with units and frame.

    The same layout object is used by the env, the deploy node and the C export, so a robot's
    sensor assembly and the simulator cannot drift apart silently.
    """

    name: str
    size: int
    units: str = ""
    frame: str = ""
    description: str = ""


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment: everything a network, a buffer or an exporter needs.

    Attributes:
      name: registry name of the task.
      obs: the actor's (state) observation, a flat vector ``[O]``.
      action_low, action_high: per-dimension bounds of the action ``[A]`` the env accepts.
      ctrl_dt: control period in seconds.
      episode_length: number of control steps after which the episode is truncated.
      obs_layout: named slices of the state observation, in order; sizes sum to ``obs.shape[0]``.
      action_layout: named slices of the action vector.
      privileged_obs: the critic-only observation for asymmetric actor-critic, or None.
      privileged_layout: named slices of ``privileged_obs``.
      extra_obs: other named observation arrays (e.g. ``"pixels"``), present in the obs dict.
      reward_range: (min, max) of one step's reward when known; classification critics derive
        their default value range from it.
      safe_action: what a robot should do when it cannot trust its policy (hover thrust, brake);
        None means zeros clipped into the bounds.
    """

    name: str
    obs: ArraySpec
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    ctrl_dt: float
    episode_length: int
    obs_layout: tuple[Field, ...] = ()
    action_layout: tuple[Field, ...] = ()
    privileged_obs: ArraySpec | None = None
    privileged_layout: tuple[Field, ...] = ()
    extra_obs: Mapping[str, ArraySpec] = dataclasses.field(default_factory=dict)
    reward_range: tuple[float, float] | None = None
    safe_action: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.action_low) != len(self.action_high):
            raise ValueError(f"{self.name}: action_low and action_high differ in length")
        if self.obs_layout and sum(f.size for f in self.obs_layout) != self.obs_dim:
            raise ValueError(f"{self.name}: obs_layout sizes do not sum to obs dim {self.obs_dim}")
        if self.action_layout and sum(f.size for f in self.action_layout) != self.action_dim:
            raise ValueError(f"{self.name}: action_layout sizes do not sum to {self.action_dim}")
        if self.privileged_layout and (
            self.privileged_obs is None
            or sum(f.size for f in self.privileged_layout) != self.critic_obs_dim
        ):
            raise ValueError(f"{self.name}: privileged_layout does not match privileged_obs")

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.obs.shape))

    @property
    def action_dim(self) -> int:
        return len(self.action_low)

    @property
    def critic_obs_dim(self) -> int:
        return int(np.prod(self.privileged_obs.shape)) if self.privileged_obs else self.obs_dim

    @property
    def obs_is_dict(self) -> bool:
        return self.privileged_obs is not None or bool(self.extra_obs)

    def obs_slices(self) -> dict[str, slice]:
        """Named slices into the flat state observation."""
        out, start = {}, 0
        for f in self.obs_layout:
            out[f.name] = slice(start, start + f.size)
            start += f.size
        return out


def actor_obs(obs: Obs) -> jax.Array:
    """The actor's input: the obs itself, or its ``"state"`` entry when obs is a dict."""
    return obs[STATE_KEY] if isinstance(obs, Mapping) else obs


def critic_obs(obs: Obs, privileged: bool) -> jax.Array:
    """The critic's input: the privileged state when asked for (asymmetric actor-critic)."""
    if privileged:
        if not isinstance(obs, Mapping) or PRIVILEGED_KEY not in obs:
            raise ValueError("privileged critic requested but the env has no privileged_state")
        return obs[PRIVILEGED_KEY]
    return actor_obs(obs)


class Transition(NamedTuple):
    """One environment step, batched by any leading axes (``[B]``, ``[T, B]``).

    ``terminated`` ends the episode with no bootstrap (a crash, a goal); ``truncated`` ends it by a
    time limit, so the value of ``next_obs`` is still bootstrapped. They are never merged.
    ``next_obs`` is the true successor observation, also at episode ends (not the reset obs).
    ``extras`` is free for policy data: log-probs, denoising chains, carries, MC returns.
    """

    obs: Obs
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: Obs
    extras: Any = ()


class Policy(NamedTuple):
    """One shape for feed-forward, recurrent/sequence, diffusion and distilled policies.

    ``init_carry(batch_shape)`` gives the carry at an episode start (``()`` for feed-forward);
    ``step(params, carry, obs, key) -> (action, carry, extras)`` acts on obs ``[*batch, O]``.
    """

    init_carry: Callable[[tuple[int, ...]], Carry]
    step: Callable[[Params, Carry, Obs, PRNGKey], tuple[jax.Array, Carry, Any]]


def no_carry(batch_shape: tuple[int, ...]) -> Carry:
    """``init_carry`` of a feed-forward policy."""
    del batch_shape
    return ()


class Algorithm(NamedTuple):
    """An algorithm is a bundle of pure functions over a pytree state.

    init(key) -> state
    update(state, batch, key) -> (state, metrics)   # batch: Transition [utd * batch_size]
    make_policy(state, deterministic) -> (Policy, params)

    An algorithm is made for one ``EnvSpec`` (``make(config, spec)``): everything the spec fixes
    (network shapes, action scaling, the value head's support, the target entropy) is static in
    the closures instead of being traced state. ``config`` is the frozen config the functions
    were made from.

    What ``update`` consumes is the one thing the loops need to know:
      ``rollout_length == 0`` (off-policy): after every env step, ``utd * batch_size``
        transitions sampled uniformly from a replay buffer (the loops read ``config.batch_size``
        and ``config.utd``);
      ``rollout_length == T`` (on-policy): after every T env steps, the last T steps of every env
        in time order, ``[T, E]`` (the replay buffer is then exactly one rollout long).
    """

    config: Any
    init: Callable[[PRNGKey], Any]
    update: Callable[[Any, Transition, PRNGKey], tuple[Any, Metrics]]
    make_policy: Callable[[Any, bool], tuple[Policy, Params]]
    rollout_length: int = 0
    # The deterministic policy as a portable layer program: state -> (spec, numpy arrays), see
    # ``policies.bundle``. None where the policy cannot be written that way.
    describe_policy: Callable[[Any], tuple[dict, dict]] | None = None


class Env(Protocol):
    """A functional environment; see ``robotrl.envs.EnvState``.

    ``reset(key, params=None)`` starts an episode with the given physical parameters (the env's
    ``default_params()`` when None). ``step`` sets ``reward``, ``terminated`` and ``truncated``
    of *that* step (never carries the previous step's flags over); time limits are the
    ``EpisodeLimit`` wrapper's job.
    """

    @property
    def spec(self) -> EnvSpec: ...

    def default_params(self) -> Any: ...

    def reset(self, key: PRNGKey, params: Any = None) -> Any: ...

    def step(self, state: Any, action: jax.Array) -> Any: ...
