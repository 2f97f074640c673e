"""Top-down rendering of one RC-car state (host side, numpy + PIL): the track surface between
both boundaries, the start line and the checkpoints, the car body with its heading, and the
range rays when they are on."""

from __future__ import annotations

import numpy as np

_GRASS, _ROAD, _EDGE = (46, 110, 52), (120, 120, 124), (250, 250, 250)
_CHECKPOINT, _START, _CAR, _NOSE, _RAY = (
    (250, 200, 40), (230, 40, 40), (30, 90, 220), (255, 255, 255), (255, 120, 0)
)  # fmt: skip


def render_topdown(env, state) -> np.ndarray:
    """``[size, size, 3]`` uint8 image of one unbatched ``EnvState`` of ``env`` (an ``RCCar``)."""
    from PIL import Image, ImageDraw

    c, ph = env.config, state.physics
    size = c.render_size
    track = env.track_geometry[int(ph.track)]
    left, right = track.left, track.right
    lo = np.minimum(left.min(0), right.min(0)) - 0.3
    hi = np.maximum(left.max(0), right.max(0)) + 0.3
    scale = (size - 1) / float(np.max(hi - lo))
    offset = 0.5 * ((size - 1) - scale * (hi - lo))

    def px(xy: np.ndarray) -> list[tuple[float, float]]:
        xy = np.atleast_2d(np.asarray(xy, np.float64))
        u = offset[0] + scale * (xy[:, 0] - lo[0])
        v = (size - 1) - (offset[1] + scale * (xy[:, 1] - lo[1]))  # y up
        return list(zip(u.tolist(), v.tolist(), strict=True))

    image = Image.new("RGB", (size, size), _GRASS)
    draw = ImageDraw.Draw(image)
    draw.polygon(px(left), fill=_ROAD)
    draw.polygon(px(right), fill=_GRASS)
    # The right boundary is the inner edge on a counter-clockwise lap; for a clockwise lap the
    # roles swap, so redraw the road as quads when the inner polygon is the left one.
    if _area(left) < _area(right):
        image.paste(_GRASS, (0, 0, size, size))
        for i in range(track.num_points):
            j = (i + 1) % track.num_points
            draw.polygon(px(np.stack([left[i], left[j], right[j], right[i]])), fill=_ROAD)
    draw.line(px(np.concatenate([left, left[:1]])), fill=_EDGE, width=1)
    draw.line(px(np.concatenate([right, right[:1]])), fill=_EDGE, width=1)

    # Checkpoints are laid out from the episode's start point.
    per_lap = max(round(track.length / c.checkpoint_spacing), 1)
    start = float(ph.s_start) % track.length
    for k in range(per_lap):
        i = round((start + k * track.length / per_lap) / track.spacing) % track.num_points
        draw.line(px(np.stack([left[i], right[i]])), fill=_START if k == 0 else _CHECKPOINT)

    car = ph.car
    pos = np.array([float(car.x), float(car.y)])
    psi = float(car.psi)
    fwd, lat = np.array([np.cos(psi), np.sin(psi)]), np.array([-np.sin(psi), np.cos(psi)])
    if c.use_rays:
        dists = np.asarray(env.rays(ph))
        for angle, dist in zip(psi + np.asarray(env._ray_offsets), dists, strict=True):
            end = pos + dist * np.array([np.cos(angle), np.sin(angle)])
            draw.line(px(np.stack([pos, end])), fill=_RAY, width=1)
    grow = max(1.0, 10.0 / (scale * c.vehicle.car_length))  # at least 10 px long, to be seen
    half_l, half_w = 0.5 * grow * c.vehicle.car_length, 0.5 * grow * c.vehicle.car_width
    body = [
        pos + a * half_l * fwd + b * half_w * lat for a, b in ((1, 1), (1, -1), (-1, -1), (-1, 1))
    ]
    draw.polygon(px(np.stack(body)), fill=_CAR)
    nose = [pos + half_l * fwd, pos + 0.2 * half_l * fwd + 0.8 * half_w * lat,
            pos + 0.2 * half_l * fwd - 0.8 * half_w * lat]  # fmt: skip
    draw.polygon(px(np.stack(nose)), fill=_NOSE)
    return np.asarray(image, np.uint8)


def _area(poly: np.ndarray) -> float:
    """Absolute area of a closed polygon (shoelace)."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
