"""Pendulum swing-up in pure JAX, step for step the dynamics, reward and observation of
gymnasium's ``Pendulum-v1`` (``tests/sims/test_pendulum.py`` checks it against gymnasium).

State: angle ``th`` (0 = upright) and angular velocity ``thdot``. Observation
``[cos th, sin th, thdot]``; action: torque in [-2, 2] N m; reward
``-(angle_normalize(th)^2 + 0.1 thdot^2 + 0.001 u^2)`` from the state before the step. Never
terminates; truncated after 200 steps by ``EpisodeLimit``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.envs import EnvState
from robotrl.types import ArraySpec, EnvSpec, Field, PRNGKey


@dataclasses.dataclass(frozen=True, kw_only=True)
class PendulumConfig:
    g: float = 10.0  # gravity, m/s^2 (gymnasium's default)
    mass: float = 1.0  # kg
    length: float = 1.0  # m
    max_speed: float = 8.0  # rad/s, velocity clip
    max_torque: float = 2.0  # N m, action bound
    dt: float = 0.05  # s, control period
    episode_length: int = 200  # control steps
    init_angle: float = math.pi  # reset draws th uniformly in [-init_angle, init_angle]
    init_speed: float = 1.0  # reset draws thdot uniformly in [-init_speed, init_speed]


def _angle_normalize(x: jax.Array) -> jax.Array:
    return ((x + jnp.pi) % (2 * jnp.pi)) - jnp.pi


class Pendulum:
    """Functional pendulum; ``params`` (mass, length, g) are per episode, for randomisation."""

    def __init__(self, config: PendulumConfig | None = None):
        self.config = config or PendulumConfig()

    @property
    def spec(self) -> EnvSpec:
        c = self.config
        max_cost = jnp.pi**2 + 0.1 * c.max_speed**2 + 0.001 * c.max_torque**2
        return EnvSpec(
            name="pendulum",
            obs=ArraySpec((3,)),
            action_low=(-c.max_torque,),
            action_high=(c.max_torque,),
            ctrl_dt=c.dt,
            episode_length=c.episode_length,
            obs_layout=(
                Field("cos_theta", 1, "", "", "cosine of the angle from upright"),
                Field("sin_theta", 1, "", "", "sine of the angle from upright"),
                Field("theta_dot", 1, "rad/s", "", "angular velocity"),
            ),
            action_layout=(Field("torque", 1, "N m", "", "motor torque"),),
            reward_range=(-float(max_cost), 0.0),
        )

    def default_params(self) -> dict[str, jax.Array]:
        c = self.config
        return {"g": jnp.float32(c.g), "mass": jnp.float32(c.mass), "length": jnp.float32(c.length)}

    def reset(self, key: PRNGKey, params: dict[str, jax.Array] | None = None) -> EnvState:
        key, k_th, k_dot = jax.random.split(key, 3)
        c = self.config
        th = jax.random.uniform(k_th, (), minval=-c.init_angle, maxval=c.init_angle)
        thdot = jax.random.uniform(k_dot, (), minval=-c.init_speed, maxval=c.init_speed)
        return self.reset_to(key, th, thdot, params)

    def reset_to(
        self, key: PRNGKey, th: jax.Array, thdot: jax.Array, params: dict | None = None
    ) -> EnvState:
        """Starts an episode from a given angle and velocity (used by parity tests)."""
        physics = jnp.stack([th, thdot]).astype(jnp.float32)
        return EnvState(
            obs=self._obs(physics),
            reward=jnp.zeros(()),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            physics=physics,
            params=self.default_params() if params is None else params,
            key=key,
            metrics={"torque_abs": jnp.zeros(())},
            info={},
        )

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        c, p = self.config, state.params
        th, thdot = state.physics[0], state.physics[1]
        u = jnp.clip(action[0], -c.max_torque, c.max_torque)
        cost = _angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
        accel = (
            3 * p["g"] / (2 * p["length"]) * jnp.sin(th) + 3.0 / (p["mass"] * p["length"] ** 2) * u
        )
        new_thdot = jnp.clip(thdot + accel * c.dt, -c.max_speed, c.max_speed)
        new_th = th + new_thdot * c.dt
        physics = jnp.stack([new_th, new_thdot])
        return state.replace(
            obs=self._obs(physics),
            reward=-cost,
            terminated=jnp.zeros((), bool),  # every step sets its own flags
            truncated=jnp.zeros((), bool),
            physics=physics,
            metrics={"torque_abs": jnp.abs(u)},
        )

    def render(self, state: EnvState, size: int = 256) -> np.ndarray:
        """The rod and the bob seen from the front, ``[size, size, 3]`` uint8."""
        from PIL import Image, ImageDraw

        th = float(np.asarray(state.physics)[0])
        img = Image.new("RGB", (size, size), (245, 245, 240))
        draw = ImageDraw.Draw(img)
        c, r = size / 2, 0.38 * size
        tip = (c + r * np.sin(th), c - r * np.cos(th))  # th = 0 points up
        draw.line([(c, c), tip], fill=(200, 70, 50), width=max(2, size // 32))
        draw.ellipse(
            [tip[0] - size / 20, tip[1] - size / 20, tip[0] + size / 20, tip[1] + size / 20],
            fill=(60, 60, 60),
        )
        draw.ellipse([c - 3, c - 3, c + 3, c + 3], fill=(0, 0, 0))
        return np.asarray(img)

    @staticmethod
    def _obs(physics: jax.Array) -> jax.Array:
        th, thdot = physics[0], physics[1]
        return jnp.stack([jnp.cos(th), jnp.sin(th), thdot])
