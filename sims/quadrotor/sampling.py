"""Trig-free samplers for resets (the training stack resets every env at every step, so a reset
must cost about as little as a step: XLA's sin/cos/cbrt cost ~10 ns each here, recomputed in
every consumer).

``sincos_2pi(u)``: cos and sin of 2 pi u by odd/even polynomials after reduction to a quarter
turn (error < 1e-6).

``AttitudeSampler``: unit quaternions uniform on SO(3) restricted to rotation angles <= m (the
"recover from random attitudes" initial distribution of RLtools, which rejection-samples it).
The angle of a uniform rotation has density (1 - cos theta) / pi, so theta solves
theta - sin theta = U (m - sin m). With U = v^3, v the largest of three uniforms (density
3 v^2), theta(v) is smooth with no cube-root singularity at 0, and cos(theta/2), sin(theta/2)
are fitted once (numpy, at construction) as degree-12 polynomials in v; the axis is uniform on
the sphere.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_DEGREE = 12


def _poly(coeffs: np.ndarray, x: jax.Array) -> jax.Array:
    """Horner evaluation of ``sum_k coeffs[k] x^k``."""
    out = jnp.full_like(x, float(coeffs[-1]))
    for c in coeffs[-2::-1]:
        out = out * x + float(c)
    return out


_SIN = [(-1) ** k / math.factorial(2 * k + 1) for k in range(8)]  # Taylor, to y^15
_COS = [(-1) ** k / math.factorial(2 * k) for k in range(9)]  # to y^16


def sincos_2pi(u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(cos, sin) of ``2 pi u`` for ``u`` in [0, 1], by polynomials (|error| < 1e-6)."""
    # 2 pi u = pi x + pi with x in [-1, 1]; fold pi x into y in [-pi/2, pi/2]:
    # sin(pi x) = sin(y), cos(pi x) = -cos(y) where folded.
    x = 2.0 * u - 1.0
    folded = jnp.abs(x) > 0.5
    y = jnp.where(x > 0.5, 1.0 - x, jnp.where(x < -0.5, -1.0 - x, x)) * math.pi
    y2 = y * y
    sin, cos = y * _poly(np.array(_SIN), y2), _poly(np.array(_COS), y2)
    return jnp.where(folded, cos, -cos), -sin


def _angles(v: np.ndarray, m: float) -> np.ndarray:
    """Rotation angle theta(v) solving theta - sin theta = v^3 (m - sin m), float64."""
    target = v**3 * (m - math.sin(m))
    theta = np.cbrt(6 * target)  # the small-angle root
    for _ in range(40):
        step = (theta - np.sin(theta) - target) / np.maximum(1 - np.cos(theta), 1e-300)
        theta = np.clip(theta - np.where(target > 0, step, 0.0), 0.0, m)
    return theta


class AttitudeSampler:
    """Uniform unit quaternions (w, x, y, z) with rotation angle <= ``max_angle``."""

    def __init__(self, max_angle: float):
        m = min(max(max_angle, 0.0), math.pi)
        self.max_angle = m
        poly = np.polynomial.polynomial
        v = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, 257))  # Chebyshev-spaced in [0, 1]
        theta = _angles(v, m)
        self._cos = poly.polyfit(v, np.cos(theta / 2), _DEGREE)
        self._sin = poly.polyfit(v, np.sin(theta / 2), _DEGREE)
        grid = np.linspace(0.0, 1.0, 1001)
        exact = _angles(grid, m)
        error = max(
            np.abs(poly.polyval(grid, self._cos) - np.cos(exact / 2)).max(),
            np.abs(poly.polyval(grid, self._sin) - np.sin(exact / 2)).max(),
        )
        if error > 1e-5:
            raise ValueError(f"attitude sampler fit error {error:.1e} for max angle {m}")

    def __call__(self, u: jax.Array) -> jax.Array:
        """``[4]`` quaternion from ``[5]`` uniforms on (0, 1)."""
        v = jnp.maximum(jnp.maximum(u[0], u[1]), u[2])
        w, s = _poly(self._cos, v), _poly(self._sin, v)
        norm = jax.lax.rsqrt(w * w + s * s)  # exactly unit despite the fit
        w, s = w * norm, s * norm
        z = 1.0 - 2.0 * u[3]
        r = jnp.sqrt(jnp.maximum(1.0 - z * z, 0.0))
        cos, sin = sincos_2pi(u[4])
        return jnp.stack([w, s * r * cos, s * r * sin, s * z])
