"""RC-car racing: a 1/10-scale car on closed tracks, in pure JAX (the FastRLAP / CaRL task).

Dynamics: ``sims.rccar.dynamics`` (dynamic bicycle model with tyre slip, kinematic at low speed,
rate-limited steering, DC-motor throttle, drag), ``substeps`` Euler substeps per control step
(10 Hz by default). Tracks: ``sims.rccar.tracks`` (several per batch; the episode's track index is
in the state, drawn uniformly from ``config.tracks`` at reset).

Action ``[steering, throttle]`` in [-1, 1]^2: steering is the commanded wheel angle as a fraction
of ``max_steer`` (positive = left), throttle the motor command (negative brakes, then reverses),
clipped to ``[min_throttle, max_throttle]``. Actions pass through a queue: the one applied is the
action from ``params["latency"]`` control steps ago (rounded, at most ``max_latency``).

Observation (flat float32 vector, layout in ``spec.obs_layout``): body velocities, yaw rate,
steering angle, lateral offset / half-width, heading error, centreline curvature at
``curvature_lookahead`` metres ahead, the last commanded action, and, with ``use_rays``, the
normalised distances of ``num_rays`` range rays to the track boundary (in the same vector).

Progress: the car's projection on the centreline is searched only near the previous nearest
point (``search_window``), its arc length is unwrapped across the start line, and the lap
progress counts only the furthest arc length reached (``s_best``): driving backwards earns
nothing, and reaching a checkpoint again after reversing does not count twice. Cutting the
infield means leaving the drivable width, which terminates. Checkpoints are every
``checkpoint_spacing`` metres (rounded so a lap holds a whole number of them), passed in order by
construction; a lap is complete after all of a lap's checkpoints, and its time is interpolated
within the control step.

Rewards (``reward``):
  "summed": ``progress_weight * ds + speed_weight * v_along / motor_vmax
  - offset_weight * min(|e| / half_width, 2)^2 - steer_change_weight * |d steering action|
  - collision_penalty * collided`` (ds: signed centreline progress in metres this step).
  "multiplicative" (CaRL, Jaeger et al. 2025, following its ``simple_reward``): ``(route
  completion gained this step, as a fraction of the lap) x lane factor x speed factor x action
  factor - terminal_penalty * collided``. Lane factor: ``lane_factor`` while ``|e|`` exceeds
  ``lane_threshold`` of the half-width (CaRL's 0.5 for leaving the lane centre); speed factor:
  ``max(0, 1 - overspeed / overspeed_tolerance)`` above ``speed_limit`` (CaRL's speeding
  penalty; off when ``speed_limit`` is 0); action factor: ``action_change_factor`` when an action
  component changes by more than ``max_action_change`` (CaRL's optional max-change penalty; off
  when 0). The terminal penalty mirrors CaRL's termination hint.
Leaving the track (any part of the body's width beyond the boundary) is the hard infraction:
``terminated``. Time limits are ``EpisodeLimit``'s job.
"""

from __future__ import annotations

import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from robotrl.envs import EnvState
from robotrl.types import ArraySpec, EnvSpec, Field, PRNGKey
from sims.rccar import dynamics
from sims.rccar import tracks as tracklib
from sims.rccar.dynamics import Car, VehicleConfig

REWARDS = ("summed", "multiplicative")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RCCarConfig:
    # Tracks and timing.
    tracks: tuple[str, ...] = tracklib.TRAIN_TRACKS  # names from sims.rccar.tracks.TRACK_NAMES
    track_spacing: float = 0.1  # m, centreline point spacing after resampling
    ctrl_dt: float = 0.1  # s, control period (10 Hz as in FastRLAP)
    substeps: int = 10  # integration substeps per control step (dt = 10 ms)
    episode_length: int = 500  # control steps (50 s: several laps of every shipped track)
    vehicle: VehicleConfig = VehicleConfig()  # geometry, steering limit, motor no-load speed
    # Actuation.
    min_throttle: float = -1.0  # throttle command limits, after clipping the action to [-1, 1]
    max_throttle: float = 1.0
    max_latency: int = 3  # control steps; the action queue holds max_latency + 1 actions
    # Reset distribution.
    random_start: bool = True  # start anywhere along the lap (else at arc length 0)
    init_offset: float = 0.3  # fraction of the half-width, uniform +- lateral start offset
    init_heading: float = 0.2  # rad, uniform +- heading error at the start
    init_speed: float = 1.0  # m/s, initial forward speed drawn in [0, init_speed]
    # Track-relative quantities.
    search_window: int = 16  # points searched either side of the last nearest point
    checkpoint_spacing: float = 2.0  # m, checkpoints per lap = round(length / spacing)
    curvature_lookahead: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)  # m ahead, curvature obs
    # Range sensor.
    use_rays: bool = False  # add num_rays boundary distances to the state vector
    num_rays: int = 9  # rays, evenly spread over ray_fov
    ray_fov: float = math.pi  # rad, total field of view centred on the heading (+-90 deg)
    ray_max_range: float = 3.0  # m, rays report min(distance, max range) / max range
    ray_segment: float = 0.25  # m, chord length of the boundary polylines rays are cast against
    # Reward.
    reward: str = "multiplicative"  # "summed" (shaped) or "multiplicative" (CaRL)
    progress_weight: float = 1.0  # summed: per metre of signed centreline progress
    speed_weight: float = 0.1  # summed: times along-track speed / motor_vmax
    offset_weight: float = 0.1  # summed: times (lateral offset / half-width)^2
    steer_change_weight: float = 0.1  # summed: times |change of the steering action|
    collision_penalty: float = 10.0  # summed: subtracted when leaving the track
    lane_threshold: float = 0.7  # multiplicative: |offset| / half-width beyond this is a soft
    lane_factor: float = 0.5  # infraction, and progress is multiplied by lane_factor
    speed_limit: float = 0.0  # multiplicative: m/s, speed factor above it (0: no limit)
    overspeed_tolerance: float = 2.23  # m/s, overspeed at which the speed factor reaches 0
    max_action_change: float = 0.0  # multiplicative: action-change threshold (0: off)
    action_change_factor: float = 0.5  # multiplicative: factor when the threshold is exceeded
    terminal_penalty: float = 0.05  # multiplicative: laps' worth subtracted on leaving the track
    render_size: int = 256  # px, square top-down render

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")
        if not self.tracks:
            raise ValueError("tracks: need at least one track")
        for name in self.tracks:
            if name not in tracklib.TRACK_NAMES:
                raise ValueError(f"unknown track {name!r}; shipped: {list(tracklib.TRACK_NAMES)}")
        reach = self.search_window * self.track_spacing
        if reach < 1.2 * self.vehicle.motor_vmax * self.ctrl_dt:
            raise ValueError(
                f"search_window * track_spacing = {reach:.2f} m is shorter than the distance the "
                "car can travel in one control step; increase search_window"
            )


class RCCarPhysics(flax.struct.PyTreeNode):
    """Everything the env carries between steps besides params."""

    car: Car
    track: jax.Array  # int32, index into config.tracks
    index: jax.Array  # int32, nearest centreline point
    s: jax.Array  # m, unwrapped arc length of the projection
    s_best: jax.Array  # m, furthest unwrapped arc length reached
    s_start: jax.Array  # m, unwrapped arc length at reset
    offset: jax.Array  # m, lateral offset (left positive)
    heading_error: jax.Array  # rad, yaw minus the tangent's direction, wrapped
    time: jax.Array  # s since reset
    lap_start: jax.Array  # s, when the current lap began
    lap_time: jax.Array  # s, duration of the last completed lap (0 before the first)
    checkpoints: jax.Array  # int32, checkpoints passed this episode
    queue: jax.Array  # [max_latency + 1, 2], commanded actions, newest first
    last_action: jax.Array  # [2], the last commanded (clipped) action


def _wrap(angle: jax.Array) -> jax.Array:
    return jnp.mod(angle + jnp.pi, 2 * jnp.pi) - jnp.pi


class RCCar:
    """Functional RC-car racing env; see the module docstring."""

    def __init__(self, config: RCCarConfig | None = None):
        self.config = c = config or RCCarConfig()
        self.track_geometry = tuple(tracklib.make_track(n, c.track_spacing) for n in c.tracks)
        self.tracks = tracklib.stack_tracks(
            self.track_geometry, c.ray_max_range if c.use_rays else None, c.ray_segment
        )
        hw = np.array([0.5 * t.width for t in self.track_geometry])
        kmax = np.array([np.abs(t.curvature).max() for t in self.track_geometry])
        # Centreline progress per metre travelled is at most 1 / (1 - |kappa| e) (inside a turn).
        self._max_progress = (
            1.05 * c.vehicle.motor_vmax * c.ctrl_dt / float(np.min(1.0 - kmax * hw))
        )
        self._min_length = min(t.length for t in self.track_geometry)
        self._ray_offsets = jnp.linspace(-0.5 * c.ray_fov, 0.5 * c.ray_fov, c.num_rays)

    # ------------------------------------------------------------------------------------------
    # Spec and parameters.

    @property
    def spec(self) -> EnvSpec:
        c = self.config
        layout = [
            Field("vx", 1, "m/s", "body", "longitudinal velocity"),
            Field("vy", 1, "m/s", "body", "lateral velocity (left positive)"),
            Field("yaw_rate", 1, "rad/s", "body", "yaw rate (counter-clockwise positive)"),
            Field("steering_angle", 1, "rad", "body", "actual front wheel angle"),
            Field("lateral_offset", 1, "", "track", "offset from the centreline / half-width"),
            Field("heading_error", 1, "rad", "track", "yaw minus the centreline direction"),
            Field(
                "curvature_ahead",
                len(c.curvature_lookahead),
                "1/m",
                "track",
                f"centreline curvature at {c.curvature_lookahead} m ahead (left positive)",
            ),
            Field("last_action", 2, "", "", "last commanded [steering, throttle] in [-1, 1]"),
        ]
        if c.use_rays:
            layout.append(
                Field(
                    "rays",
                    c.num_rays,
                    "",
                    "body",
                    f"boundary distance / {c.ray_max_range} m over +-{c.ray_fov / 2:.3f} rad, "
                    "right to left",
                )
            )
        if c.reward == "summed":
            top = c.progress_weight * self._max_progress + c.speed_weight
            low = -top - 4 * c.offset_weight - 2 * c.steer_change_weight - c.collision_penalty
        else:
            top, low = self._max_progress / self._min_length, -c.terminal_penalty
        return EnvSpec(
            name="rccar",
            obs=ArraySpec((sum(f.size for f in layout),)),
            action_low=(-1.0, -1.0),
            action_high=(1.0, 1.0),
            ctrl_dt=c.ctrl_dt,
            episode_length=c.episode_length,
            obs_layout=tuple(layout),
            action_layout=(
                Field("steering", 1, "", "", "wheel angle / max_steer (left positive)"),
                Field("throttle", 1, "", "", "motor command (negative brakes, then reverses)"),
            ),
            reward_range=(float(low), float(top)),
        )

    def default_params(self) -> dict[str, jax.Array]:
        """Nominal 1/10-scale car (sources in ``sims.rccar.dynamics``)."""
        f = jnp.float32
        return {
            "mass": f(2.0),  # kg
            "tire_stiffness_front": f(4.718),  # 1/rad, cornering stiffness per unit load
            "tire_stiffness_rear": f(5.4562),  # 1/rad
            "friction": f(1.0489),  # tyre-road friction coefficient
            "motor_gain": f(10.0),  # N, stall force at full throttle
            "drag": f(0.018),  # N s^2/m^2, aerodynamic
            "rolling_resistance": f(0.02),  # rolling resistance coefficient
            "steer_rate": f(3.2),  # rad/s, steering servo rate limit
            "latency": f(0.0),  # control steps of actuation delay (rounded)
        }

    # ------------------------------------------------------------------------------------------
    # Reset and step.

    def reset(self, key: PRNGKey, params: dict[str, jax.Array] | None = None) -> EnvState:
        c = self.config
        key, sub = jax.random.split(key)
        u = jax.random.uniform(sub, (5,))  # one draw: threefry is slow to compile on the CPU
        track = jnp.minimum(jnp.floor(u[0] * len(c.tracks)), len(c.tracks) - 1).astype(jnp.int32)
        s = u[1] * self.tracks.length[track] if c.random_start else jnp.zeros(())
        offset = (2.0 * u[2] - 1.0) * c.init_offset * self.tracks.half_width[track]
        heading = (2.0 * u[3] - 1.0) * c.init_heading
        speed = u[4] * c.init_speed
        return self.reset_to(key, track, s, offset, heading, speed, params)

    def reset_to(
        self,
        key: PRNGKey,
        track: jax.Array | int,
        s: jax.Array | float,
        offset: jax.Array | float = 0.0,
        heading: jax.Array | float = 0.0,
        speed: jax.Array | float = 0.0,
        params: dict[str, jax.Array] | None = None,
    ) -> EnvState:
        """Starts an episode on ``track`` (index into config.tracks) at arc length ``s`` (m,
        snapped to the nearest point), ``offset`` m left of the centreline, ``heading`` rad from
        the tangent, moving forwards at ``speed`` m/s."""
        c, tr = self.config, self.tracks
        track = jnp.asarray(track, jnp.int32)
        f32 = lambda x: jnp.asarray(x, jnp.float32)
        index = tracklib.index_ahead(tr, track, jnp.zeros((), jnp.int32), f32(s))
        pos = tr.points[track, index] + f32(offset) * tr.normals[track, index]
        tan = tr.tangents[track, index]
        zero = jnp.zeros((), jnp.float32)
        car = Car(
            x=pos[0],
            y=pos[1],
            psi=_wrap(jnp.arctan2(tan[1], tan[0]) + f32(heading)),
            vx=f32(speed),
            vy=zero,
            r=zero,
            delta=zero,
        )
        proj = tracklib.project(tr, track, index, pos, c.search_window)
        physics = RCCarPhysics(
            car=car,
            track=track,
            index=proj.index,
            s=proj.s,
            s_best=proj.s,
            s_start=proj.s,
            offset=proj.offset,
            heading_error=_wrap(car.psi - proj.heading),
            time=zero,
            lap_start=zero,
            lap_time=zero,
            checkpoints=jnp.zeros((), jnp.int32),
            queue=jnp.zeros((c.max_latency + 1, 2), jnp.float32),
            last_action=jnp.zeros(2, jnp.float32),
        )
        return EnvState(
            obs=self._observe(physics),
            reward=zero,
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            physics=physics,
            params=self.default_params() if params is None else params,
            key=key,
            metrics=self._metrics(physics, jnp.zeros((), bool)),
            info={},
        )

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        c, tr, p, ph = self.config, self.tracks, state.params, state.physics
        vc = c.vehicle
        act = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        queue = jnp.concatenate([act[None], ph.queue[:-1]], axis=0)
        latency = jnp.clip(jnp.round(p["latency"]), 0, c.max_latency).astype(jnp.int32)
        applied = queue[latency]
        throttle = jnp.clip(applied[1], c.min_throttle, c.max_throttle)
        dt = c.ctrl_dt / c.substeps
        car = dynamics.simulate(ph.car, applied[0] * vc.max_steer, throttle, p, vc, dt, c.substeps)

        t = ph.track
        proj = tracklib.project(tr, t, ph.index, jnp.stack([car.x, car.y]), c.search_window)
        length = tr.length[t]
        ds = jnp.mod(proj.s - jnp.mod(ph.s, length) + 0.5 * length, length) - 0.5 * length
        s = ph.s + ds
        s_best = jnp.maximum(ph.s_best, s)
        gained = s_best - ph.s_best

        # Checkpoints and laps from the furthest point reached: in order by construction.
        per_lap = jnp.maximum(jnp.round(length / c.checkpoint_spacing), 1.0)
        cp_len = length / per_lap
        checkpoints = jnp.floor((s_best - ph.s_start) / cp_len).astype(jnp.int32)
        per_lap_i = per_lap.astype(jnp.int32)
        lap_done = checkpoints // per_lap_i > ph.checkpoints // per_lap_i
        finish = ph.s_start + (checkpoints // per_lap_i).astype(jnp.float32) * length
        frac = jnp.clip((finish - ph.s_best) / jnp.maximum(gained, 1e-6), 0.0, 1.0)
        crossed_at = ph.time + frac * c.ctrl_dt

        half_width = tr.half_width[t]
        collided = jnp.abs(proj.offset) + 0.5 * vc.car_width > half_width
        heading_error = _wrap(car.psi - proj.heading)
        physics = ph.replace(
            car=car,
            index=proj.index,
            s=s,
            s_best=s_best,
            offset=proj.offset,
            heading_error=heading_error,
            time=ph.time + c.ctrl_dt,
            lap_start=jnp.where(lap_done, crossed_at, ph.lap_start),
            lap_time=jnp.where(lap_done, crossed_at - ph.lap_start, ph.lap_time),
            checkpoints=checkpoints,
            queue=queue,
            last_action=act,
        )

        e = jnp.abs(proj.offset) / half_width
        if c.reward == "summed":
            v_along = car.vx * jnp.cos(heading_error) - car.vy * jnp.sin(heading_error)
            reward = (
                c.progress_weight * ds
                + c.speed_weight * v_along / vc.motor_vmax
                - c.offset_weight * jnp.square(jnp.minimum(e, 2.0))
                - c.steer_change_weight * jnp.abs(act[0] - ph.last_action[0])
                - c.collision_penalty * collided
            )
        else:
            speed = jnp.hypot(car.vx, car.vy)
            factor = jnp.where(e > c.lane_threshold, c.lane_factor, 1.0)
            if c.speed_limit > 0:
                over = jnp.maximum(speed - c.speed_limit, 0.0)
                factor = factor * jnp.clip(1.0 - over / c.overspeed_tolerance, 0.0, 1.0)
            if c.max_action_change > 0:
                jump = jnp.max(jnp.abs(act - ph.last_action)) > c.max_action_change
                factor = factor * jnp.where(jump, c.action_change_factor, 1.0)
            reward = gained / length * factor - c.terminal_penalty * collided

        return state.replace(
            obs=self._observe(physics),
            reward=reward.astype(jnp.float32),
            terminated=collided,
            truncated=jnp.zeros((), bool),
            physics=physics,
            metrics=self._metrics(physics, collided),
        )

    # ------------------------------------------------------------------------------------------
    # Observation and metrics.

    def rays(self, physics: RCCarPhysics) -> jax.Array:
        """Boundary distances [num_rays] in metres (at most ray_max_range), right to left.
        Needs ``use_rays`` (the ray-neighbour table is built only then)."""
        c, car = self.config, physics.car
        return tracklib.cast_rays(
            self.tracks,
            physics.track,
            physics.index,
            jnp.stack([car.x, car.y]),
            car.psi + self._ray_offsets,
            c.ray_max_range,
        )

    def _observe(self, physics: RCCarPhysics) -> jax.Array:
        c, tr, car = self.config, self.tracks, physics.car
        t = physics.track
        ahead = tracklib.index_ahead(
            tr, t, physics.index, jnp.asarray(c.curvature_lookahead, jnp.float32)
        )
        parts = [
            jnp.stack([car.vx, car.vy, car.r, car.delta]),
            jnp.stack([physics.offset / tr.half_width[t], physics.heading_error]),
            tr.curvature[t, ahead],
            physics.last_action,
        ]
        if c.use_rays:
            parts.append(self.rays(physics) / c.ray_max_range)
        return jnp.concatenate(parts).astype(jnp.float32)

    def _metrics(self, physics: RCCarPhysics, collided: jax.Array) -> dict[str, jax.Array]:
        length = self.tracks.length[physics.track]
        done = (physics.s_best - physics.s_start) / length
        per_lap = jnp.maximum(jnp.round(length / self.config.checkpoint_spacing), 1.0)
        laps = jnp.floor(physics.checkpoints.astype(jnp.float32) / per_lap)
        return {
            "laps": laps,
            "lap_time": physics.lap_time,
            "progress": jnp.clip(done - laps, 0.0, 1.0),
            "speed": jnp.hypot(physics.car.vx, physics.car.vy),
            "checkpoints": physics.checkpoints.astype(jnp.float32),
            "off_track": collided.astype(jnp.float32),
        }

    # ------------------------------------------------------------------------------------------
    # Host-side helpers.

    def render(self, state: EnvState) -> np.ndarray:
        """Top-down view [render_size, render_size, 3] uint8 of one unbatched state."""
        from sims.rccar.render import render_topdown

        return render_topdown(self, state)

    def pure_pursuit_action(self, state: EnvState, **kwargs) -> jax.Array:
        """A demonstration driver's action for one state (see ``sims.rccar.pure_pursuit``)."""
        from sims.rccar.pure_pursuit import pure_pursuit_action

        return pure_pursuit_action(self, state, **kwargs)
