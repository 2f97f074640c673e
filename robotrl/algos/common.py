"""Pieces every value-based algorithm shares: TD targets, polyak averaging, optimisers, UTD."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from robotrl.nets import CriticEnsemble, ValueHeadConfig, default_value_range, make_value_head
from robotrl.nets.heads import ValueHead
from robotrl.parallel import shard_batch
from robotrl.types import EnvSpec


def td_target(
    reward: jax.Array, terminated: jax.Array, next_value: jax.Array, gamma: float
) -> jax.Array:
    """``r + gamma * (1 - terminated) * V(s')``, all ``[B]``.

    A truncated step (time limit) still bootstraps: only ``terminated`` cuts the return.
    """
    return reward + gamma * (1.0 - terminated.astype(reward.dtype)) * next_value


def polyak(target: Any, online: Any, tau: float) -> Any:
    """``target <- (1 - tau) * target + tau * online``, leaf by leaf."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def make_optimizer(
    lr: float, weight_decay: float = 0.0, max_grad_norm: float | None = None
) -> optax.GradientTransformation:
    """Adam (AdamW when ``weight_decay`` > 0), with optional global-norm gradient clipping."""
    opt = optax.adamw(lr, weight_decay=weight_decay) if weight_decay > 0 else optax.adam(lr)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), opt) if max_grad_norm else opt


def apply_gradients(
    opt: optax.GradientTransformation, params: Any, opt_state: Any, grads: Any
) -> tuple[Any, Any]:
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def critic_head(cfg: ValueHeadConfig, spec: EnvSpec, gamma: float) -> ValueHead:
    """The value head with its support derived from the env's reward range when not given."""
    return make_value_head(cfg, default_value_range(spec.reward_range, gamma))


def make_critic(cfg: Any, spec: EnvSpec) -> tuple[CriticEnsemble, ValueHead]:
    """The critic ensemble and its value head from the fields every value-based config has:
    ``num_critics, critic_hidden, activation, critic_layer_norm, critic, gamma``."""
    head = critic_head(cfg.critic, spec, cfg.gamma)
    critic = CriticEnsemble(
        cfg.num_critics, cfg.critic_hidden, head.num_outputs, cfg.activation, cfg.critic_layer_norm
    )
    return critic, head


def example_inputs(spec: EnvSpec, privileged: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Zero ``(actor obs [1, O], critic obs [1, O'], action [1, A])`` to initialise networks."""
    critic_dim = spec.critic_obs_dim if privileged else spec.obs_dim
    return (
        jnp.zeros((1, spec.obs_dim)),
        jnp.zeros((1, critic_dim)),
        jnp.zeros((1, spec.action_dim)),
    )


def fit_critics(
    critic: CriticEnsemble,
    head: ValueHead,
    params: Any,
    obs: jax.Array,
    action: jax.Array,
    target: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Head loss of every critic ``[N, B, M]`` at (obs, action in [-1, 1]) vs ``target [B]``."""
    out = critic.apply(params, obs, action)
    loss = head.loss(out, jnp.broadcast_to(target, out.shape[:-1])).mean()
    q = head.value(out)
    return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": target.mean()}


def minibatches(batch: Any, utd: int) -> Any:
    """``[utd * B, ...] -> [utd, B, ...]`` for a ``lax.scan`` over gradient steps; each
    minibatch's ``B`` samples are split over the data-parallel devices, if any."""
    split = jax.tree.map(lambda x: x.reshape(utd, x.shape[0] // utd, *x.shape[1:]), batch)
    return shard_batch(split, axis=1)


def scan_updates(step: Callable[[Any, Any], tuple[Any, Any]], state: Any, batches: Any):
    """Runs ``step`` over the leading axis of ``batches``; metrics are averaged over the steps."""
    state, metrics = jax.lax.scan(step, state, batches)
    return state, jax.tree.map(jnp.mean, metrics)
