"""One definition of gymnasium's v5 MuJoCo locomotion tasks, shared by both backends.

Hopper, HalfCheetah, Walker2d and Ant as ``gymnasium/envs/mujoco/*_v5.py`` define them (default
arguments): the model XML shipped inside gymnasium, frame skip, observation, reward terms,
healthy ranges and reset noise. Every function here is pure over an array namespace ``xp``
(``numpy`` or ``jax.numpy``) and works on any leading batch axes, so the MJX backend calls them
under ``vmap`` and the native backend on a whole ``[B, ...]`` batch at once: the two cannot drift
apart.

Units: positions in m (slide joints) or rad (hinges; Ant's free joint: m and a unit quaternion
w, x, y, z), velocities in m/s and rad/s, ``cfrc_ext`` (Ant) in N and N m (MuJoCo's com-based
[torque, force] per body), time in s. One control step is ``frame_skip`` physics steps of the
XML's ``timestep``; ``dt = timestep * frame_skip``.

Reward of one control step, with ``x_velocity = (x_after - x_before) / dt`` of the torso::

    reward = (forward_reward_weight * x_velocity + healthy_reward * healthy)
             - (ctrl_cost_weight * sum(action^2) + contact_cost_weight * sum(clip(cfrc_ext)^2))

(HalfCheetah: no healthy or contact term; only Ant has the contact term.) v5 semantics: the
healthy reward is paid only while healthy, and ``terminated = not healthy`` when
``terminate_when_unhealthy``. Two details gymnasium has and we keep: Ant's x/y position is the
torso body's ``xpos``, which after ``mj_step`` is the last Runge-Kutta stage's kinematics (not the
final ``qpos``), and Ant's ``cfrc_ext`` is zero in the observation right after a reset (gymnasium's
``set_state`` runs ``mj_forward``, which does not compute it). The only intended difference:
actions are clipped to the actuator range before the control cost (gymnasium charges the raw
action; equal for in-range actions, which is all a squashed policy emits).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

HEALTH_KINDS = ("none", "hopper", "walker", "ant")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LocomotionConfig:
    """Settings shared by the MJX and the native backend; None keeps the task's v5 default."""

    episode_length: int = 1000  # control steps before truncation (gymnasium's TimeLimit)
    terminate_when_unhealthy: bool = True  # v5 default; False keeps going (and pays 0 healthy)
    forward_reward_weight: float | None = None  # per m/s of torso x velocity
    ctrl_cost_weight: float | None = None  # per unit of sum(action^2)
    healthy_reward: float | None = None  # per control step while healthy
    contact_cost_weight: float | None = None  # Ant: per (N or N m)^2 of clipped cfrc_ext
    reset_noise_scale: float | None = None  # half-width (uniform) or std (normal) of reset noise
    solver_iterations: int | None = None  # MJX only: constraint solver iterations (None: XML's)
    # MJX only: line-search iterations. Under vmap MJX's line search runs all of them (a scan),
    # and the XML's 50 made HalfCheetah 2.6x slower than 8 with the same parity errors here.
    ls_iterations: int | None = 8
    render_height: int = 240  # px
    render_width: int = 320  # px
    camera: str = "track"  # camera of the XML used by render (every task's XML has "track")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Noise:
    """Reset noise added to ``init_qpos``/``init_qvel``: ``U(-scale, scale)`` or
    ``scale * N(0, 1)``."""

    kind: str  # "uniform" | "normal"
    scale: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class LocomotionTask:
    """Static definition of one task; the methods are the task's pure functions."""

    name: str  # our name ("hopper")
    gym_id: str  # the gymnasium id it reproduces ("Hopper-v5")
    xml: str  # file name inside gymnasium/envs/mujoco/assets
    frame_skip: int  # physics steps per control step
    skipped_qpos: int  # leading qpos entries left out of the observation (x, and y for Ant)
    clip_qvel: float | None  # observation clips qvel to [-clip, clip] (Hopper, Walker2d)
    include_cfrc_ext: bool  # observation ends with clip(cfrc_ext[1:]) flattened (Ant)
    main_body: int | None  # body whose xpos x/y is the position (Ant); None: qpos[0]
    forward_reward_weight: float
    ctrl_cost_weight: float
    healthy_reward: float  # 0 for HalfCheetah
    contact_cost_weight: float  # 0 except Ant
    contact_force_range: tuple[float, float] = (-1.0, 1.0)  # N / N m, Ant's clip of cfrc_ext
    health: str  # which of gymnasium's is_healthy: one of HEALTH_KINDS
    healthy_z_range: tuple[float, float] = (-np.inf, np.inf)  # m
    healthy_angle_range: tuple[float, float] = (-np.inf, np.inf)  # rad, torso pitch qpos[2]
    healthy_state_range: tuple[float, float] = (-np.inf, np.inf)  # Hopper: qpos[2:], qvel
    terminate_when_unhealthy: bool = True
    qpos_noise: Noise
    qvel_noise: Noise

    def __post_init__(self) -> None:
        if self.health not in HEALTH_KINDS:
            raise ValueError(f"{self.name}: health must be one of {HEALTH_KINDS}")
        for noise in (self.qpos_noise, self.qvel_noise):
            if noise.kind not in ("uniform", "normal"):
                raise ValueError(f"{self.name}: reset noise kind must be uniform or normal")

    @property
    def uses_cfrc_ext(self) -> bool:
        """Whether observation or reward read ``cfrc_ext`` (needs ``mj_rnePostConstraint``)."""
        return self.include_cfrc_ext or self.contact_cost_weight != 0.0

    def observation(self, qpos: Any, qvel: Any, cfrc_ext: Any = None, xp: Any = np) -> Any:
        """Observation ``[..., O]`` from qpos ``[..., nq]``, qvel ``[..., nv]`` and, for Ant,
        cfrc_ext ``[..., nbody, 6]``."""
        parts = [qpos[..., self.skipped_qpos :]]
        if self.clip_qvel is None:
            parts.append(qvel)
        else:
            parts.append(xp.clip(qvel, -self.clip_qvel, self.clip_qvel))
        if self.include_cfrc_ext:
            forces = self.clipped_contact_forces(cfrc_ext, xp)[..., 1:, :]
            parts.append(forces.reshape(*forces.shape[:-2], -1))
        return xp.concatenate(parts, axis=-1)

    def clipped_contact_forces(self, cfrc_ext: Any, xp: Any = np) -> Any:
        low, high = self.contact_force_range
        return xp.clip(cfrc_ext, low, high)

    def position(self, qpos: Any, xpos: Any, xp: Any = np) -> Any:
        """Torso x/y ``[..., 2]`` the forward reward differentiates (planar tasks: y = 0)."""
        if self.main_body is not None:
            return xpos[..., self.main_body, :2]
        return xp.stack([qpos[..., 0], xp.zeros_like(qpos[..., 0])], axis=-1)

    def is_healthy(self, qpos: Any, qvel: Any, xp: Any = np) -> Any:
        """gymnasium's ``is_healthy`` (strict bounds, except Ant's closed z range)."""
        if self.health == "none":
            return xp.ones(qpos.shape[:-1], bool)
        z, angle = qpos[..., 1], qpos[..., 2]
        (z_lo, z_hi), (a_lo, a_hi) = self.healthy_z_range, self.healthy_angle_range
        if self.health == "ant":
            state = xp.concatenate([qpos, qvel], axis=-1)
            finite = xp.all(xp.isfinite(state), axis=-1)
            return finite & (z_lo <= qpos[..., 2]) & (qpos[..., 2] <= z_hi)
        healthy = (z_lo < z) & (z < z_hi) & (a_lo < angle) & (angle < a_hi)
        if self.health == "hopper":
            state = xp.concatenate([qpos[..., 2:], qvel], axis=-1)
            s_lo, s_hi = self.healthy_state_range
            healthy = healthy & xp.all((s_lo < state) & (state < s_hi), axis=-1)
        return healthy

    def terminated(self, healthy: Any, xp: Any = np) -> Any:
        if self.health == "none" or not self.terminate_when_unhealthy:
            return xp.zeros_like(healthy)
        return xp.logical_not(healthy)

    def reward(
        self,
        pos_before: Any,
        pos_after: Any,
        action: Any,
        healthy: Any,
        dt: float,
        cfrc_ext: Any = None,
        xp: Any = np,
    ) -> dict[str, Any]:
        """Reward terms of one control step (every value ``[...]``), summed as gymnasium sums.

        Args:
          pos_before, pos_after: ``position(...)`` before and after the step, ``[..., 2]``.
          action: the applied (clipped) action ``[..., A]``.
          healthy: ``is_healthy`` after the step ``[...]``.
          dt: control period, s.
          cfrc_ext: ``[..., nbody, 6]`` after the step (Ant), else None.
        """
        velocity = (pos_after - pos_before) / dt
        x_velocity = velocity[..., 0]
        forward = self.forward_reward_weight * x_velocity
        survive = self.healthy_reward * xp.asarray(healthy, forward.dtype)
        ctrl = self.ctrl_cost_weight * xp.sum(xp.square(action), axis=-1)
        if self.contact_cost_weight != 0.0:
            forces = self.clipped_contact_forces(cfrc_ext, xp)
            contact = self.contact_cost_weight * xp.sum(xp.square(forces), axis=(-2, -1))
        else:
            contact = xp.zeros_like(forward)
        return {
            "reward": (forward + survive) - (ctrl + contact),
            "reward_forward": forward,
            "reward_survive": survive,
            "reward_ctrl": -ctrl,
            "reward_contact": -contact,
            "x_velocity": x_velocity,
            "x_position": pos_after[..., 0],
        }

    def initial_state(
        self, init_qpos: Any, init_qvel: Any, qpos_noise: Any, qvel_noise: Any
    ) -> tuple[Any, Any]:
        """qpos, qvel of a reset: the model's ``qpos0``/zero velocity plus drawn noise.

        The noise arrays are drawn by the backend from ``qpos_noise``/``qvel_noise`` (numpy's
        ``uniform(-s, s)`` / ``s * standard_normal`` exactly as gymnasium, or ``jax.random``).
        """
        return init_qpos + qpos_noise, init_qvel + qvel_noise


def _planar_hopper_like(**kwargs: Any) -> dict[str, Any]:
    return dict(
        skipped_qpos=1,
        clip_qvel=10.0,
        include_cfrc_ext=False,
        main_body=None,
        forward_reward_weight=1.0,
        ctrl_cost_weight=1e-3,
        healthy_reward=1.0,
        contact_cost_weight=0.0,
        qpos_noise=Noise(kind="uniform", scale=5e-3),
        qvel_noise=Noise(kind="uniform", scale=5e-3),
        **kwargs,
    )


TASKS: dict[str, LocomotionTask] = {
    "hopper": LocomotionTask(
        name="hopper",
        gym_id="Hopper-v5",
        xml="hopper.xml",
        frame_skip=4,
        health="hopper",
        healthy_z_range=(0.7, np.inf),
        healthy_angle_range=(-0.2, 0.2),
        healthy_state_range=(-100.0, 100.0),
        **_planar_hopper_like(),
    ),
    "walker2d": LocomotionTask(
        name="walker2d",
        gym_id="Walker2d-v5",
        xml="walker2d_v5.xml",
        frame_skip=4,
        health="walker",
        healthy_z_range=(0.8, 2.0),
        healthy_angle_range=(-1.0, 1.0),
        **_planar_hopper_like(),
    ),
    "halfcheetah": LocomotionTask(
        name="halfcheetah",
        gym_id="HalfCheetah-v5",
        xml="half_cheetah.xml",
        frame_skip=5,
        skipped_qpos=1,
        clip_qvel=None,
        include_cfrc_ext=False,
        main_body=None,
        forward_reward_weight=1.0,
        ctrl_cost_weight=0.1,
        healthy_reward=0.0,
        contact_cost_weight=0.0,
        health="none",
        qpos_noise=Noise(kind="uniform", scale=0.1),
        qvel_noise=Noise(kind="normal", scale=0.1),
    ),
    "ant": LocomotionTask(
        name="ant",
        gym_id="Ant-v5",
        xml="ant.xml",
        frame_skip=5,
        skipped_qpos=2,
        clip_qvel=None,
        include_cfrc_ext=True,
        main_body=1,  # the torso
        forward_reward_weight=1.0,
        ctrl_cost_weight=0.5,
        healthy_reward=1.0,
        contact_cost_weight=5e-4,
        contact_force_range=(-1.0, 1.0),
        health="ant",
        healthy_z_range=(0.2, 1.0),
        qpos_noise=Noise(kind="uniform", scale=0.1),
        qvel_noise=Noise(kind="normal", scale=0.1),
    ),
}


def resolve_task(task: str | LocomotionTask, config: LocomotionConfig) -> LocomotionTask:
    """The task with the config's overrides (weights, noise scale, termination) applied."""
    if isinstance(task, str):
        if task not in TASKS:
            raise ValueError(f"unknown locomotion task {task!r}; choose from {sorted(TASKS)}")
        task = TASKS[task]
    changes: dict[str, Any] = {"terminate_when_unhealthy": config.terminate_when_unhealthy}
    for name in (
        "forward_reward_weight",
        "ctrl_cost_weight",
        "healthy_reward",
        "contact_cost_weight",
    ):
        value = getattr(config, name)
        if value is not None:
            changes[name] = float(value)
    if config.reset_noise_scale is not None:
        scale = float(config.reset_noise_scale)
        changes["qpos_noise"] = dataclasses.replace(task.qpos_noise, scale=scale)
        changes["qvel_noise"] = dataclasses.replace(task.qvel_noise, scale=scale)
    if config.episode_length < 1:
        raise ValueError(f"episode_length must be >= 1, got {config.episode_length}")
    return dataclasses.replace(task, **changes)
