"""Crazyflie-2.1-class quadrotor in pure JAX: the simulator of "Learning to Fly in Seconds"
(Eschmann et al. 2023; RLtools / ``l2f``), with hover, waypoint and figure-eight tasks.

Physics (``sims/quadrotor/dynamics.py``): rigid body with unit-quaternion attitude, quadratic
rotor thrust along body z, reaction (yaw) torques, first-order motor lag (T_m = 0.15 s), gravity,
and a constant disturbance force (world) and torque (body) drawn per episode; one classic RK4 step
per 10 ms control step (``substeps`` to refine), quaternion renormalised, rotor speeds clipped to
[0, 21702] rpm, body rates clipped to +-``max_angular_velocity``.

Action: normalised rotor-speed commands ``a in [-1, 1]^4`` (rotor order in ``dynamics.py``),
``rpm_cmd = (a + 1) / 2 * max_rpm`` (RLtools' mapping).

Tasks (``QuadrotorConfig.task``):
  ``hover``         recover from L2F's random initial states (position +-0.2 m per axis,
                    attitude uniform up to 90 deg, velocities +-1 m/s and +-1 rad/s; 10% of
                    episodes start at the target and level, velocities still random, as in
                    RLtools) and hold the origin.
  ``waypoint``      a random target in a cube of +-``waypoint_range`` m, re-drawn every
                    ``waypoint_interval`` steps; starts as ``hover`` around the origin.
  ``figure_eight``  track the lemniscate of Gerono p_ref = A (sin phi, sin phi cos phi, 0),
                    phi = phi_0 + 2 pi t / period; starts as ``hover`` around p_ref(0).

Observations are relative to the target/reference. The actor's ``"state"`` (noisy, as L2F):
position error, rotation matrix, velocity error, body rates, [reference velocity for
figure_eight], the last ``action_history`` actions. The critic's ``"privileged_state"`` (no
noise): the same true state, [reference velocity], the disturbance, and the rotor speeds. Exact
layouts with units and frames: ``Quadrotor.spec.obs_layout`` and ``Quadrotor.privileged_layout``.

Reward (``sims/quadrotor/reward.py``): RLtools' squared reward of the pre-step state and the
action, weights in ``QuadrotorConfig.reward``. Terminates when the position error leaves the
+-``termination_position`` box (any axis, as RLtools; for ``waypoint``: the position leaves the
target cube widened by that margin).

Noise and the disturbance draws come from the cheap hash stream of ``sims/quadrotor/rng.py``,
seeded from the episode's key (see there for why not ``jax.random``).
"""

from __future__ import annotations

import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from robotrl.envs import EnvState
from robotrl.types import PRIVILEGED_KEY, STATE_KEY, ArraySpec, EnvSpec, Field, PRNGKey
from sims.quadrotor import dynamics, rng
from sims.quadrotor.reward import RewardWeights, curriculum_weights, reward
from sims.quadrotor.sampling import AttitudeSampler, sincos_2pi

TASKS = ("hover", "waypoint", "figure_eight")
_G = 9.81
_MASS = 0.027


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuadrotorConfig:
    task: str = "hover"  # "hover" | "waypoint" | "figure_eight"
    ctrl_dt: float = 0.01  # s, control period (100 Hz)
    substeps: int = 1  # RK4 steps per control period
    episode_length: int = 500  # control steps (5 s)
    action_history: int = 0  # K: last K actions in the actor obs (L2F's recipe uses 32)
    # Vehicle (the defaults of ``default_params``; Crazyflie 2.1 as in the paper)
    mass: float = _MASS  # kg
    inertia: tuple[float, float, float] = (3.85e-6, 3.85e-6, 5.9675e-6)  # kg m^2, diagonal
    arm_length: float = 0.028  # m, rotor offset along body x and y
    thrust_constant: float = 3.16e-10  # N / rpm^2, per rotor
    torque_constant: float = 0.005964552  # m, yaw torque per newton of rotor thrust
    motor_time_constant: float = 0.15  # s, first-order lag of rpm toward the command
    max_rpm: float = 21702.0  # rpm, command and speed limit (min 0)
    gravity: float = _G  # m/s^2
    max_angular_velocity: float = 100.0  # rad/s, body-rate clip (keeps RK4 stable: w dt <= 1)
    disturbance_force_std: float = _MASS * _G / 20  # N, per axis, drawn once per episode
    disturbance_torque_std: float = _MASS * _G / 1e4  # N m, per axis, drawn once per episode
    # Observation noise of the actor's obs (std, Gaussian-like; privileged obs is noise-free)
    noise_position: float = 0.001  # m
    noise_orientation: float = 0.001  # per rotation-matrix entry
    noise_linear_velocity: float = 0.002  # m/s
    noise_angular_velocity: float = 0.002  # rad/s
    # Initial state (L2F "orientation_biggest_angle"), relative to the target/reference
    init_guidance: float = 0.1  # probability of starting at the target, level
    init_position: float = 0.2  # m, uniform +- per axis
    init_max_angle: float = math.pi / 2  # rad, attitude uniform on SO(3) up to this angle
    init_linear_velocity: float = 1.0  # m/s, uniform +- per axis
    init_angular_velocity: float = 1.0  # rad/s, uniform +- per axis
    init_rpm: tuple[float, float] = (0.0, 0.0)  # normalised [-1, 1] range of initial rotor speeds
    termination_position: float = 0.6  # m, episode ends when any |position error| exceeds it
    success_window: float = 2.0  # s, an episode succeeds when it is never terminated and the
    success_tolerance: float = 0.05  # m, position error stays below this over its last window
    # Tasks
    waypoint_range: float = 0.5  # m, targets uniform in +- this cube
    waypoint_interval: int = 125  # steps between new targets (0: one target per episode)
    figure_eight_size: float = 0.5  # m, A: half-width along x (half that along y)
    figure_eight_period: float = 5.0  # s, one full figure eight
    figure_eight_random_phase: bool = True  # start at a random point of the figure
    reward: RewardWeights = RewardWeights()  # reward weights and constants
    # L2F's curriculum: every this many env steps (summed over parallel envs) the training loop
    # relabels rewards with the next stage's weights (``reward.curriculum_weights``); 0: off.
    # The env's own reward (and so evaluation returns) keeps ``reward``.
    curriculum_interval: int = 0
    render_size: int = 256  # px, height of the rendered picture (width 2x)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.substeps < 1 or self.action_history < 0:
            raise ValueError("substeps must be >= 1 and action_history >= 0")
        if self.curriculum_interval < 0:
            raise ValueError("curriculum_interval must be >= 0 (0: no curriculum)")

    @property
    def hover_rpm(self) -> float:
        """rpm at which the four rotors carry the nominal weight: sqrt(m g / (4 k_f))."""
        return math.sqrt(self.mass * self.gravity / (4 * self.thrust_constant))


class QuadrotorPhysics(flax.struct.PyTreeNode):
    """The simulator's state of one quadrotor.

    Vector quantities are tuples of scalars (``position[0]`` is x): under ``vmap`` every
    component is then its own contiguous ``[B]`` array, which lets XLA vectorise the step over
    the batch without transposes (~1.6x faster than ``[B, 3]`` arrays here). Likewise the
    action history is a tuple of K ``[4]`` arrays: shifting it is then a renaming (~3x faster
    than a ``[K, 4]`` array here). ``vector(field)`` stacks a tuple field for inspection.
    """

    position: tuple[jax.Array, ...]  # 3 x m, world (z up)
    quaternion: tuple[jax.Array, ...]  # 4 x (w, x, y, z), body -> world
    velocity: tuple[jax.Array, ...]  # 3 x m/s, world
    angular_velocity: tuple[jax.Array, ...]  # 3 x rad/s, body
    rpm: tuple[jax.Array, ...]  # 4 x rotor speed, rpm
    action_history: tuple[jax.Array, ...]  # K x [4] last K normalised actions, oldest first
    disturbance: tuple[jax.Array, ...]  # 6 x unit normal; x std: force (world), torque (body)
    target: tuple[jax.Array, ...]  # 3 x m, world: current target / reference position
    target_velocity: tuple[jax.Array, ...]  # 3 x m/s, world: reference velocity
    phase: tuple[jax.Array, ...]  # (cos phi, sin phi) of the figure-eight reference
    t: jax.Array  # int32, control steps since reset
    noise: jax.Array  # uint32[2] noise stream (rng.py)

    def vector(self, name: str) -> jax.Array:
        """A tuple field stacked into an array ``[n]`` (``[..., n]`` when batched)."""
        return jnp.stack(getattr(self, name), axis=-1)

    @property
    def x(self) -> dynamics.Scalars:
        """The 17-scalar dynamics state (``dynamics.X_*`` order)."""
        return (*self.position, *self.quaternion, *self.velocity, *self.angular_velocity, *self.rpm)


def _scalars(v) -> tuple[jax.Array, ...]:
    v = jnp.asarray(v, jnp.float32)
    return tuple(v[..., i] for i in range(v.shape[-1]))


class Quadrotor:
    """Functional quadrotor env; see the module docstring. ``params`` (``default_params``) are
    the per-episode physical parameters that domain randomisation replaces."""

    def __init__(self, config: QuadrotorConfig | None = None):
        self.config = config or QuadrotorConfig()
        c = self.config
        self._tracking = c.task == "figure_eight"
        # Privileged disturbance is shown as accelerations at the nominal mass and inertia, so
        # its scale is O(1) and does not depend on randomised parameters.
        self._force_scale = 1.0 / c.mass
        self._torque_scale = tuple(1.0 / j for j in c.inertia)
        self._omega = 2 * math.pi / c.figure_eight_period
        self._dphase = (math.cos(self._omega * c.ctrl_dt), math.sin(self._omega * c.ctrl_dt))
        self._attitude = AttitudeSampler(c.init_max_angle)

    # ----------------------------------------------------------------------------- curriculum
    @property
    def relabel_reward(self):
        """The training loops' reward relabelling hook, or None (``curriculum_interval`` 0).

        ``relabel_reward(transition, env_steps) -> reward``: the reward of stored transitions
        ``[...]`` under the curriculum stage reached after ``env_steps`` env steps, recomputed
        from ``obs["privileged_state"]``, ``action`` and ``terminated`` (L2F's "recompute the
        replay buffer's rewards"; on-policy, it relabels the rollout)."""
        c = self.config
        if c.curriculum_interval <= 0:
            return None

        def relabel(transition, env_steps):
            weights = curriculum_weights(c.reward, env_steps // c.curriculum_interval)
            return reward(
                transition.obs[PRIVILEGED_KEY],
                transition.action,
                weights,
                transition.terminated,
            ).astype(transition.reward.dtype)

        return relabel

    # ----------------------------------------------------------------------------------- spec
    def _base_layout(self) -> tuple[Field, ...]:
        """The true-state fields shared by the actor's and the critic's observation."""
        fields = [
            Field("position_error", 3, "m", "world", "position minus target/reference"),
            Field("rotation_matrix", 9, "", "body->world", "R(q), row-major"),
            Field("linear_velocity", 3, "m/s", "world", "velocity minus reference velocity"),
            Field("angular_velocity", 3, "rad/s", "body", "body rates"),
        ]
        if self._tracking:
            fields.append(Field("reference_velocity", 3, "m/s", "world", "d p_ref / dt"))
        return tuple(fields)

    @property
    def privileged_layout(self) -> tuple[Field, ...]:
        """Named slices of ``obs["privileged_state"]`` (``EnvSpec`` has no field for it)."""
        return (
            *self._base_layout(),
            Field("disturbance_force", 3, "m/s^2", "world", "force / nominal mass"),
            Field("disturbance_torque", 3, "rad/s^2", "body", "torque / nominal inertia"),
            Field("rotor_speeds", 4, "", "", "rpm / max_rpm * 2 - 1"),
        )

    @property
    def spec(self) -> EnvSpec:
        c = self.config
        state_layout = self._base_layout()
        if c.action_history:
            k = c.action_history
            state_layout = (
                *state_layout,
                Field("action_history", 4 * k, "", "", f"last {k} actions, oldest first"),
            )
        obs_dim = sum(f.size for f in state_layout)
        return EnvSpec(
            name=f"quadrotor_{c.task}",
            obs=ArraySpec((obs_dim,)),
            action_low=(-1.0,) * 4,
            action_high=(1.0,) * 4,
            ctrl_dt=c.ctrl_dt,
            episode_length=c.episode_length,
            obs_layout=state_layout,
            action_layout=(
                Field("rotor_command", 4, "", "", "normalised rpm command, rpm = (a+1)/2 max"),
            ),
            privileged_obs=ArraySpec((sum(f.size for f in self.privileged_layout),)),
            privileged_layout=self.privileged_layout,
            reward_range=self._reward_range(),
            # When the policy cannot be trusted, hold the nominal hover thrust.
            safe_action=(2 * c.hover_rpm / c.max_rpm - 1,) * 4,
        )

    def _reward_range(self) -> tuple[float, float]:
        """(min, max) of one step's reward. The velocity and body-rate terms assume |v| <= 10
        m/s and |w| <= max_angular_velocity per axis; the position term uses the termination box."""
        c, w = self.config, self.config.reward
        box = c.termination_position + (2 * c.waypoint_range if c.task == "waypoint" else 0.0)
        worst = (
            w.position * 3 * box**2
            + w.orientation
            + w.linear_velocity * 3 * 10.0**2
            + w.angular_velocity * 3 * c.max_angular_velocity**2
            + w.action * 4 * (1 + abs(w.action_baseline)) ** 2
        )
        low = min(w.constant - w.scale * worst, w.termination_penalty)
        return (float(low), float(max(w.constant, w.termination_penalty)))

    def default_params(self) -> dict[str, jax.Array]:
        """Physical parameters of an episode (float32), read by ``step``:

        mass (kg), inertia [3] (kg m^2), arm_length (m), thrust_constant (N/rpm^2),
        torque_constant (m), motor_time_constant (s), disturbance_force_std (N, the episode's
        force is this times a unit normal per axis, drawn at reset), disturbance_torque_std
        (N m, likewise). Latency is not modelled (the motor lag is the only delay).
        """
        c = self.config
        f32 = jnp.float32
        return {
            "mass": f32(c.mass),
            "inertia": jnp.asarray(c.inertia, f32),
            "arm_length": f32(c.arm_length),
            "thrust_constant": f32(c.thrust_constant),
            "torque_constant": f32(c.torque_constant),
            "motor_time_constant": f32(c.motor_time_constant),
            "disturbance_force_std": f32(c.disturbance_force_std),
            "disturbance_torque_std": f32(c.disturbance_torque_std),
        }

    # ---------------------------------------------------------------------------- reference
    def _reference(self, cos: jax.Array, sin: jax.Array):
        """Figure-eight p_ref and v_ref (3-tuples) at phase (cos phi, sin phi)."""
        a, w, zero = self.config.figure_eight_size, self._omega, jnp.zeros_like(cos)
        position = (a * sin, a * sin * cos, zero)
        velocity = (a * w * cos, a * w * (cos * cos - sin * sin), zero)
        return position, velocity

    # -------------------------------------------------------------------------------- reset
    def reset(self, key: PRNGKey, params: dict | None = None) -> EnvState:
        """A random initial state (L2F's distribution, relative to the first target) of an
        episode with physical ``params`` (``default_params()`` when None)."""
        c = self.config
        stream = rng.seed_words(key)
        u = rng.uniform(stream, 23)
        guided = u[0] < c.init_guidance
        offset = jnp.where(guided, 0.0, (2 * u[1:4] - 1) * c.init_position)
        quat = jnp.where(guided, jnp.array([1.0, 0.0, 0.0, 0.0]), self._attitude(u[4:9]))
        velocity = (2 * u[9:12] - 1) * c.init_linear_velocity
        omega = (2 * u[12:15] - 1) * c.init_angular_velocity
        lo, hi = c.init_rpm
        rpm_norm = lo + (hi - lo) * u[15:19]
        zero = jnp.zeros(())
        target, target_velocity, phase = (zero,) * 3, (zero,) * 3, (zero + 1, zero)
        position = _scalars(offset)  # hover and waypoint: around the origin
        velocity = _scalars(velocity)
        if c.task == "waypoint":
            target = _scalars((2 * u[19:22] - 1) * c.waypoint_range)
        if self._tracking:
            phase = sincos_2pi(u[22]) if c.figure_eight_random_phase else (zero + 1, zero)
            target, target_velocity = self._reference(*phase)
            position = tuple(a + b for a, b in zip(target, position, strict=True))
            velocity = tuple(a + b for a, b in zip(target_velocity, velocity, strict=True))
        physics = QuadrotorPhysics(
            position=position,
            quaternion=_scalars(quat),
            velocity=velocity,
            angular_velocity=_scalars(omega),
            rpm=_scalars((rpm_norm + 1) * (0.5 * c.max_rpm)),
            action_history=(rpm_norm,) * c.action_history,
            disturbance=_scalars(rng.normal(rng.advance(stream), 6)),
            target=target,
            target_velocity=target_velocity,
            phase=phase,
            t=jnp.zeros((), jnp.int32),
            noise=rng.seed_words(stream[::-1]),
        )
        return self.make_state(key, physics, self.default_params() if params is None else params)

    def reset_to(self, key: PRNGKey, params: dict | None = None, **fields) -> EnvState:
        """``reset(key, params)`` with some physics fields replaced (tests, parity checks),
        given as arrays, e.g. ``reset_to(key, position=[0, 0, 0], quaternion=[1, 0, 0, 0])``
        (``action_history`` as ``[K, 4]``); the observation is recomputed."""
        state = self.reset(key, params)
        physics = state.physics
        new = {}
        for name, value in fields.items():
            old = getattr(physics, name)
            if name == "action_history":
                value = jnp.asarray(value, jnp.float32)
                new[name] = tuple(value[i] for i in range(value.shape[0]))
            elif isinstance(old, tuple):
                new[name] = _scalars(value)
            else:
                new[name] = jnp.asarray(value, old.dtype)
        return self.make_state(key, physics.replace(**new), state.params)

    def make_state(self, key: PRNGKey, physics: QuadrotorPhysics, params: dict) -> EnvState:
        """An episode's first ``EnvState`` from given physics and params (obs computed)."""
        x = jax.lax.optimization_barrier(physics.x)  # computed once, read by every obs entry
        return EnvState(
            obs=self._observe(x, physics, params, rng.normal_tuple(physics.noise, 18)),
            reward=jnp.zeros(()),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            physics=physics.replace(noise=rng.advance(physics.noise)),
            params=params,
            key=key,
            metrics=self._metrics(x, physics),
            info={},
        )

    # --------------------------------------------------------------------------------- step
    def success(self, traces: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
        """Flying: the full episode, with the position error below ``success_tolerance`` over
        its last ``success_window`` seconds. ``traces``: metrics ``[T, B]``; ``lengths [B]``."""
        c = self.config
        window = max(1, round(c.success_window / c.ctrl_dt))
        error = np.asarray(traces["position_error"])
        full = np.asarray(lengths) >= error.shape[0]  # never terminated
        return full & (error[-window:].max(axis=0) < c.success_tolerance)

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        c, p, ph = self.config, state.params, state.physics
        a = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)  # strong float32: no retrace
        x = ph.x
        # Reward of (s, a): the pre-step privileged state, as a transition stores it in its obs
        # (XLA keeps only the entries the reward reads).
        privileged_before = self._privileged(x, ph, p)
        half = 0.5 * c.max_rpm
        rpm_cmd = tuple((a[i] + 1.0) * half for i in range(4))
        x = dynamics.rk4_step(x, rpm_cmd, self._constants(p, ph), c.ctrl_dt, c.max_rpm, c.substeps)
        w_max = c.max_angular_velocity
        omega = tuple(jnp.clip(w, -w_max, w_max) for w in x[dynamics.X_OMEGA : dynamics.X_RPM])
        # Materialise the new state once: XLA would otherwise recompute the RK4 chain inside
        # every consumer (observation entries, metrics, termination).
        x = jax.lax.optimization_barrier((*x[: dynamics.X_OMEGA], *omega, *x[dynamics.X_RPM :]))

        noise = rng.normal_tuple(ph.noise, 18)
        target, target_velocity, phase = ph.target, ph.target_velocity, ph.phase
        t = ph.t + 1
        if c.task == "waypoint" and c.waypoint_interval > 0:
            new = t % c.waypoint_interval == 0
            words = rng.bits_tuple(ph.noise, 12)[9:]  # the words after the noise's nine
            target = tuple(
                jnp.where(new, (2 * rng.to_uniform(h) - 1) * c.waypoint_range, old)
                for h, old in zip(words, target, strict=True)
            )
        if self._tracking:
            (cd, sd), (cos, sin) = self._dphase, ph.phase
            cos, sin = cos * cd - sin * sd, sin * cd + cos * sd
            fix = 1.5 - 0.5 * (cos * cos + sin * sin)  # one Newton step back to the unit circle
            phase = (cos * fix, sin * fix)
            target, target_velocity = self._reference(*phase)
        history = (*ph.action_history[1:], a) if c.action_history else ()
        physics = ph.replace(
            position=x[dynamics.X_POS : dynamics.X_QUAT],
            quaternion=x[dynamics.X_QUAT : dynamics.X_VEL],
            velocity=x[dynamics.X_VEL : dynamics.X_OMEGA],
            angular_velocity=x[dynamics.X_OMEGA : dynamics.X_RPM],
            rpm=x[dynamics.X_RPM :],
            action_history=history,
            target=target,
            target_velocity=target_velocity,
            phase=phase,
            t=t,
            noise=rng.advance(ph.noise),
        )
        terminated = self._terminated(x, physics)
        return state.replace(
            obs=self._observe(x, physics, p, noise),
            reward=reward(privileged_before, a, c.reward, terminated),
            terminated=terminated,
            truncated=jnp.zeros((), bool),
            physics=physics,
            metrics=self._metrics(x, physics),
        )

    # ------------------------------------------------------------------------------ helpers
    def _constants(self, p: dict, ph: QuadrotorPhysics) -> dynamics.Constants:
        inertia = tuple(p["inertia"][i] for i in range(3))
        f_std, t_std = p["disturbance_force_std"], p["disturbance_torque_std"]
        d = ph.disturbance
        return dynamics.Constants(
            inv_mass=1.0 / p["mass"],
            inertia=inertia,
            inv_inertia=tuple(1.0 / j for j in inertia),
            arm=p["arm_length"],
            thrust_constant=p["thrust_constant"],
            torque_constant=p["torque_constant"],
            inv_motor_time_constant=1.0 / p["motor_time_constant"],
            gravity=jnp.float32(self.config.gravity),
            disturbance_force=(f_std * d[0], f_std * d[1], f_std * d[2]),
            disturbance_torque=(t_std * d[3], t_std * d[4], t_std * d[5]),
        )

    def _true_state(self, x: dynamics.Scalars, ph: QuadrotorPhysics) -> list[jax.Array]:
        """Position error, rotation matrix, velocity error, body rates: 18 scalars."""
        pos = [x[i] - ph.target[i] for i in range(3)]
        rot = dynamics.rotation_matrix(x[dynamics.X_QUAT : dynamics.X_VEL])
        vel = [x[dynamics.X_VEL + i] - ph.target_velocity[i] for i in range(3)]
        return [*pos, *rot, *vel, *x[dynamics.X_OMEGA : dynamics.X_RPM]]

    def _privileged(self, x: dynamics.Scalars, ph: QuadrotorPhysics, p: dict) -> jax.Array:
        c = self.config
        ref = list(ph.target_velocity) if self._tracking else []
        d = ph.disturbance
        f_std = p["disturbance_force_std"] * self._force_scale
        t_std = p["disturbance_torque_std"]
        force = [f_std * d[i] for i in range(3)]
        torque = [t_std * self._torque_scale[i] * d[3 + i] for i in range(3)]
        rotors = [r * (2.0 / c.max_rpm) - 1.0 for r in x[dynamics.X_RPM :]]
        return jnp.stack([*self._true_state(x, ph), *ref, *force, *torque, *rotors])

    def _observe(
        self, x: dynamics.Scalars, ph: QuadrotorPhysics, p: dict, noise: tuple[jax.Array, ...]
    ) -> dict[str, jax.Array]:
        """``{"state": [O], "privileged_state": [P]}``; ``noise``: 18 standard-normal scalars."""
        c = self.config
        stds = (
            (c.noise_position,) * 3
            + (c.noise_orientation,) * 9
            + (c.noise_linear_velocity,) * 3
            + (c.noise_angular_velocity,) * 3
        )
        clean = self._true_state(x, ph)
        noisy = [v + s * z if s else v for v, s, z in zip(clean, stds, noise, strict=True)]
        if self._tracking:
            noisy += list(ph.target_velocity)
        state = jnp.stack(noisy)
        if c.action_history:
            state = jnp.concatenate([state, *ph.action_history])
        return {STATE_KEY: state, PRIVILEGED_KEY: self._privileged(x, ph, p)}

    def _terminated(self, x: dynamics.Scalars, ph: QuadrotorPhysics) -> jax.Array:
        c = self.config
        if c.task == "waypoint":
            # Targets jump; bound the position itself: the target cube plus the margin.
            err, bound = x[:3], c.waypoint_range + c.termination_position
        else:
            err, bound = [x[i] - ph.target[i] for i in range(3)], c.termination_position
        out = (jnp.abs(err[0]) > bound) | (jnp.abs(err[1]) > bound) | (jnp.abs(err[2]) > bound)
        return out | ~jnp.isfinite(x[2])

    def _metrics(self, x: dynamics.Scalars, ph: QuadrotorPhysics) -> dict[str, jax.Array]:
        ex, ey, ez = (x[i] - ph.target[i] for i in range(3))
        _, qx, qy, _ = x[dynamics.X_QUAT : dynamics.X_VEL]
        r0, r1, r2, r3 = x[dynamics.X_RPM :]
        return {
            "position_error": jnp.sqrt(ex * ex + ey * ey + ez * ez),  # m
            "tilt": _acos(1 - 2 * (qx * qx + qy * qy)),  # rad, body z from vertical (R[2, 2])
            "rpm_mean": 0.25 * (r0 + r1 + r2 + r3),  # rpm
        }

    # ------------------------------------------------------------------------------ render
    def render(self, state: EnvState) -> np.ndarray:
        """Top (x-y) and side (x-z) views ``[H, 2H, 3]`` uint8 of one unbatched state."""
        from sims.quadrotor.render import render_views

        return render_views(self, state)


def _acos(v: jax.Array) -> jax.Array:
    """arccos to 7e-5 rad (Abramowitz & Stegun 4.4.45): XLA's exact one is a scalar libm call
    per element, ~50x the cost of the rest of the metrics."""
    a = jnp.abs(jnp.clip(v, -1.0, 1.0))
    r = jnp.sqrt(1 - a) * (1.5707288 + a * (-0.2121144 + a * (0.0742610 - 0.0187293 * a)))
    return jnp.where(v < 0, math.pi - r, r)
