"""Geometry of Push-T: the T block as two boxes, poses, signed distances and exact coverage.

Units are the benchmark's workspace pixels (a 512 x 512 square, x to the right, y DOWN, as in
pymunk drawn by pygame) and radians. A pose ``[x, y, theta]`` places the block's local frame:
``world = R(theta) @ local + [x, y]``. The local frame is the one of Diffusion Policy's
``PushTEnv.add_tee`` (scale 30, length 4): the bar spans x in [-60, 60], y in [0, 30]; the stem
x in [-15, 15], y in [30, 120]; the local origin (what the observation reports as the block
position) is the middle of the bar's top edge, and the centre of gravity sits at (0, 45).

Coverage is exact: the block and the goal are unions of two disjoint boxes, so
``area(block & goal) = sum over box pairs of area(box_i & box_j)``, each a convex polygon clipped
with Sutherland-Hodgman at fixed size (see ``box_intersection_area``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def tee_boxes(scale: float = 30.0, length: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``[2, 2]`` and half extents ``[2, 2]`` (bar, stem) in the block's local frame."""
    centres = np.array([[0.0, scale / 2], [0.0, scale + (length - 1) * scale / 2]], np.float32)
    halves = np.array(
        [[length * scale / 2, scale / 2], [scale / 2, (length - 1) * scale / 2]], np.float32
    )
    return centres, halves


def rotation(theta: jax.Array) -> jax.Array:
    """``[2, 2]`` rotation matrix, ``R @ v`` turns a local vector into the world frame."""
    c, s = jnp.cos(theta), jnp.sin(theta)
    return jnp.stack([jnp.stack([c, -s]), jnp.stack([s, c])])


def expand_to(v: jax.Array, points: jax.Array) -> jax.Array:
    """A ``[2]`` vector shaped to broadcast against ``points [..., 2]`` (ranks never promote
    implicitly here: the tests raise on it)."""
    return jnp.reshape(v, (1,) * (points.ndim - 1) + (2,))


def rotate(theta: jax.Array, v: jax.Array) -> jax.Array:
    """Vectors ``[..., 2]`` turned by ``theta`` (elementwise: small matmuls are slow under vmap
    on CPU)."""
    c, s = jnp.cos(theta), jnp.sin(theta)
    x, y = v[..., 0], v[..., 1]
    return jnp.stack([c * x - s * y, s * x + c * y], axis=-1)


def to_world(pose: jax.Array, points: jax.Array) -> jax.Array:
    """Local points ``[..., 2]`` of a body at ``pose [3]`` -> world points ``[..., 2]``."""
    return rotate(pose[2], points) + expand_to(pose[:2], points)


def to_local(pose: jax.Array, points: jax.Array) -> jax.Array:
    """World points ``[..., 2]`` -> the local frame of a body at ``pose [3]``."""
    return rotate(-pose[2], points - expand_to(pose[:2], points))


def cross2(a: jax.Array, b: jax.Array) -> jax.Array:
    """z component of the 2-D cross product, over the last axis."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def box_sdf(points: jax.Array, half: jax.Array) -> jax.Array:
    """Signed distance ``[...]`` from box-local points ``[..., 2]`` to an origin-centred box."""
    q = jnp.abs(points) - half
    outside = jnp.linalg.norm(jnp.maximum(q, 0.0), axis=-1)
    return outside + jnp.minimum(jnp.max(q, axis=-1), 0.0)


def tee_sdf(pose: jax.Array, points: jax.Array, centres, halves) -> jax.Array:
    """Signed distance ``[...]`` from world points ``[..., 2]`` to the T at ``pose`` (min over
    its boxes: exact outside, a lower bound of the depth inside)."""
    local = to_local(pose, points)
    c, h = jnp.asarray(centres), jnp.asarray(halves)
    return jnp.minimum(
        box_sdf(local - expand_to(c[0], local), expand_to(h[0], local)),
        box_sdf(local - expand_to(c[1], local), expand_to(h[1], local)),
    )


def _box_sdf_grad(points: jax.Array, half: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``box_sdf`` and its unit gradient ``[..., 2]`` (box-local), in closed form."""
    q = jnp.abs(points) - half
    sign = jnp.where(points >= 0, 1.0, -1.0)
    out = jnp.maximum(q, 0.0)
    out_len = jnp.linalg.norm(out, axis=-1)
    x_axis = q[..., 0] >= q[..., 1]
    inside_grad = jnp.stack([x_axis, ~x_axis], axis=-1).astype(points.dtype)
    grad = jnp.where(
        (out_len > 0)[..., None], out / jnp.maximum(out_len, 1e-9)[..., None], inside_grad
    )
    return out_len + jnp.minimum(jnp.max(q, axis=-1), 0.0), grad * sign


def tee_sdf_and_grad(pose: jax.Array, points: jax.Array, centres, halves):
    """``tee_sdf`` ``[...]`` and its unit gradient ``[..., 2]`` in the world frame."""
    local = to_local(pose, points)
    c, h = jnp.asarray(centres), jnp.asarray(halves)
    sd0, g0 = _box_sdf_grad(local - expand_to(c[0], local), expand_to(h[0], local))
    sd1, g1 = _box_sdf_grad(local - expand_to(c[1], local), expand_to(h[1], local))
    first = (sd0 <= sd1)[..., None]
    return jnp.minimum(sd0, sd1), rotate(pose[2], jnp.where(first, g0, g1))


def box_corners(centre: jax.Array, half: jax.Array) -> jax.Array:
    """The 4 corners ``[4, 2]`` of an axis-aligned box, counter-clockwise in (x, y)."""
    signs = jnp.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    return centre[None] + signs * half[None]


MAX_VERTS = 8  # a convex quadrilateral clipped by another has at most 8 vertices

# The 4 half-planes of an origin-centred box: s * x[axis] <= half[axis].
_CLIP_AXES = np.array([0, 0, 1, 1], np.int32)
_CLIP_SIGNS = np.array([1.0, -1.0, 1.0, -1.0], np.float32)


def _clip(points: jax.Array, real: jax.Array, h: jax.Array):
    """Clips a convex polygon to the half-plane ``h >= 0`` at fixed size (Sutherland-Hodgman).

    Args:
      points: ``[V, 2]`` vertices in order; slots after the last real vertex repeat it.
      real: ``[V]`` bool, which slots are vertices (a prefix).
      h: ``[V]`` the half-plane's value at each slot.
    Returns:
      ``(points, real)`` of the clipped polygon, same layout.
    """
    v = points.shape[0]
    nxt, h_next = jnp.roll(points, -1, axis=0), jnp.roll(h, -1)
    crosses = (h * h_next) < 0.0  # padding edges have zero length: never cross
    t = h / jnp.where(crosses, h - h_next, 1.0)
    crossing = points + t[:, None] * (nxt - points)
    cand = jnp.stack([points, crossing], axis=1).reshape(2 * v, 2)
    emit = jnp.stack([jnp.logical_and(real, h >= 0.0), crosses], axis=1).reshape(2 * v)
    slot = jnp.where(emit, jnp.cumsum(emit) - 1, v)  # compact; overflow slot v is dropped
    out = jnp.zeros((v + 1, 2)).at[slot].set(cand)[:v]
    count = jnp.sum(emit)
    last = out[jnp.maximum(count - 1, 0)]
    real = jnp.arange(v) < count
    return jnp.where(real[:, None], out, last[None]), real


def box_intersection_area(corners: jax.Array, half: jax.Array) -> jax.Array:
    """Area of the convex quadrilateral ``corners [4, 2]`` (counter-clockwise) inside the box
    ``|x| <= half[0], |y| <= half[1]`` (Sutherland-Hodgman, 4 half-planes, shoelace)."""
    pad = MAX_VERTS - corners.shape[0]
    points = jnp.concatenate([corners, jnp.broadcast_to(corners[-1:], (pad, 2))], axis=0)
    real = jnp.arange(MAX_VERTS) < corners.shape[0]

    def body(i, carry):
        points, real = carry
        axis, sign = jnp.asarray(_CLIP_AXES)[i], jnp.asarray(_CLIP_SIGNS)[i]
        return _clip(points, real, half[axis] - sign * points[:, axis])

    points, real = jax.lax.fori_loop(0, 4, body, (points, real))
    area = 0.5 * jnp.sum(cross2(points, jnp.roll(points, -1, axis=0)))
    return jnp.where(jnp.any(real), jnp.maximum(area, 0.0), 0.0)


def tee_overlap_area(pose_a: jax.Array, pose_b: jax.Array, centres, halves) -> jax.Array:
    """Exact area of ``T(pose_a) & T(pose_b)`` in px^2 (sum over the 2 x 2 box pairs)."""
    centres, halves = jnp.asarray(centres), jnp.asarray(halves)
    i, j = jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 0, 1])

    def pair(i, j):
        corners_a = to_world(pose_a, box_corners(centres[i], halves[i]))
        # Box j of T(pose_b), centred and axis-aligned in its own frame.
        frame_b = jnp.concatenate([to_world(pose_b, centres[j]), pose_b[2:]])
        return box_intersection_area(to_local(frame_b, corners_a), halves[j])

    return jnp.sum(jax.vmap(pair)(i, j))


def tee_area(halves) -> float:
    """Area of the T in px^2 (6300 for the benchmark's block)."""
    return float(4.0 * np.sum(np.prod(np.asarray(halves, np.float64), axis=-1)))


def coverage(pose: jax.Array, goal_pose: jax.Array, centres, halves) -> jax.Array:
    """``area(block & goal) / area(goal)`` in [0, 1], the benchmark's success measure."""
    return jnp.clip(tee_overlap_area(pose, goal_pose, centres, halves) / tee_area(halves), 0, 1)
