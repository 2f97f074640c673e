"""The ``arsq`` bundle program: ARSQ's greedy coarse-to-fine, auto-regressive decision in numpy.

A bundle with ``spec["program"] == "arsq"`` holds ``spec["layers"]``, an ordinary layer program
(the advantage net) from ``I = O + L + 2A`` inputs to ``C`` bin scores, and
``spec["arsq"] = {"levels": L, "bins": C, "factorized": bool}``. The policy is a fixed loop::

    low, high, centre = -1, 1, 0                      (per action dimension, [A])
    for l in 0..L-1:
        for d in 0..A-1:
            x = [obs, one_hot(l, L), one_hot(d, A), centre]   (factorised: centre * one_hot(d))
            b = argmax(layers(x))                              (first maximum on ties)
            width = (high[d] - low[d]) * float32(1 / C)
            low[d] = low[d] + width * b;  high[d] = low[d] + width
            centre[d] = (low[d] + high[d]) / 2
    z = centre                                        (in [-1, 1], then the bundle's head)

The same float32 operations, in the same order, as the generated C (they agree to the bit) and
``robotrl.algos.arsq`` (where XLA may fuse a multiply-add: a last-bit difference); a different
bin choice needs two bin scores within float rounding of each other (``decide(...,
margins=True)`` reports the smallest gap between the best two scores).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def input_width(spec: dict[str, Any], obs_dim: int, action_dim: int) -> int:
    """I = O + L + 2A: the advantage net's input."""
    return obs_dim + int(spec["arsq"]["levels"]) + 2 * action_dim


def decide(
    spec: dict[str, Any],
    params: dict[str, np.ndarray],
    obs: np.ndarray,
    action_dim: int,
    margins: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Normalised observations ``[..., O]`` -> interval centres ``[..., A]`` in ``[-1, 1]``; with
    ``margins``, also the smallest best-minus-second bin score over the decisions ``[...]``."""
    from policies.bundle import run_layers  # the bundle's own layer interpreter

    levels, bins = int(spec["arsq"]["levels"]), int(spec["arsq"]["bins"])
    factorized = bool(spec["arsq"].get("factorized", False))
    obs = np.asarray(obs, np.float32)
    lead = obs.shape[:-1]
    flat = obs.reshape(-1, obs.shape[-1])
    n = len(flat)
    low = np.full((n, action_dim), -1.0, np.float32)
    high = np.ones((n, action_dim), np.float32)
    centre = np.zeros((n, action_dim), np.float32)
    gap = np.full(n, np.inf, np.float32)
    inv = np.float32(1.0 / bins)
    eye_l, eye_a = np.eye(levels, dtype=np.float32), np.eye(action_dim, dtype=np.float32)
    for level in range(levels):
        for dim in range(action_dim):
            ctx = centre * eye_a[dim] if factorized else centre
            x = np.concatenate(
                [flat, np.tile(eye_l[level], (n, 1)), np.tile(eye_a[dim], (n, 1)), ctx], axis=-1
            )
            scores = run_layers(spec["layers"], params, x)
            best = np.argmax(scores, axis=-1)
            if margins and bins > 1:
                top = np.sort(scores, axis=-1)
                gap = np.minimum(gap, top[:, -1] - top[:, -2])
            width = (high[:, dim] - low[:, dim]) * inv
            low[:, dim] = low[:, dim] + width * best.astype(np.float32)
            high[:, dim] = low[:, dim] + width
            centre[:, dim] = (low[:, dim] + high[:, dim]) / np.float32(2)
    out = centre.reshape(*lead, action_dim)
    return (out, gap.reshape(lead)) if margins else out
