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

import mujoco
import numpy as np

from robotrl.types import Field

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
    camera: str | None = None  # camera of the XML used by render; None: the task's own


@dataclasses.dataclass(frozen=True, kw_only=True)
class Noise:
    """Reset noise added to ``init_qpos``/``init_qvel``: ``U(-scale, scale)`` or
    ``scale * N(0, 1)``."""

    kind: str  # "uniform" | "normal"
    scale: float | tuple[float, ...]  # one for every entry, or one per entry


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
    assets: tuple[str, str] = ("gymnasium", "envs/mujoco/assets")  # package, folder of the XML
    camera: str = "track"  # the XML's camera render uses by default
    metric_keys: tuple[str, ...] = (  # reward terms every step reports as metrics
        "reward_forward",
        "reward_survive",
        "reward_ctrl",
        "reward_contact",
        "x_velocity",
        "x_position",
    )

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
        *,
        qpos: Any = None,
        qvel: Any = None,
    ) -> dict[str, Any]:
        """Reward terms of one control step (every value ``[...]``), summed as gymnasium sums.

        Args:
          pos_before, pos_after: ``position(...)`` before and after the step, ``[..., 2]``.
          action: the applied (clipped) action ``[..., A]``.
          healthy: ``is_healthy`` after the step ``[...]``.
          dt: control period, s.
          cfrc_ext: ``[..., nbody, 6]`` after the step (Ant), else None.
          qpos, qvel: the state after the step (unused here; tasks whose reward reads the
            state, like ``cartpole``'s, take them from the same call).
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

    def obs_layout(self, model: Any) -> tuple[Field, ...]:
        """One Field per observation block (joint positions and velocities, Ant's forces) of
        the compiled ``model``."""
        return _obs_layout(self, model)

    def with_config(self, config: LocomotionConfig) -> LocomotionTask:
        """This task with the config's overrides (weights, noise scale, termination)."""
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
            changes["qpos_noise"] = dataclasses.replace(self.qpos_noise, scale=scale)
            changes["qvel_noise"] = dataclasses.replace(self.qvel_noise, scale=scale)
        if config.episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {config.episode_length}")
        return dataclasses.replace(self, **changes)


_JOINT_UNITS = {
    int(mujoco.mjtJoint.mjJNT_SLIDE): ("m", "m/s"),
    int(mujoco.mjtJoint.mjJNT_HINGE): ("rad", "rad/s"),
}


def _state_fields(model: Any) -> tuple[list[Field], list[Field]]:
    """One qpos Field and one qvel Field per joint (a free joint splits in parts)."""
    qpos, qvel = [], []
    for j in range(model.njnt):
        name = model.joint(j).name or f"joint{j}"
        kind = int(model.jnt_type[j])
        if kind == int(mujoco.mjtJoint.mjJNT_FREE):
            qpos += [
                Field(f"{name}_pos", 3, "m", "world", "free-joint position x, y, z"),
                Field(f"{name}_quat", 4, "", "world", "orientation quaternion w, x, y, z"),
            ]
            qvel += [
                Field(f"{name}_linvel", 3, "m/s", "world", "linear velocity"),
                Field(f"{name}_angvel", 3, "rad/s", "body", "angular velocity"),
            ]
        elif kind in _JOINT_UNITS:
            pos_units, vel_units = _JOINT_UNITS[kind]
            qpos.append(Field(f"{name}_pos", 1, pos_units, "joint", f"{name} position"))
            qvel.append(Field(f"{name}_vel", 1, vel_units, "joint", f"{name} velocity"))
        else:
            raise ValueError(f"joint {name}: ball joints are not used by these tasks")
    return qpos, qvel


def _drop_leading(fields: list[Field], count: int) -> list[Field]:
    """Removes ``count`` leading entries (x, and y for Ant) from a list of qpos Fields."""
    out = []
    for f in fields:
        drop = min(count, f.size)
        count -= drop
        if f.size > drop:
            if drop and f.size == 3:  # free joint position: keep z
                f = Field(f.name.replace("_pos", "_z"), f.size - drop, f.units, f.frame, "height")
            out.append(f)
    return out


def _obs_layout(task: LocomotionTask, model: Any) -> tuple[Field, ...]:
    qpos, qvel = _state_fields(model)
    qpos = _drop_leading(qpos, task.skipped_qpos)
    if task.clip_qvel is not None:
        note = f" (clipped to +-{task.clip_qvel:g})"
        qvel = [Field(f.name, f.size, f.units, f.frame, f.description + note) for f in qvel]
    layout = qpos + qvel
    if task.include_cfrc_ext:
        low, high = task.contact_force_range
        layout.append(
            Field(
                "cfrc_ext",
                (model.nbody - 1) * 6,
                "N m, N",
                "com",
                f"external (contact) wrench [torque, force] on each non-world body, "
                f"clipped to [{low:g}, {high:g}]",
            )
        )
    return tuple(layout)


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


TASKS: dict[str, LocomotionTask | CartpoleTask] = {
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class CartpoleTask:
    """dm_control's Cartpole Balance (smooth reward), the task MuJoCo Playground calls
    ``CartpoleBalance``, on dm_control's own ``suite/cartpole.xml``.

    Observation ``[cart x (m), cos, sin of the pole angle, cart velocity (m/s), pole angular
    velocity (rad/s)]``. Reward in [0, 1] after each step, dm_control's product

        upright * centered * small_control * small_velocity
        upright        = (cos(angle) + 1) / 2
        centered       = (1 + tolerance(cart x, margin 2 m)) / 2
        small_control  = (4 + quadratic tolerance(action, margin 1)) / 5
        small_velocity = (1 + tolerance(pole angular velocity, margin 5 rad/s)) / 2

    (``tolerance``: dm_control's Gaussian sigmoid, 1 at 0 and 0.1 at the margin). No
    termination; 1000 steps of 10 ms. Reset: cart x ~ U(-0.1, 0.1) m, pole ~ U(-0.034, 0.034)
    rad, velocities ~ 0.01 N(0, 1), as dm_control's ``Balance(swing_up=False)``.
    """

    name: str = "cartpole_balance"
    gym_id: str = "dm_control cartpole-balance"
    xml: str = "cartpole.xml"
    assets: tuple[str, str] = ("dm_control", "suite")
    camera: str = "fixed"
    frame_skip: int = 1
    qpos_noise: Noise = Noise(kind="uniform", scale=(0.1, 0.034))
    qvel_noise: Noise = Noise(kind="normal", scale=0.01)
    metric_keys: tuple[str, ...] = ("upright", "centered", "small_control", "small_velocity")
    uses_cfrc_ext: bool = False
    include_cfrc_ext: bool = False
    main_body: int | None = None

    def observation(self, qpos: Any, qvel: Any, cfrc_ext: Any = None, xp: Any = np) -> Any:
        angle = qpos[..., 1:2]
        return xp.concatenate([qpos[..., :1], xp.cos(angle), xp.sin(angle), qvel], axis=-1)

    def position(self, qpos: Any, xpos: Any, xp: Any = np) -> Any:
        return xp.zeros((*qpos.shape[:-1], 2), qpos.dtype)

    def is_healthy(self, qpos: Any, qvel: Any, xp: Any = np) -> Any:
        return xp.ones(qpos.shape[:-1], bool)

    def terminated(self, healthy: Any, xp: Any = np) -> Any:
        return xp.zeros_like(healthy)

    def reward(
        self,
        pos_before: Any,
        pos_after: Any,
        action: Any,
        healthy: Any,
        dt: float,
        cfrc_ext: Any = None,
        xp: Any = np,
        *,
        qpos: Any = None,
        qvel: Any = None,
    ) -> dict[str, Any]:
        """dm_control's smooth balance reward of the state after the step (``qpos``, ``qvel``)
        and the applied action."""
        upright = (xp.cos(qpos[..., 1]) + 1.0) / 2.0
        centered = (1.0 + _gaussian_tolerance(qpos[..., 0], 2.0, xp)) / 2.0
        control = action[..., 0]
        small_control = (4.0 + xp.where(xp.abs(control) < 1.0, 1.0 - control**2, 0.0)) / 5.0
        small_velocity = (1.0 + _gaussian_tolerance(qvel[..., 1], 5.0, xp)) / 2.0
        return {
            "reward": upright * small_control * small_velocity * centered,
            "upright": upright,
            "centered": centered,
            "small_control": small_control,
            "small_velocity": small_velocity,
        }

    def initial_state(
        self, init_qpos: Any, init_qvel: Any, qpos_noise: Any, qvel_noise: Any
    ) -> tuple[Any, Any]:
        return init_qpos + qpos_noise, init_qvel + qvel_noise

    def obs_layout(self, model: Any) -> tuple[Field, ...]:
        return (
            Field("cart_position", 1, "m", "world", "cart x along the rail"),
            Field("pole_cos", 1, "", "joint", "cosine of the pole angle (1 upright)"),
            Field("pole_sin", 1, "", "joint", "sine of the pole angle"),
            Field("cart_velocity", 1, "m/s", "world", "cart x velocity"),
            Field("pole_angular_velocity", 1, "rad/s", "joint", "pole angular velocity"),
        )

    def with_config(self, config: LocomotionConfig) -> CartpoleTask:
        unused = [
            name
            for name in (
                "forward_reward_weight",
                "ctrl_cost_weight",
                "healthy_reward",
                "contact_cost_weight",
                "reset_noise_scale",
            )
            if getattr(config, name) is not None
        ]
        if unused:
            raise ValueError(f"{self.name} has no setting {unused[0]} (its reward is fixed)")
        if config.episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {config.episode_length}")
        return self


_TOLERANCE_SCALE = float(np.sqrt(-2.0 * np.log(0.1)))  # Gaussian sigmoid: 0.1 at the margin


def _gaussian_tolerance(x: Any, margin: float, xp: Any) -> Any:
    """dm_control's ``rewards.tolerance(x, bounds=(0, 0), margin)`` (Gaussian sigmoid)."""
    d = x / margin * _TOLERANCE_SCALE
    return xp.exp(-0.5 * d * d)


TASKS["cartpole_balance"] = CartpoleTask()


def resolve_task(
    task: str | LocomotionTask | CartpoleTask, config: LocomotionConfig
) -> LocomotionTask | CartpoleTask:
    """The task with the config's overrides (weights, noise scale, termination) applied."""
    if isinstance(task, str):
        if task not in TASKS:
            raise ValueError(f"unknown MuJoCo task {task!r}; choose from {sorted(TASKS)}")
        task = TASKS[task]
    return task.with_config(config)
