"""A pure-pursuit driver with curvature-based speed planning: a demonstration driver (e.g. the
slow lap that seeds FastRLAP's checkpoint graph) and the sanity check that every track can be
lapped.

Steering: aim at the centreline point ``lookahead + lookahead_gain * vx`` metres ahead and command
the kinematic pure-pursuit angle ``atan(2 L sin(alpha) / d)`` (alpha: bearing of the target in the
car frame, d: its distance), measured from where the car will be when the action takes effect
(the episode's latency, extrapolated at constant velocity and yaw rate). Speed: the target is
``sqrt(lateral_accel / |kappa|)`` for the largest centreline curvature in the next ``preview``
metres, at most ``max_speed``; throttle is the steady-state motor command for that speed (from
the episode's params) plus a proportional term. Reads only what a car with a map, a localiser
and its own parameters would know. With these defaults it laps every shipped track with the
default, "train" and "heldout" parameters (latency 0-2 steps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from robotrl.envs import EnvState
from sims.rccar import tracks as tracklib
from sims.rccar.dynamics import GRAVITY


def pure_pursuit_action(
    env,
    state: EnvState,
    *,
    lookahead: float = 0.5,
    lookahead_gain: float = 0.35,
    lateral_accel: float = 4.0,
    max_speed: float = 5.0,
    min_speed: float = 1.0,
    preview: float = 3.0,
    speed_gain: float = 0.4,
) -> jax.Array:
    """The action ``[steering, throttle]`` in [-1, 1] for one unbatched ``state`` of ``env`` (an
    ``RCCar``); vmap it for a batch.

    Args:
      lookahead, lookahead_gain: m and s, look-ahead distance ``lookahead + lookahead_gain vx``.
      lateral_accel: m/s^2, cornering budget for the speed target.
      max_speed, min_speed: m/s, bounds of the speed target.
      preview: m, how far ahead corners slow the car down.
      speed_gain: throttle per m/s of speed error.
    """
    c, tr, ph, p = env.config, env.tracks, state.physics, state.params
    vc, car, t = c.vehicle, ph.car, ph.track
    # Where the car will be when this action takes effect (constant velocity and yaw rate).
    delay = jnp.clip(jnp.round(p["latency"]), 0, c.max_latency) * c.ctrl_dt
    psi = car.psi + car.r * delay
    mid = car.psi + 0.5 * car.r * delay
    x = car.x + delay * (car.vx * jnp.cos(mid) - car.vy * jnp.sin(mid))
    y = car.y + delay * (car.vx * jnp.sin(mid) + car.vy * jnp.cos(mid))
    dist = lookahead + lookahead_gain * jnp.maximum(car.vx, 0.0) + car.vx * delay
    target = tr.points[t, tracklib.index_ahead(tr, t, ph.index, dist)]
    rel = target - jnp.stack([x, y])
    cos_p, sin_p = jnp.cos(psi), jnp.sin(psi)
    x_car = cos_p * rel[0] + sin_p * rel[1]
    y_car = -sin_p * rel[0] + cos_p * rel[1]
    alpha = jnp.arctan2(y_car, x_car)
    d = jnp.maximum(jnp.hypot(x_car, y_car), 1e-3)
    steer = jnp.arctan(2.0 * vc.wheelbase * jnp.sin(alpha) / d) / vc.max_steer

    n_preview = max(1, round(preview / c.track_spacing))
    idx = jnp.mod(ph.index + jnp.arange(n_preview), tr.num_points[t])
    kappa = jnp.max(jnp.abs(tr.curvature[t, idx]))
    v_target = jnp.clip(jnp.sqrt(lateral_accel / jnp.maximum(kappa, 1e-3)), min_speed, max_speed)
    resist = p["drag"] * v_target**2 + p["rolling_resistance"] * p["mass"] * GRAVITY
    feedforward = v_target / vc.motor_vmax + resist / p["motor_gain"]
    throttle = feedforward + speed_gain * (v_target - car.vx)
    return jnp.clip(jnp.stack([steer, throttle]), -1.0, 1.0)
