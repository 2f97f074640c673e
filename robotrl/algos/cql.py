"""CQL (Kumar et al. 2020) and Cal-QL (Nakamoto et al. 2023): SAC's losses plus a
conservative penalty on the critics, for offline pretraining (``train.dataset``).

Per critic, on a batch of dataset transitions, with ``n = cql_samples`` actions per state
drawn uniformly (density ``2^-A`` on ``[-1, 1]^A``) and from the current policy at ``s`` and at
``s'`` (importance-weighted by their log-probabilities, CQL(H)):

  penalty = T logsumexp_j ( Q(s, a_j) - log density(a_j) ) / T  -  Q(s, a_data)

added to SAC's critic loss with weight ``cql_alpha``. Cal-QL floors the policy-action values by
the dataset's Monte-Carlo return (``extras["mc_return"]``) before the logsumexp, so values that
are already below the behaviour policy's are not pushed further down: the critic stays
calibrated, which is what keeps online fine-tuning from dipping. The state is SAC's, so a
CQL/Cal-QL checkpoint fine-tunes online with SAC (``robotrl.train.finetune``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from robotrl.algos import sac
from robotrl.nets import tanh_gaussian_sample
from robotrl.types import (
    Algorithm,
    EnvSpec,
    Metrics,
    Params,
    PRNGKey,
    Transition,
    actor_obs,
    critic_obs,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CQLConfig(sac.SACConfig):
    cql_alpha: float = 5.0  # weight of the conservative penalty
    cql_samples: int = 10  # sampled actions per state, per source (uniform, pi(s), pi(s'))
    cql_temperature: float = 1.0  # T of the logsumexp
    calql: bool = False  # Cal-QL: floor the policy-action values by the Monte-Carlo return

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cql_alpha < 0 or self.cql_samples < 1 or self.cql_temperature <= 0:
            raise ValueError("cql_alpha >= 0, cql_samples >= 1 and cql_temperature > 0 needed")


def conservative_penalty(
    q_data: jax.Array,
    q_random: jax.Array,
    q_policy: jax.Array,
    logp_policy: jax.Array,
    action_dim: int,
    temperature: float,
    floor: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """CQL(H)'s penalty per critic ``[N]`` and the share of floored values.

    ``q_data [N, B]``; ``q_random [N, n, B]`` at uniform actions; ``q_policy [N, m, B]`` at
    policy actions with log-probabilities ``logp_policy [m, B]``; ``floor [B]`` (Cal-QL) lower-
    bounds the policy-action values.
    """
    floored = jnp.zeros(())
    if floor is not None:
        floored = (q_policy < floor[None, None]).mean()
        q_policy = jnp.maximum(q_policy, floor[None, None])
    log_uniform = action_dim * math.log(0.5)
    cat = jnp.concatenate([q_random - log_uniform, q_policy - logp_policy[None]], axis=1)
    lse = temperature * jax.nn.logsumexp(cat / temperature, axis=1)  # [N, B]
    return (lse - q_data).mean(axis=1), floored


def critic_loss(
    critic_params: Params,
    state: sac.SACState,
    batch: Transition,
    key: PRNGKey,
    cfg: CQLConfig,
    nets: sac.SACNets,
) -> tuple[jax.Array, Metrics]:
    """SAC's critic loss plus ``cql_alpha`` times the conservative penalty (both averaged over
    the critics); ``batch.extras["mc_return"]`` floors the policy-action values with Cal-QL."""
    k_td, k_rand, k_cur, k_next = jax.random.split(key, 4)
    td_loss, metrics = sac.critic_loss(critic_params, state, batch, k_td, cfg, nets)
    obs = critic_obs(batch.obs, cfg.privileged_critic)
    n, (batch_size, action_dim) = cfg.cql_samples, batch.action.shape

    def q_at(actions):  # [n, B, A] -> [N, n, B]
        q = jax.vmap(lambda a: sac.critic_values(nets, critic_params, obs, a))(actions)
        return jnp.swapaxes(q, 0, 1)

    def policy_actions(which, k):
        mean, log_std = nets.actor.apply(state.actor_params, actor_obs(which))
        keys = jax.random.split(k, n)
        a, logp = jax.vmap(lambda kk: tanh_gaussian_sample(mean, log_std, kk))(keys)
        return jax.lax.stop_gradient(a), jax.lax.stop_gradient(logp)  # [n, B, A], [n, B]

    uniform = jax.random.uniform(k_rand, (n, batch_size, action_dim), minval=-1, maxval=1)
    a_cur, logp_cur = policy_actions(batch.obs, k_cur)
    a_next, logp_next = policy_actions(batch.next_obs, k_next)
    q_policy = q_at(jnp.concatenate([a_cur, a_next]))
    logp = jnp.concatenate([logp_cur, logp_next])
    q_data = sac.critic_values(nets, critic_params, obs, nets.scaler.from_env(batch.action))
    floor = batch.extras["mc_return"] if cfg.calql else None
    penalty, floored = conservative_penalty(
        q_data, q_at(uniform), q_policy, logp, action_dim, cfg.cql_temperature, floor
    )
    total = td_loss + cfg.cql_alpha * penalty.mean()
    return total, {**metrics, "cql_penalty": penalty.mean(), "calql_floored": floored}


def make(cfg: CQLConfig, spec: EnvSpec) -> Algorithm:
    """SAC with the conservative critic loss (Cal-QL with ``calql=True``)."""
    return sac.make(cfg, spec, critic_loss)
