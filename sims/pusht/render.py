"""Push-T image rendering in pure JAX (jit/vmap-able): per-pixel signed-distance tests.

Draws what the benchmark's pygame frame shows, in its order and colours: background, walls
(light grey segments), goal T (light green, filled), the block (filled with its colour lightened
1.2x, a 2 px border in its colour), the pusher (a disc in its colour with a 1.2x lighter disc of
radius 11 inside). The pusher is drawn last (the benchmark draws the block over it; they overlap
only while touching). Edges are anti-aliased by a one-pixel linear ramp of the signed distance.

Visual randomisation (all read from ``params``, colours RGB in [0, 1]):
``background_color``, ``wall_color``, ``goal_color``, ``block_color``, ``agent_color``;
camera jitter ``camera_offset`` (px of workspace, [2]), ``camera_rotation`` (rad) and
``camera_scale`` (>1 zooms out) map each image pixel to a workspace point about the workspace
centre; lighting is ``(c - 0.5) * contrast + 0.5 + brightness``, clipped.

Image rows follow the workspace y axis (down), columns x, as in the benchmark's frames.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

LIGHTEN = 1.2  # the benchmark's light_color factor
BORDER = 2.0  # px, half width of the block's outline (pymunk_override draws radius-2 segments)
INNER_RADIUS_MARGIN = 4.0  # px, the pusher's lighter inner disc is radius - 4


def _coverage(sd: jax.Array, pixel: float) -> jax.Array:
    """Anti-aliased occupancy in [0, 1] from a signed distance (px) with pixels ``pixel`` px."""
    return jnp.clip(0.5 - sd / pixel, 0.0, 1.0)


def _over(base: jax.Array, color: jax.Array, alpha: jax.Array) -> jax.Array:
    """Alpha-composites ``color`` ([3] or [H, W, 3]) over ``base [H, W, 3]``."""
    color = jnp.broadcast_to(color, base.shape)
    return base + alpha[..., None] * (color - base)


def _box_sdf(x: jax.Array, y: jax.Array, hx, hy) -> jax.Array:
    """Signed distance of points (separate x/y arrays: a trailing axis of 2 vectorises badly on
    CPU) to the origin-centred box of half extents ``hx, hy``."""
    qx, qy = jnp.abs(x) - hx, jnp.abs(y) - hy
    outside = jnp.sqrt(jnp.maximum(qx, 0.0) ** 2 + jnp.maximum(qy, 0.0) ** 2)
    return outside + jnp.minimum(jnp.maximum(qx, qy), 0.0)


def _tee_sdf(x, y, pose, box_centres, box_halves) -> jax.Array:
    """Signed distance of workspace points to the T at ``pose [3]`` (min over its boxes)."""
    c, s = jnp.cos(pose[2]), jnp.sin(pose[2])
    dx, dy = x - pose[0], y - pose[1]
    lx, ly = c * dx + s * dy, -s * dx + c * dy  # into the block's frame
    sd = [
        _box_sdf(lx - float(cx), ly - float(cy), float(hx), float(hy))
        for (cx, cy), (hx, hy) in zip(box_centres, box_halves, strict=True)
    ]
    return jnp.minimum(sd[0], sd[1])


def pixel_points(params: dict, size: int, workspace: float) -> tuple[jax.Array, jax.Array]:
    """Workspace x, y ``[size, size]`` seen at each pixel centre, camera jitter applied."""
    coords = (jnp.arange(size, dtype=jnp.float32) + 0.5) * (workspace / size) - workspace / 2
    u, v = jnp.meshgrid(coords, coords)  # rows: y, columns: x
    c, s = jnp.cos(params["camera_rotation"]), jnp.sin(params["camera_rotation"])
    k = params["camera_scale"]
    x = k * (c * u - s * v) + workspace / 2 + params["camera_offset"][0]
    y = k * (s * u + c * v) + workspace / 2 + params["camera_offset"][1]
    return x, y


def render_image(
    params: dict,
    agent_pos: jax.Array,
    block_pose: jax.Array,
    goal_pose: jax.Array,
    *,
    size: int,
    workspace: float,
    wall_low: float,
    wall_high: float,
    agent_radius: float,
    box_centres,
    box_halves,
) -> jax.Array:
    """The frame ``[size, size, 3]`` uint8 for one state (unbatched; vmap for batches)."""
    x, y = pixel_points(params, size, workspace)
    pixel = workspace / size * params["camera_scale"]
    box_centres, box_halves = np.asarray(box_centres), np.asarray(box_halves)
    img = jnp.broadcast_to(params["background_color"], (size, size, 3))

    # Walls: a 4 px band just outside the inner square, as pymunk's radius-2 segments at 5 / 506.
    mid, half_in = (wall_high + wall_low) / 2, (wall_high - wall_low) / 2
    sd_inner = _box_sdf(x - mid, y - mid, half_in, half_in)
    sd_outer = _box_sdf(x - mid, y - mid, half_in + 2 * BORDER, half_in + 2 * BORDER)
    img = _over(img, params["wall_color"], _coverage(jnp.maximum(sd_outer, -sd_inner), pixel))

    sd_goal = _tee_sdf(x, y, goal_pose, box_centres, box_halves)
    img = _over(img, params["goal_color"], _coverage(sd_goal, pixel))

    sd_block = _tee_sdf(x, y, block_pose, box_centres, box_halves)
    dark = params["block_color"]
    light = jnp.minimum(LIGHTEN * dark, 1.0)
    border = _coverage(-(sd_block + BORDER), pixel)  # 1 within BORDER of the edge
    color = light[None, None] + border[..., None] * (dark - light)[None, None]
    img = _over(img, color, _coverage(sd_block - BORDER, pixel))

    dist = jnp.sqrt((x - agent_pos[0]) ** 2 + (y - agent_pos[1]) ** 2)
    dark = params["agent_color"]
    light = jnp.minimum(LIGHTEN * dark, 1.0)
    inner = _coverage(dist - (agent_radius - INNER_RADIUS_MARGIN), pixel)
    color = dark[None, None] + inner[..., None] * (light - dark)[None, None]
    img = _over(img, color, _coverage(dist - agent_radius, pixel))

    img = (img - 0.5) * params["contrast"] + 0.5 + params["brightness"]
    return jnp.round(jnp.clip(img, 0.0, 1.0) * 255.0).astype(jnp.uint8)
