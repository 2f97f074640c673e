"""PPO over the denoising steps of a diffusion policy (RL-100, Lei et al. 2025).

A stochastic DDIM sampler (``policies.diffusion.policy.DiffusionPolicy.sample_chain``) turns one
environment action into a chain of ``K`` Gaussian transitions ``x_K -> ... -> x_0``, each with
a log-probability. RL-100 treats every transition as a PPO "action" that shares the environment
action's advantage:

    L_k = -E[min(r_k A, clip(r_k, 1 - eps, 1 + eps) A)],
    r_k = exp(log pi_new(x_{k-1} | x_k, s) - log pi_old(x_{k-1} | x_k, s)),

with ``A`` normalised per batch and one optimiser step per denoising step ``k`` (K Adam steps
per batch; gradient norm clipped to 0.5). Offline, ``A = Q(s, a_0) - V(s)`` from an IQL critic
and ``eps = 0.25``; online, ``A`` is GAE over environment decisions (``gamma^E`` per chunk of
``E`` executed actions) and ``eps = 0.2``, with a clipped value loss (``value_loss``).

Shapes: ``B`` batch, ``K`` denoising steps, ``H`` chunk, ``A`` action dim.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from policies.diffusion.policy import DiffusionPolicy, Normalizer
from robotrl.types import Metrics, Params


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiffusionPPOConfig:
    clip_eps: float = 0.25  # offline 0.25, online 0.2 (RL-100)
    lr: float = 1e-5  # actor (noise network) learning rate
    max_grad_norm: float = 0.5
    normalize_advantage: bool = True
    train_encoder: bool = False  # RL-100 keeps the observation encoder frozen offline

    def __post_init__(self) -> None:
        if not 0.0 < self.clip_eps < 1.0:
            raise ValueError("clip_eps must be in (0, 1)")
        if self.lr <= 0 or self.max_grad_norm <= 0:
            raise ValueError("lr and max_grad_norm must be positive")


def _mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.mean(x)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def normalize(adv: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Zero mean, unit std over the samples ``mask`` keeps (all by default)."""
    mean = _mean(adv, mask)
    std = jnp.sqrt(_mean((adv - mean) ** 2, mask))
    return (adv - mean) / (std + 1e-8)


def surrogate_loss(
    log_prob: jax.Array,
    old_log_prob: jax.Array,
    advantage: jax.Array,
    clip_eps: float,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, Metrics]:
    """PPO's clipped surrogate for one denoising step: ``[B]`` inputs -> scalar loss, averaged
    over the samples ``mask`` keeps (padding of fixed-size online batches)."""
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = -_mean(jnp.minimum(ratio * advantage, clipped * advantage), mask)
    return loss, {
        "ppo/policy_loss": loss,
        "ppo/approx_kl": _mean((ratio - 1.0) - log_ratio, mask),
        "ppo/clip_fraction": _mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), mask),
    }


def value_loss(
    value: jax.Array,
    old_value: jax.Array,
    target: jax.Array,
    clip_eps: float,
    mask: jax.Array | None = None,
) -> jax.Array:
    """PPO's clipped value loss: ``max((V - R)^2, (V_old + clip(V - V_old) - R)^2)``."""
    clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    return 0.5 * _mean(jnp.maximum((value - target) ** 2, (clipped - target) ** 2), mask)


def make_optimizer(cfg: DiffusionPPOConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr))


def make_update(policy: DiffusionPolicy, cfg: DiffusionPPOConfig):
    """``update(params, opt_state, norm, obs, xs [B, K+1, H, A], old_log_probs [B, K],
    advantage [B], mask [B] | None) -> (params, opt_state, metrics)``: K optimiser steps, one
    per denoising step in sampling order, each on that step's clipped surrogate."""
    opt = make_optimizer(cfg)
    steps = policy.cfg.schedule.inference_steps

    def update(
        params: Params,
        opt_state: Any,
        norm: Normalizer,
        obs: dict,
        xs: jax.Array,
        old_log_probs: jax.Array,
        advantage: jax.Array,
        mask: jax.Array | None = None,
    ) -> tuple[Params, Any, Metrics]:
        adv = normalize(advantage, mask) if cfg.normalize_advantage else advantage

        def one(carry, k):
            params, opt_state = carry

            def loss(p):
                logp = policy.step_log_prob(p, norm, obs, xs, k)
                return surrogate_loss(logp, old_log_probs[:, k], adv, cfg.clip_eps, mask)

            (_, metrics), grads = jax.value_and_grad(loss, has_aux=True)(params)
            if not cfg.train_encoder:
                grads = {**grads, "encoder": jax.tree.map(jnp.zeros_like, grads["encoder"])}
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), metrics

        (params, opt_state), metrics = jax.lax.scan(one, (params, opt_state), jnp.arange(steps))
        return params, opt_state, jax.tree.map(jnp.mean, metrics)

    return update


__all__ = [
    "DiffusionPPOConfig",
    "make_optimizer",
    "make_update",
    "normalize",
    "surrogate_loss",
    "value_loss",
]
