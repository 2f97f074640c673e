"""Critic value heads: regression (``mse``) or classification (``hl_gauss``, ``two_hot``).

"Stop Regressing" (Farebrother et al. 2024): a critic that outputs logits over ``M`` fixed bins on
``[v_min, v_max]`` and is trained with cross-entropy against a distribution built from the scalar
TD target is more robust to target noise and reward scale than one trained with squared error.
Every value-based algorithm takes a ``ValueHeadConfig`` and never needs to know which one it got:
the critic emits ``[..., M]``, ``head.value`` reads a scalar from it and ``head.loss`` scores it.

Targets are clipped into the support before they become a distribution; outside it, HL-Gauss's
normaliser goes to zero and the loss silently vanishes (a known bug in public ports).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.stats

HEAD_KINDS = ("mse", "hl_gauss", "two_hot")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValueHeadConfig:
    kind: str = "mse"  # "mse" | "hl_gauss" | "two_hot"
    num_bins: int = 101  # classification heads: number of bins M
    v_min: float | None = None  # support; None derives r_min / (1 - gamma) from the env
    v_max: float | None = None  # support; None derives r_max / (1 - gamma) from the env
    sigma_ratio: float = 0.75  # hl_gauss: sigma as a multiple of the bin width

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"critic head kind must be one of {HEAD_KINDS}, got {self.kind!r}")
        if self.kind != "mse" and self.num_bins < 2:
            raise ValueError("a classification head needs at least 2 bins")


class ValueHead(NamedTuple):
    """``value(out [..., M]) -> [...]`` and ``loss(out [..., M], target [...]) -> [...]``."""

    num_outputs: int
    value: Callable[[jax.Array], jax.Array]
    loss: Callable[[jax.Array, jax.Array], jax.Array]
    target_probs: Callable[[jax.Array], jax.Array] | None = None  # [...] -> [..., M]
    support: jax.Array | None = None  # bin centres [M]


def default_value_range(
    reward_range: tuple[float, float] | None, gamma: float
) -> tuple[float, float] | None:
    """The support a discounted return can reach: ``[r_min, r_max] / (1 - gamma)``."""
    if reward_range is None:
        return None
    lo, hi = reward_range
    return min(lo, 0.0) / (1 - gamma), max(hi, 0.0) / (1 - gamma)


def make_value_head(
    cfg: ValueHeadConfig, default_range: tuple[float, float] | None = None
) -> ValueHead:
    """Builds the head; ``default_range`` fills in ``v_min``/``v_max`` left as None."""
    if cfg.kind == "mse":
        return ValueHead(
            num_outputs=1,
            value=lambda out: out[..., 0],
            loss=lambda out, target: 0.5 * (out[..., 0] - target) ** 2,
        )
    v_min = cfg.v_min if cfg.v_min is not None else (default_range or (None, None))[0]
    v_max = cfg.v_max if cfg.v_max is not None else (default_range or (None, None))[1]
    if v_min is None or v_max is None:
        raise ValueError(
            f"critic head {cfg.kind!r} needs a value range: "
            "set v_min/v_max or the env's reward_range"
        )
    if not v_max > v_min:
        raise ValueError(f"critic head range is empty: v_min={v_min} >= v_max={v_max}")
    edges = jnp.linspace(v_min, v_max, cfg.num_bins + 1, dtype=jnp.float32)
    centers = (edges[:-1] + edges[1:]) / 2
    width = (v_max - v_min) / cfg.num_bins

    if cfg.kind == "hl_gauss":
        sigma = cfg.sigma_ratio * width

        def target_probs(target: jax.Array) -> jax.Array:
            y = jnp.clip(target, v_min, v_max)[..., None]
            grid = jnp.broadcast_to(edges, (*y.shape[:-1], edges.shape[0]))
            cdf = jax.scipy.stats.norm.cdf((grid - y) / sigma)
            return (cdf[..., 1:] - cdf[..., :-1]) / (cdf[..., -1:] - cdf[..., :1])

    else:

        def target_probs(target: jax.Array) -> jax.Array:
            y = jnp.clip(target, centers[0], centers[-1])
            pos = (y - centers[0]) / width
            low = jnp.clip(jnp.floor(pos), 0, cfg.num_bins - 2).astype(jnp.int32)
            upper = pos - low
            return (
                jax.nn.one_hot(low, cfg.num_bins) * (1 - upper)[..., None]
                + jax.nn.one_hot(low + 1, cfg.num_bins) * upper[..., None]
            )

    def value(logits: jax.Array) -> jax.Array:
        return jnp.sum(
            jax.nn.softmax(logits, axis=-1) * jnp.broadcast_to(centers, logits.shape), -1
        )

    def loss(logits: jax.Array, target: jax.Array) -> jax.Array:
        probs = jax.lax.stop_gradient(target_probs(target))
        return -jnp.sum(probs * jax.nn.log_softmax(logits, axis=-1), axis=-1)

    return ValueHead(cfg.num_bins, value, loss, target_probs, centers)
