"""Int8 weights for the C export, and the numpy reference of the int8 policy.

Each dense weight ``W [I, J]`` becomes ``q [I, J]`` (int8 in [-127, 127]) and one float scale
per output channel, ``scale [J] = max_i |W[i, j]| / 127``, so ``W ~= q * scale`` (symmetric,
per-output-channel). Only dense weights are quantised: biases, LayerNorm parameters, the
observation normaliser and every activation stay float32. The C computes each output as
``(sum_i x[i] * q[i, j]) * scale[j] + b[j]``; ``act_int8`` is the float forward with the
dequantised weights ``q * scale``, which is the same sum up to float32 rounding order (the
tests hold the two within 1e-5).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from policies.bundle import PolicyBundle

QMAX = 127  # symmetric: -128 is never used, so q and -q are both representable


def quantize_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 of a dense weight.

    Args:
      weight: ``[I, J]`` float32 (inputs x outputs, as ``x @ W``).

    Returns:
      ``(q, scale)``: ``q`` int8 ``[I, J]`` and ``scale`` float32 ``[J]`` with
      ``W ~= q * scale``; an all-zero channel gets scale 1 and zeros.
    """
    weight = np.asarray(weight, np.float32)
    peak = np.abs(weight).max(axis=0)
    scale = np.where(peak > 0, peak / np.float32(QMAX), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.round(weight / scale), -QMAX, QMAX).astype(np.int8)
    return q, scale


def quantized_weights(bundle: PolicyBundle) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{weight name: (q [I, J] int8, scale [J] float32)}`` for every dense layer."""
    return {
        layer["weight"]: quantize_weight(bundle.params[layer["weight"]])
        for layer in bundle.spec["layers"]
        if layer["op"] == "dense"
    }


def dequantized_bundle(bundle: PolicyBundle) -> PolicyBundle:
    """A copy of ``bundle`` whose dense weights are ``q * scale`` (everything else unchanged)."""
    params = dict(bundle.params)
    for name, (q, scale) in quantized_weights(bundle).items():
        params[name] = (q.astype(np.float32) * scale).astype(np.float32)
    return dataclasses.replace(bundle, params=params)


def act_int8(bundle: PolicyBundle, obs: np.ndarray) -> np.ndarray:
    """The int8 policy's action ``[..., A]`` for raw observations ``[..., O]``."""
    return dequantized_bundle(bundle).act(obs)
