"""Push-T physics in pure JAX: a PD-driven kinematic pusher and a T block in a walled square.

What pymunk does in Diffusion Policy's ``PushTEnv``, rebuilt as impulse-based rigid-body contact:

* Pusher: a disc (radius 15 px) with infinite mass (pymunk KINEMATIC body). Every substep its
  velocity follows the PD law ``v += (k_p (target - x) - k_v v) dt`` and its position
  ``x += v dt``; contacts never slow it. It is kept inside the walls (pymunk does not collide
  kinematic bodies with walls; here the disc is clamped to the inner square) and, as a safety
  net, pushed back out of the block when it sits deeper than ``pen_tolerance`` (only when the
  block is squeezed against a wall, or at reset).
* Block: a rigid body (mass, inertia about its centre of gravity, centre of gravity offset in
  its local frame). Between contacts its velocity decays as ``exp(-t / tau)``; ``tau = 0`` is
  pymunk's ``space.damping = 0`` of the benchmark (velocity removed every substep, i.e.
  quasi-static pushing: the block moves only while it is pushed). That damping stands in for
  ground friction; there is no other ground friction.
* Contact pusher/block: one speculative contact per box of the T (closest point of the box to
  the disc centre, normal, gap), solved with sequential impulses (projected Gauss-Seidel):
  non-penetration along the normal (closing at most the gap in one substep, Baumgarte bias on
  penetration) and Coulomb friction ``|lambda_t| <= mu lambda_n`` along the tangent. The
  benchmark's pusher/block contact is frictionless (its ``body.friction = 1`` sets an attribute
  pymunk ignores; shape friction stays 0), so the default ``friction`` is 0.
* Walls: the benchmark's four segments (at 5 and 506, radius 2) bound the block and pusher to
  [7, 504]^2. The block is projected back inside after each substep and loses its velocity
  component into the wall (frictionless, inelastic), which is what the solver would converge to.

Units: px (workspace pixels), s, rad; mass in the benchmark's unit (block mass 1), inertia in
mass px^2 (the benchmark's 3000: ``moment_for_poly`` of the bar, twice).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from sims.pusht import geometry


class PushTPhysics(flax.struct.PyTreeNode):
    """Simulator state (unbatched).

    Attributes:
      agent_pos: ``[2]`` pusher centre, px.
      agent_vel: ``[2]`` pusher velocity, px/s.
      block_pose: ``[3]`` block local-origin position (px) and angle (rad, unwrapped).
      block_vel: ``[3]`` velocity of the block's centre of gravity (px/s) and spin (rad/s).
      target: ``[2]`` the last commanded pusher target (the action), px.
    """

    agent_pos: jax.Array
    agent_vel: jax.Array
    block_pose: jax.Array
    block_vel: jax.Array
    target: jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class Geometry:
    """The static shapes and numerical settings the physics needs (built from the env config)."""

    box_centres: tuple  # [2][2] T boxes' centres in the block's local frame, px
    box_halves: tuple  # [2][2] T boxes' half extents, px
    agent_radius: float  # px
    wall_low: float  # px, inner face of the left/top walls
    wall_high: float  # px, inner face of the right/bottom walls
    sim_dt: float  # s, one physics substep
    substeps: int  # physics substeps per control step
    solver_iterations: int  # Gauss-Seidel sweeps over the contacts per substep
    contact_bias: float  # fraction of the penetration (beyond the slop) removed per substep
    contact_slop: float  # px of penetration tolerated without correction
    pen_tolerance: float  # px; deeper pusher penetration is projected out (squeeze safety net)


def _perp(v: jax.Array) -> jax.Array:
    """``v`` turned by +90 degrees (``omega x r`` for a unit spin)."""
    return jnp.stack([-v[..., 1], v[..., 0]], axis=-1)


def block_cog_world(pose: jax.Array, cog_local: jax.Array) -> jax.Array:
    """``[2]`` world position of the block's centre of gravity."""
    return geometry.to_world(pose, cog_local)


def pusher_contacts(geo: Geometry, pose: jax.Array, agent_pos: jax.Array):
    """Closest features between the pusher disc and each box of the T.

    Returns:
      point: ``[2, 2]`` world contact points on the box surfaces.
      normal: ``[2, 2]`` unit world normals pointing from the box towards the pusher.
      gap: ``[2]`` signed distance between disc and box surfaces, px (negative: overlap).
    """
    centres, halves = jnp.asarray(geo.box_centres), jnp.asarray(geo.box_halves)
    p = geometry.to_local(pose, agent_pos)[None] - centres  # [2, 2] in each box's frame
    closest = jnp.clip(p, -halves, halves)
    delta = p - closest
    dist = jnp.linalg.norm(delta, axis=-1)
    outside = dist > 1e-6
    # Centre inside a box: leave through the nearest face.
    depth = halves - jnp.abs(p)  # [2, 2] distance to the faces on each axis
    axis_x = depth[:, 0] < depth[:, 1]
    sign = jnp.where(p >= 0, 1.0, -1.0)
    face_normal = jnp.where(
        axis_x[:, None],
        jnp.stack([sign[:, 0], jnp.zeros_like(sign[:, 0])], -1),
        jnp.stack([jnp.zeros_like(sign[:, 1]), sign[:, 1]], -1),
    )
    face_point = jnp.where(
        axis_x[:, None],
        jnp.stack([sign[:, 0] * halves[:, 0], p[:, 1]], -1),
        jnp.stack([p[:, 0], sign[:, 1] * halves[:, 1]], -1),
    )
    normal = jnp.where(outside[:, None], delta / jnp.maximum(dist, 1e-6)[:, None], face_normal)
    point = jnp.where(outside[:, None], closest, face_point)
    gap = jnp.where(outside, dist, -jnp.min(depth, axis=-1)) - geo.agent_radius
    return geometry.to_world(pose, point + centres), geometry.rotate(pose[2], normal), gap


def _solve_contacts(geo, params, cog, block_vel, agent_vel, point, normal, gap):
    """Sequential impulses for the pusher contacts; returns the block's new ``[3]`` velocity."""
    inv_m = 1.0 / params["block_mass"]
    inv_i = 1.0 / params["block_inertia"]
    mu = params["friction"]
    dt = geo.sim_dt
    n_b = -normal  # impulse direction on the block: away from the pusher
    t_b = _perp(n_b)
    r = point - cog[None]
    rn, rt = geometry.cross2(r, n_b), geometry.cross2(r, t_b)
    k_n = inv_m + rn**2 * inv_i
    k_t = inv_m + rt**2 * inv_i
    # Speculative: may close the gap this substep but not more; push out part of an overlap.
    pen = jnp.maximum(-gap - geo.contact_slop, 0.0)
    target = jnp.where(gap > 0, -gap / dt, geo.contact_bias * pen / dt)

    def visit(i, carry):  # one contact (i mod 2) per visit, Gauss-Seidel order
        vel, lam_n, lam_t = carry
        c = i % 2
        v_c = vel[:2] + vel[2] * _perp(r[c]) - agent_vel
        new_n = jnp.maximum(lam_n[c] + (target[c] - jnp.dot(v_c, n_b[c])) / k_n[c], 0.0)
        vel = vel + (new_n - lam_n[c]) * jnp.concatenate([n_b[c] * inv_m, (rn[c] * inv_i)[None]])
        v_c = vel[:2] + vel[2] * _perp(r[c]) - agent_vel
        new_t = jnp.clip(lam_t[c] - jnp.dot(v_c, t_b[c]) / k_t[c], -mu * new_n, mu * new_n)
        vel = vel + (new_t - lam_t[c]) * jnp.concatenate([t_b[c] * inv_m, (rt[c] * inv_i)[None]])
        return vel, lam_n.at[c].set(new_n), lam_t.at[c].set(new_t)

    zeros = jnp.zeros((2,))
    init = (block_vel, zeros, zeros)
    vel, _, _ = jax.lax.fori_loop(0, 2 * geo.solver_iterations, visit, init)
    return vel


def _decay(tau: jax.Array, dt: float) -> jax.Array:
    """Velocity kept over ``dt`` under ``exp(-t / tau)``; 0 when ``tau <= 0`` (pymunk damping 0)."""
    return jnp.where(tau > 0, jnp.exp(-dt / jnp.maximum(tau, 1e-9)), 0.0)


def _wall_projection(geo, pose, block_vel):
    """Moves the block back inside the walls; removes its velocity into them."""
    centres, halves = jnp.asarray(geo.box_centres), jnp.asarray(geo.box_halves)
    corners = jnp.concatenate(
        [geometry.box_corners(centres[i], halves[i]) for i in range(2)], axis=0
    )
    world = geometry.to_world(pose, corners)  # [8, 2]
    low = jnp.maximum(geo.wall_low - jnp.min(world, axis=0), 0.0)  # [2] push in +x/+y
    high = jnp.maximum(jnp.max(world, axis=0) - geo.wall_high, 0.0)  # [2] push in -x/-y
    shift = low - high
    pose = pose.at[:2].add(shift)
    lin = block_vel[:2]
    lin = jnp.where(low > 0, jnp.maximum(lin, 0.0), lin)
    lin = jnp.where(high > 0, jnp.minimum(lin, 0.0), lin)
    return pose, block_vel.at[:2].set(lin)


def push_out(geo: Geometry, pose: jax.Array, agent_pos: jax.Array, tolerance: float):
    """Moves the pusher out of the block until it overlaps each box by at most ``tolerance``."""

    def visit(i, agent_pos):  # bar, stem, bar: leaving one box may enter the other
        _, normal, gap = pusher_contacts(geo, pose, agent_pos)
        c = i % 2
        return agent_pos + jnp.maximum(-gap[c] - tolerance, 0.0) * normal[c]

    return jax.lax.fori_loop(0, 3, visit, agent_pos)


def clamp_agent(geo: Geometry, agent_pos: jax.Array, agent_vel: jax.Array):
    """Keeps the pusher disc inside the walls (inelastic)."""
    lo, hi = geo.wall_low + geo.agent_radius, geo.wall_high - geo.agent_radius
    clamped = jnp.clip(agent_pos, lo, hi)
    vel = jnp.where(agent_pos < lo, jnp.maximum(agent_vel, 0.0), agent_vel)
    vel = jnp.where(agent_pos > hi, jnp.minimum(vel, 0.0), vel)
    return clamped, vel


def substep(geo: Geometry, params: dict, phys: PushTPhysics) -> PushTPhysics:
    """One physics substep of ``geo.sim_dt`` seconds toward ``phys.target``."""
    dt = geo.sim_dt
    accel = params["kp"] * (phys.target - phys.agent_pos) - params["kv"] * phys.agent_vel
    agent_vel = phys.agent_vel + accel * dt
    decay = jnp.stack(
        [_decay(params["linear_damping_time"], dt)] * 2
        + [_decay(params["angular_damping_time"], dt)]
    )
    block_vel = phys.block_vel * decay
    pose, cog_local = phys.block_pose, params["block_cog"]
    cog = block_cog_world(pose, cog_local)
    point, normal, gap = pusher_contacts(geo, pose, phys.agent_pos)
    block_vel = _solve_contacts(geo, params, cog, block_vel, agent_vel, point, normal, gap)
    # Integrate about the centre of gravity, then report the local origin's pose.
    cog = cog + block_vel[:2] * dt
    theta = pose[2] + block_vel[2] * dt
    origin = cog - geometry.rotate(theta, cog_local)
    pose = jnp.concatenate([origin, theta[None]])
    pose, block_vel = _wall_projection(geo, pose, block_vel)
    agent_pos = phys.agent_pos + agent_vel * dt
    agent_pos, agent_vel = clamp_agent(geo, agent_pos, agent_vel)
    agent_pos = push_out(geo, pose, agent_pos, geo.pen_tolerance)
    return phys.replace(
        agent_pos=agent_pos, agent_vel=agent_vel, block_pose=pose, block_vel=block_vel
    )


def control_step(geo: Geometry, params: dict, phys: PushTPhysics, target: jax.Array):
    """``geo.substeps`` physics substeps holding the pusher target ``[2]`` (px)."""
    phys = phys.replace(target=target)
    return jax.lax.fori_loop(0, geo.substeps, lambda _, s: substep(geo, params, s), phys)
