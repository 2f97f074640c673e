"""The state-encoder diffusion policy in plain numpy: a robot computer's forward pass, no jax.

``NumpyDiffusion.from_jax(policy, params, norm)`` copies the parameters out once; ``sample``
runs the K-step deterministic DDIM sampler and ``sample_one_step`` the distilled student's
single evaluation, both from given noise, so they can be compared with the JAX policy value by
value (``tests/policies/test_diffusion.py``) and timed against it
(``benchmarks/diffusion_latency.py``). Only the state encoder (an MLP or the flat history) is
supported: an image policy needs its CNN, which is not ported.

``ddim_program`` is the same sampler as a ``PolicyBundle`` network (``spec["program"] ==
"ddim"``): normalised flat history in, the clean normalised chunk's executed part out, from zero
noise, with the parameters stored flat (``"noise/params/Dense_0/kernel"``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from policies.bundle import BundleError, activation

STEP_DIM = 64  # the noise network's sinusoidal step embedding


def _dense(p: dict, x: np.ndarray) -> np.ndarray:
    return x @ p["kernel"] + p["bias"]


def _layer_norm(p: dict, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    # flax's LayerNorm (the bundle's "layernorm" op computes the same)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _dense_names(tree: dict) -> list[str]:
    return sorted((k for k in tree if k.startswith("Dense_")), key=lambda k: int(k[6:]))


def _mlp(tree: dict, x: np.ndarray, act) -> np.ndarray:
    """``MLP``: activation after every Dense but the last."""
    names = _dense_names(tree)
    for name in names[:-1]:
        x = act(_dense(tree[name], x))
    return _dense(tree[names[-1]], x)


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested parameter dicts -> ``{"a/b/c": array}`` (the bundle's flat parameters)."""
    out: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        else:
            out[name] = np.asarray(value, np.float32)
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


class NumpyDiffusion:
    """``arch``: horizon, action_dim, depth, activation, relative_to, clip_sample, clip_range;
    ``schedule``: alphas_cumprod, timesteps, prev_timesteps, final; ``norm``: the min-max
    normaliser's arrays (None for inputs that are already normalised)."""

    def __init__(self, arch: dict, params: dict, norm: dict | None, schedule: dict):
        try:
            activation(arch["activation"], np.zeros(1, np.float32))
        except BundleError as err:
            raise ValueError(f"activation {arch['activation']!r} has no numpy forward") from err
        self.arch = arch
        self.act = lambda x: activation(arch["activation"], x)
        self.params, self.norm, self.schedule = params, norm, schedule

    @classmethod
    def from_jax(cls, policy: Any, params: Any, norm: Any) -> NumpyDiffusion:
        import jax

        if policy.cfg.encoder != "state":
            raise ValueError("the numpy forward supports the state encoder only")
        to_np = lambda tree: jax.tree.map(lambda x: np.asarray(x, np.float32), tree)
        return cls(arch(policy), to_np(params), to_np(norm.__dict__), schedule(policy))

    # --- pieces -----------------------------------------------------------------------------
    def _normalize(self, state: np.ndarray) -> np.ndarray:
        n = self.norm
        span = np.maximum(n["state_high"] - n["state_low"], 1e-6)
        return 2.0 * (state - n["state_low"]) / span - 1.0

    def features(self, x: np.ndarray) -> np.ndarray:
        """Encoder features of normalised histories ``[B, To, O]`` (or flat ``[B, To * O]``)."""
        x = x.reshape(x.shape[0], -1)
        enc = self.params.get("encoder", {}).get("params", {})
        return _mlp(enc["MLP_0"], x, self.act) if enc else x  # hidden=(): the flat history

    def _eps(self, x: np.ndarray, t: int, cond: np.ndarray) -> np.ndarray:
        p = self.params["noise"]["params"]
        b = x.shape[0]
        half = STEP_DIM // 2
        freqs = np.exp(-math.log(10000.0) * np.arange(half) / (half - 1))
        angles = float(t) * freqs
        temb = np.concatenate([np.sin(angles), np.cos(angles)])[None].repeat(b, 0)
        # flax names a submodule when it is built: in ``Dense(a)(act(Dense(b)(x)))`` the outer
        # layer is built first, so it has the lower index although it runs second.
        temb = _dense(p["Dense_0"], self.act(_dense(p["Dense_1"], temb)))
        context = np.concatenate([cond, temb], axis=-1)
        h = _dense(p["Dense_2"], x.reshape(b, -1))
        d = 3
        for i in range(self.arch["depth"]):
            film = _dense(p[f"Dense_{d}"], self.act(context))
            scale, shift = np.split(film, 2, axis=-1)
            y = _layer_norm(p[f"LayerNorm_{i}"], h) * (1.0 + scale) + shift
            y = _dense(p[f"Dense_{d + 1}"], self.act(_dense(p[f"Dense_{d + 2}"], y)))
            h = h + self.act(y)
            d += 3
        h = self.act(_layer_norm(p[f"LayerNorm_{self.arch['depth']}"], h))
        return _dense(p[f"Dense_{d}"], h).reshape(b, self.arch["horizon"], self.arch["action_dim"])

    def denoise(self, cond: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """K-step deterministic DDIM from ``noise [B, H, A]``: the clean normalised chunk."""
        a, s = self.arch, self.schedule
        x = noise.astype(np.float32)
        for t, prev in zip(s["timesteps"], s["prev_timesteps"], strict=True):
            eps = self._eps(x, int(t), cond)
            abar = s["alphas_cumprod"][int(t)]
            abar_prev = s["alphas_cumprod"][int(prev)] if prev >= 0 else s["final"]
            x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
            if a["clip_sample"]:
                x0 = np.clip(x0, -a["clip_range"], a["clip_range"])
            x = (math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * eps).astype(np.float32)
        return np.clip(x, -1.0, 1.0)

    def student(self, cond: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The one-step student's clean normalised chunk (unclipped)."""
        b = cond.shape[0]
        x = np.concatenate([cond, noise.reshape(b, -1).astype(np.float32)], axis=-1)
        out = _mlp(self.params["student"]["params"]["MLP_0"], x, self.act)
        return out.reshape(b, self.arch["horizon"], self.arch["action_dim"])

    def _unaction(self, x: np.ndarray, state: np.ndarray) -> np.ndarray:
        n = self.norm
        out = (np.clip(x, -1.0, 1.0) + 1.0) / 2.0 * (n["action_high"] - n["action_low"])
        out = out + n["action_low"]
        if self.arch["relative_to"]:
            out = out + state[:, -1, list(self.arch["relative_to"])][:, None]
        return out

    # --- policies ---------------------------------------------------------------------------
    def sample(self, state: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """K-step deterministic DDIM: ``state [B, To, O]``, ``noise [B, H, A]`` -> env units."""
        cond = self.features(self._normalize(state))
        return self._unaction(self.denoise(cond, noise), state)

    def sample_one_step(self, state: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The distilled student (``params`` holding ``"student"``): one evaluation."""
        cond = self.features(self._normalize(state))
        return self._unaction(self.student(cond, noise), state)


def arch(policy: Any) -> dict:
    """The numpy forward's view of a ``DiffusionPolicy``'s configuration (JSON-able)."""
    cfg = policy.cfg
    return {
        "obs_horizon": cfg.obs_horizon,
        "horizon": cfg.horizon,
        "action_steps": cfg.action_steps,
        "action_dim": policy.action_dim,
        "depth": cfg.depth,
        "activation": cfg.activation,
        "relative_to": list(cfg.relative_to),
        "clip_sample": bool(cfg.schedule.clip_sample),
        "clip_range": float(cfg.schedule.clip_range),
    }


def schedule(policy: Any) -> dict:
    s = policy.schedule
    return {
        "alphas_cumprod": np.asarray(s.alphas_cumprod, np.float64),
        "timesteps": np.asarray(s.timesteps),
        "prev_timesteps": np.asarray(s.prev_timesteps),
        "final": float(s.final_alpha_cumprod),
    }


def ddim_program(spec: dict, flat: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """A ddim bundle's network: normalised flat histories ``[..., To * O]`` -> the executed part
    of the clean normalised chunk, flattened ``[..., Ha * A]`` (from zero noise)."""
    sched = {
        "alphas_cumprod": np.asarray(spec["alphas_cumprod"], np.float64),
        "timesteps": np.asarray(spec["timesteps"]),
        "prev_timesteps": np.asarray(spec["prev_timesteps"]),
        "final": float(spec["final"]),
    }
    model = NumpyDiffusion(spec, unflatten(flat), None, sched)
    lead = x.shape[:-1]
    flat_x = x.reshape(-1, x.shape[-1])
    noise = np.zeros((flat_x.shape[0], spec["horizon"], spec["action_dim"]), np.float32)
    chunk = model.denoise(model.features(flat_x), noise)[:, : spec["action_steps"]]
    return chunk.reshape(*lead, -1).astype(np.float32)


__all__ = ["NumpyDiffusion", "arch", "ddim_program", "flatten", "schedule", "unflatten"]
