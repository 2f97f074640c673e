"""Host-side picture of one quadrotor state: top view (x-y) left, side view (x-z) right.

The arms and rotors are drawn 3x enlarged so the attitude reads at video size; the target is a
green cross (the figure-eight path a grey curve), rotors spinning counter-clockwise are red and
clockwise blue, the thrust axis a short black line, and the termination box a thin frame.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from robotrl.envs import EnvState
    from sims.quadrotor.env import Quadrotor

_BG = (246, 246, 242)
_GRID = (222, 222, 215)
_FRAME = (170, 170, 160)
_CCW, _CW = (205, 60, 50), (50, 90, 200)  # rotors 0, 2 | rotors 1, 3
_ROTOR_COLORS = (_CCW, _CW, _CCW, _CW)


def _rotation(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def render_views(env: Quadrotor, state: EnvState) -> np.ndarray:
    """``[H, 2H, 3]`` uint8 picture of one unbatched ``state`` (H = ``config.render_size``)."""
    from PIL import Image, ImageDraw

    c, ph = env.config, state.physics
    size = c.render_size
    pos = np.asarray(ph.position, np.float64)
    rot = _rotation(np.asarray(ph.quaternion, np.float64))
    target = np.asarray(ph.target, np.float64)
    half = c.termination_position + (c.waypoint_range if c.task == "waypoint" else 0.0)
    if c.task == "figure_eight":
        half += c.figure_eight_size
    half *= 1.15
    center = np.zeros(3) if c.task != "hover" else target
    img = Image.new("RGB", (2 * size, size), _BG)
    draw = ImageDraw.Draw(img)
    scale = size / (2 * half)
    arm = 3 * float(np.asarray(state.params["arm_length"]))
    rotors = np.array([[1, -1, 0], [-1, -1, 0], [-1, 1, 0], [1, 1, 0]], np.float64) * arm
    rotors_world = pos + rotors @ rot.T
    up = pos + rot[:, 2] * 2 * arm

    for view, (i, j) in enumerate(((0, 1), (0, 2))):  # top: x right, y up; side: x right, z up
        x0 = view * size

        def px(p, i=i, j=j, x0=x0):
            return (
                x0 + size / 2 + (p[i] - center[i]) * scale,
                size / 2 - (p[j] - center[j]) * scale,
            )

        for k in range(-4, 5):  # 0.25 m grid
            g = k * 0.25
            a, b = px(center + np.eye(3)[i] * g), px(center + np.eye(3)[j] * g)
            draw.line([(a[0], 0), (a[0], size)], fill=_GRID)
            draw.line([(x0, b[1]), (x0 + size, b[1])], fill=_GRID)
        box = c.termination_position
        lo, hi = px(target - box), px(target + box)
        if c.task != "waypoint":
            draw.rectangle([lo[0], hi[1], hi[0], lo[1]], outline=_FRAME)
        if c.task == "figure_eight":
            phi = np.linspace(0, 2 * math.pi, 100)
            a = c.figure_eight_size
            path = np.stack([a * np.sin(phi), a * np.sin(phi) * np.cos(phi), 0 * phi], -1)
            draw.line([px(p) for p in path], fill=(185, 185, 185), width=1)
        t = px(target)
        draw.line([(t[0] - 6, t[1]), (t[0] + 6, t[1])], fill=(30, 150, 60), width=2)
        draw.line([(t[0], t[1] - 6), (t[0], t[1] + 6)], fill=(30, 150, 60), width=2)
        body = px(pos)
        for k in (0, 2, 1, 3):
            r = px(rotors_world[k])
            draw.line([body, r], fill=(60, 60, 60), width=2)
            rad = max(3.0, arm * 0.8 * scale)
            draw.ellipse([r[0] - rad, r[1] - rad, r[0] + rad, r[1] + rad], outline=_ROTOR_COLORS[k])
        draw.line([body, px(up)], fill=(0, 0, 0), width=2)
        draw.text((x0 + 6, 4), ("top x-y" if view == 0 else "side x-z"), fill=(90, 90, 90))
    draw.line([(size, 0), (size, size)], fill=_FRAME)
    return np.asarray(img)
