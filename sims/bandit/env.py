"""A 2-D one-step bandit (ARSQ's motivating example): the reward depends on which quadrant of
``[-1, 1]^2`` the action is in, one decision per episode.

    quadrant of (a_0, a_1)   reward   in the demonstrations (``demos.DEMO_MIX``)
    (+, +)                    1.0     rare (5%)      the optimum
    (-, -)                    0.1     common (55%)   the safe, mediocre mode
    (+, -), (-, +)           -1.0     common (20% each)

(``a >= 0`` counts as ``+``.) Averaged over the data, each dimension's ``+`` half looks worse
than its ``-`` half (dimension 0: ``+`` is (+, +) 5% at 1 and (+, -) 20% at -1, mean -0.6;
``-`` is (-, -) 55% at 0.1 and (-, +) 20% at -1, mean -0.19), so a Q factorised per dimension
picks (-, -); the joint optimum is only visible to a Q that conditions one dimension on the
other. The observation is a constant ``[1]``; every step terminates (no bootstrap).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from robotrl.envs import EnvState
from robotrl.types import ArraySpec, EnvSpec, Field, PRNGKey


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bandit2DConfig:
    optimal_reward: float = 1.0  # (+, +): the rare mode of the data
    common_reward: float = 0.1  # (-, -): the common, mediocre mode
    bad_reward: float = -1.0  # (+, -) and (-, +): the common bad modes
    episode_length: int = 1  # control steps (one decision)


# No physical parameters to randomise.
PARAMETER_SETS: dict = {}


def quadrant_reward(action: jax.Array, config: Bandit2DConfig) -> jax.Array:
    """Reward of actions ``[..., 2]`` by quadrant (see the module docstring)."""
    plus = action >= 0
    both, neither = plus[..., 0] & plus[..., 1], ~plus[..., 0] & ~plus[..., 1]
    return jnp.where(
        both, config.optimal_reward, jnp.where(neither, config.common_reward, config.bad_reward)
    ).astype(jnp.float32)


class Bandit2D:
    """Functional one-step bandit; ``metrics["optimal"]`` is 1 when the (+, +) mode was picked."""

    def __init__(self, config: Bandit2DConfig | None = None):
        self.config = config or Bandit2DConfig()

    @property
    def spec(self) -> EnvSpec:
        c = self.config
        rewards = (c.optimal_reward, c.common_reward, c.bad_reward)
        return EnvSpec(
            name="bandit2d",
            obs=ArraySpec((1,)),
            action_low=(-1.0, -1.0),
            action_high=(1.0, 1.0),
            ctrl_dt=1.0,
            episode_length=c.episode_length,
            obs_layout=(Field("bias", 1, "", "", "constant 1: the bandit has no state"),),
            action_layout=(Field("action", 2, "", "", "the arm: its quadrant sets the reward"),),
            reward_range=(min(rewards), max(rewards)),
        )

    def default_params(self) -> dict:
        return {}

    def reset(self, key: PRNGKey, params: dict | None = None) -> EnvState:
        return EnvState(
            obs=jnp.ones((1,), jnp.float32),
            reward=jnp.zeros(()),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            physics=jnp.zeros(()),
            params=self.default_params() if params is None else params,
            key=key,
            metrics={"optimal": jnp.zeros(())},
            info={},
        )

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        reward = quadrant_reward(action, self.config)
        return state.replace(
            reward=reward,
            terminated=jnp.ones((), bool),  # one decision: no bootstrap
            truncated=jnp.zeros((), bool),
            metrics={"optimal": (reward == self.config.optimal_reward).astype(jnp.float32)},
        )
