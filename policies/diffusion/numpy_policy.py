"""The state-encoder diffusion policy in plain numpy: a robot computer's forward pass, no jax.

``NumpyDiffusion.from_jax(policy, params, norm)`` copies the parameters out once; ``sample``
runs the K-step deterministic DDIM sampler and ``sample_one_step`` the distilled student's
single evaluation, both from given noise, so they can be compared with the JAX policy value by
value (``tests/policies/test_diffusion.py``) and timed against it
(``benchmarks/rl100_study.py``). Only the state encoder (an MLP or the flat history) is
supported: an image policy needs its CNN, which is not ported.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from policies.bundle import BundleError, activation


def _dense(p: dict, x: np.ndarray) -> np.ndarray:
    return x @ p["kernel"] + p["bias"]


def _layer_norm(p: dict, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    # flax's LayerNorm (the bundle's "layernorm" op computes the same)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


class NumpyDiffusion:
    def __init__(self, cfg: Any, action_dim: int, params: dict, norm: dict, schedule: dict):
        if cfg.encoder != "state":
            raise ValueError("the numpy forward supports the state encoder only")
        try:
            activation(cfg.activation, np.zeros(1, np.float32))
        except BundleError as err:
            raise ValueError(f"activation {cfg.activation!r} has no numpy forward") from err
        self.cfg, self.action_dim = cfg, action_dim
        self.act = lambda x: activation(cfg.activation, x)
        self.params, self.norm, self.schedule = params, norm, schedule

    @classmethod
    def from_jax(cls, policy: Any, params: Any, norm: Any) -> NumpyDiffusion:
        import jax

        to_np = lambda tree: jax.tree.map(lambda x: np.asarray(x, np.float32), tree)
        s = policy.schedule
        sched = {
            "alphas_cumprod": np.asarray(s.alphas_cumprod, np.float64),
            "timesteps": np.asarray(s.timesteps),
            "prev_timesteps": np.asarray(s.prev_timesteps),
            "final": float(s.final_alpha_cumprod),
        }
        return cls(policy.cfg, policy.action_dim, to_np(params), to_np(norm.__dict__), sched)

    # --- pieces -----------------------------------------------------------------------------
    def _features(self, state: np.ndarray) -> np.ndarray:
        n = self.norm
        span = np.maximum(n["state_high"] - n["state_low"], 1e-6)
        x = 2.0 * (state - n["state_low"]) / span - 1.0
        x = x.reshape(x.shape[0], -1)
        enc = self.params["encoder"].get("params", {})
        if not enc:  # hidden=(): the flat history
            return x
        mlp = enc["MLP_0"]
        dense = sorted((k for k in mlp if k.startswith("Dense_")), key=lambda k: int(k[6:]))
        for name in dense[:-1]:
            x = self.act(_dense(mlp[name], x))
        return _dense(mlp[dense[-1]], x)

    def _eps(self, x: np.ndarray, t: int, cond: np.ndarray) -> np.ndarray:
        p = self.params["noise"]["params"]
        b = x.shape[0]
        half = 32  # step_dim 64
        freqs = np.exp(-math.log(10000.0) * np.arange(half) / (half - 1))
        angles = float(t) * freqs
        temb = np.concatenate([np.sin(angles), np.cos(angles)])[None].repeat(b, 0)
        # flax names a submodule when it is built: in ``Dense(a)(act(Dense(b)(x)))`` the outer
        # layer is built first, so it has the lower index although it runs second.
        temb = _dense(p["Dense_0"], self.act(_dense(p["Dense_1"], temb)))
        context = np.concatenate([cond, temb], axis=-1)
        h = _dense(p["Dense_2"], x.reshape(b, -1))
        d = 3
        for i in range(self.cfg.depth):
            film = _dense(p[f"Dense_{d}"], self.act(context))
            scale, shift = np.split(film, 2, axis=-1)
            y = _layer_norm(p[f"LayerNorm_{i}"], h) * (1.0 + scale) + shift
            y = _dense(p[f"Dense_{d + 1}"], self.act(_dense(p[f"Dense_{d + 2}"], y)))
            h = h + self.act(y)
            d += 3
        h = self.act(_layer_norm(p[f"LayerNorm_{self.cfg.depth}"], h))
        return _dense(p[f"Dense_{d}"], h).reshape(b, self.cfg.horizon, self.action_dim)

    def _unaction(self, x: np.ndarray, state: np.ndarray) -> np.ndarray:
        n = self.norm
        out = (np.clip(x, -1.0, 1.0) + 1.0) / 2.0 * (n["action_high"] - n["action_low"])
        out = out + n["action_low"]
        if self.cfg.relative_to:
            out = out + state[:, -1, list(self.cfg.relative_to)][:, None]
        return out

    # --- policies ---------------------------------------------------------------------------
    def sample(self, state: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """K-step deterministic DDIM: ``state [B, To, O]``, ``noise [B, H, A]`` -> env units."""
        sc, s = self.cfg.schedule, self.schedule
        cond = self._features(state)
        x = noise.astype(np.float32)
        for t, prev in zip(s["timesteps"], s["prev_timesteps"], strict=True):
            eps = self._eps(x, int(t), cond)
            abar = s["alphas_cumprod"][t]
            abar_prev = s["alphas_cumprod"][prev] if prev >= 0 else s["final"]
            x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
            if sc.clip_sample:
                x0 = np.clip(x0, -sc.clip_range, sc.clip_range)
            x = (math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * eps).astype(np.float32)
        return self._unaction(x, state)

    def sample_one_step(self, state: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The distilled student: one evaluation at the first inference timestep."""
        cond = self._features(state)
        t = int(self.schedule["timesteps"][0])
        return self._unaction(self._eps(noise.astype(np.float32), t, cond), state)


__all__ = ["NumpyDiffusion"]
