"""DDPM / DDIM noise schedules and sampler steps in JAX, with the semantics of ``diffusers``.

Diffusion Policy (Chi et al. 2023) trains with ``diffusers``' ``DDPMScheduler`` (100 training
steps, ``squaredcos_cap_v2`` betas, epsilon prediction, predicted ``x0`` clipped to [-1, 1]) and
samples with ``DDIMScheduler``; RL-100 samples with K = 10 DDIM steps and makes each step
stochastic so that it has a Gaussian log-probability. ``diffusers`` needs PyTorch for every
scheduler, so the same arithmetic is written here in JAX; ``benchmarks/diffusers_check.py``
compares it with ``diffusers`` value by value.

Notation (``T`` training steps, ``K`` inference steps, ``abar_t = prod_{i<=t} (1 - beta_i)``):

* training: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (``add_noise``);
* ``x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)``, clipped to [-1, 1];
* DDIM (Song et al. 2021, eq. 12), ``s`` the previous timestep (``t - T // K``; ``abar_s = 1``
  past the start when ``set_alpha_to_one``):
  ``sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)``,
  ``x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z``;
* RL-100's stochastic step uses ``sigma = max(sigma, std_floor)`` (so the last step, where the
  DDIM sigma is 0, still has a density) and the same mean; its log-probability is the Gaussian
  density of ``x_s`` around that mean, summed over every action element.
* DDPM (ancestral, ``variance_type="fixed_small"``):
  ``x_s = c0 x0_hat + ct x_t + sqrt(beta~) z`` with ``c0 = sqrt(abar_s) beta_t' / (1 - abar_t)``,
  ``ct = sqrt(alpha_t') (1 - abar_s) / (1 - abar_t)``, ``alpha_t' = abar_t / abar_s``, and no
  noise at the last step.

Timesteps follow ``diffusers``' default ``"leading"`` spacing: ``[(K-1) c, ..., c, 0] + offset``
with ``c = T // K``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    train_steps: int = 100  # T: noise levels seen in training (Diffusion Policy: 100)
    inference_steps: int = 10  # K: denoising steps at sampling (RL-100: 10)
    beta_schedule: str = "squaredcos_cap_v2"  # linear | scaled_linear | squaredcos_cap_v2
    beta_start: float = 1e-4  # linear schedules only
    beta_end: float = 2e-2  # linear schedules only
    clip_sample: bool = True  # clip x0_hat to [-clip_range, clip_range] (actions are in [-1, 1])
    clip_range: float = 1.0
    set_alpha_to_one: bool = True  # abar before the first step is 1 (DDIM's final step)
    steps_offset: int = 0  # added to every inference timestep (diffusers' steps_offset)
    eta: float = 1.0  # DDIM stochasticity of the stochastic sampler (0: deterministic DDIM)
    std_floor: float = 0.0067  # least std of a stochastic denoising step (RL-100)

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}"
            )
        if not 1 <= self.inference_steps <= self.train_steps:
            raise ValueError("inference_steps must be in [1, train_steps]")
        if self.eta < 0 or self.std_floor < 0:
            raise ValueError("eta and std_floor must be non-negative")


class Schedule(NamedTuple):
    """Arrays of a noise schedule: ``betas``, ``alphas``, ``alphas_cumprod`` ``[T]``;
    ``timesteps`` ``[K]`` (descending) and ``prev_timesteps`` ``[K]`` (-1 past the start)."""

    betas: jax.Array
    alphas: jax.Array
    alphas_cumprod: jax.Array
    timesteps: jax.Array
    prev_timesteps: jax.Array
    final_alpha_cumprod: float


def betas(cfg: ScheduleConfig) -> np.ndarray:
    """``[T]`` float32 betas, computed in float64 as ``diffusers`` does for the cosine one."""
    t = cfg.train_steps
    if cfg.beta_schedule == "linear":
        return np.linspace(cfg.beta_start, cfg.beta_end, t, dtype=np.float32)
    if cfg.beta_schedule == "scaled_linear":
        root = np.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, t, dtype=np.float32)
        return root**2

    def alpha_bar(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array(
        [min(1 - alpha_bar((i + 1) / t) / alpha_bar(i / t), 0.999) for i in range(t)], np.float32
    )


def make_schedule(cfg: ScheduleConfig) -> Schedule:
    b = betas(cfg)
    alphas = 1.0 - b
    # float32 cumulative product, as torch.cumprod on a float32 tensor.
    cumprod = np.cumprod(alphas, dtype=np.float32)
    stride = cfg.train_steps // cfg.inference_steps
    timesteps = np.arange(cfg.inference_steps)[::-1] * stride + cfg.steps_offset
    final = 1.0 if cfg.set_alpha_to_one else float(cumprod[0])
    return Schedule(
        betas=jnp.asarray(b),
        alphas=jnp.asarray(alphas),
        alphas_cumprod=jnp.asarray(cumprod),
        timesteps=jnp.asarray(timesteps, jnp.int32),
        prev_timesteps=jnp.asarray(timesteps - stride, jnp.int32),
        final_alpha_cumprod=final,
    )


def add_noise(sched: Schedule, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """``x_t`` for clean samples ``x0 [B, ...]``, ``noise`` like it, timesteps ``t [B]``."""
    abar = sched.alphas_cumprod[t].reshape(t.shape + (1,) * (x0.ndim - t.ndim))
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def _abar_prev(sched: Schedule, prev_t: jax.Array) -> jax.Array:
    safe = jnp.maximum(prev_t, 0)
    return jnp.where(prev_t >= 0, sched.alphas_cumprod[safe], sched.final_alpha_cumprod)


def _step_terms(cfg, sched, x, eps, t, prev_t):
    """``abar_t``, ``abar_s`` and the clipped ``x0_hat`` every sampler step starts from."""
    return sched.alphas_cumprod[t], _abar_prev(sched, prev_t), predict_x0(cfg, sched, x, eps, t)


def predict_x0(
    cfg: ScheduleConfig, sched: Schedule, x: jax.Array, eps: jax.Array, t: jax.Array
) -> jax.Array:
    abar = sched.alphas_cumprod[t]
    x0 = (x - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)
    if cfg.clip_sample:
        x0 = jnp.clip(x0, -cfg.clip_range, cfg.clip_range)
    return x0


def ddim_mean_std(
    cfg: ScheduleConfig,
    sched: Schedule,
    x: jax.Array,
    eps: jax.Array,
    t: jax.Array,
    prev_t: jax.Array,
    eta: float,
    std_floor: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Mean and std of ``x_s`` given ``x_t`` (one sample; ``t``, ``prev_t`` scalars).

    ``eta = 0, std_floor = 0`` is deterministic DDIM (std 0). The direction term uses the
    DDIM sigma (before the floor), so the floor only widens the step's noise.
    """
    abar, abar_prev, x0 = _step_terms(cfg, sched, x, eps, t, prev_t)
    variance = (1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev)
    sigma = eta * jnp.sqrt(variance)
    direction = jnp.sqrt(jnp.maximum(1.0 - abar_prev - sigma**2, 0.0)) * eps
    mean = jnp.sqrt(abar_prev) * x0 + direction
    return mean, jnp.maximum(sigma, std_floor)


def ddim_step(
    cfg: ScheduleConfig,
    sched: Schedule,
    x: jax.Array,
    eps: jax.Array,
    t: jax.Array,
    prev_t: jax.Array,
    eta: float,
    noise: jax.Array | None = None,
) -> jax.Array:
    """``diffusers``' ``DDIMScheduler.step`` (``use_clipped_model_output=False``)."""
    mean, std = ddim_mean_std(cfg, sched, x, eps, t, prev_t, eta)
    return mean if noise is None else mean + std * noise


def ddpm_step(
    cfg: ScheduleConfig,
    sched: Schedule,
    x: jax.Array,
    eps: jax.Array,
    t: jax.Array,
    prev_t: jax.Array,
    noise: jax.Array,
) -> jax.Array:
    """``diffusers``' ``DDPMScheduler.step`` (epsilon prediction, ``fixed_small`` variance)."""
    abar, abar_prev, x0 = _step_terms(cfg, sched, x, eps, t, prev_t)
    alpha_t = abar / abar_prev
    beta_t = 1.0 - alpha_t
    mean = (jnp.sqrt(abar_prev) * beta_t * x0 + jnp.sqrt(alpha_t) * (1.0 - abar_prev) * x) / (
        1.0 - abar
    )
    variance = jnp.maximum((1.0 - abar_prev) / (1.0 - abar) * beta_t, 1e-20)
    return mean + jnp.where(t > 0, jnp.sqrt(variance), 0.0) * noise


def gaussian_log_prob(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """``log N(x; mean, std^2)`` summed over all elements (a scalar per sample)."""
    z = (x - mean) / std
    return jnp.sum(-0.5 * z**2 - jnp.log(std) - 0.5 * LOG_2PI)


__all__ = [
    "BETA_SCHEDULES",
    "Schedule",
    "ScheduleConfig",
    "add_noise",
    "betas",
    "ddim_mean_std",
    "ddim_step",
    "ddpm_step",
    "gaussian_log_prob",
    "make_schedule",
    "predict_x0",
]
