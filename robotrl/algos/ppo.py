"""Proximal Policy Optimization (Schulman et al. 2017), with the details that make it work on
continuous control (Andrychowicz et al. 2021; Huang et al. 2022, "The 37 implementation details").

Objective: with advantages from GAE over a rollout ``[T, E]``,
``A_t = sum_k (gamma lambda)^k delta_{t+k}``, ``delta_t = r_t + gamma (1 - terminated_t) V(s'_t)
- V(s_t)``, where the trace is cut at every episode end (terminated *or* truncated) but a truncated
step still bootstraps from ``V(s'_t)`` of its true final observation, maximise the clipped
surrogate ``E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)]`` with ``rho = pi(a|s) / pi_old(a|s)``,
plus an entropy bonus, and fit the value with a clipped squared error (or a classification head,
see ``robotrl.nets.heads``). ``epochs`` passes over the rollout in shuffled minibatches, all inside
one ``lax.scan``, so minibatches up to 16,384 are one compiled loop.

Actions: ``normal`` is a Gaussian with a state-independent log-std in ``[-1, 1]`` units, clipped
to the bounds before the env (its log-prob is of the unclipped sample, kept in ``extras``);
``beta`` is a Beta distribution on the action box (CaRL), which never needs clipping.

Shapes: T rollout steps, E envs, N = T * E samples, M value-head outputs, A action dim.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from robotrl.algos.common import apply_gradients, critic_head, example_inputs
from robotrl.nets import MLP, ActionScaler, ValueHead, ValueHeadConfig, mlp_program
from robotrl.parallel import shard_batch
from robotrl.types import (
    Algorithm,
    EnvSpec,
    Metrics,
    Params,
    Policy,
    PRNGKey,
    Transition,
    actor_obs,
    critic_obs,
    no_carry,
)

DISTRIBUTIONS = ("normal", "beta")
BETA_EPS = 1e-6


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPOConfig:
    actor_hidden: tuple[int, ...] = (64, 64)  # hidden layer sizes of the policy
    critic_hidden: tuple[int, ...] = (64, 64)  # hidden layer sizes of the value function
    activation: str = "tanh"
    actor_layer_norm: bool = False
    critic_layer_norm: bool = False
    distribution: str = "normal"  # "normal" | "beta"
    init_log_std: float = 0.0  # normal: initial log-std in [-1, 1] action units
    rollout_length: int = 128  # T: env steps per env between updates
    minibatch_size: int = 256  # samples per gradient step; T * num_envs must be a multiple
    epochs: int = 4  # passes over each rollout
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2  # policy ratio clip
    value_clip_eps: float | None = 0.2  # mse head: clip V around the rollout's value; None: off
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    lr: float = 3e-4
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True  # per minibatch
    critic: ValueHeadConfig = ValueHeadConfig()  # mse | hl_gauss | two_hot value head
    privileged_critic: bool = False  # value reads obs["privileged_state"] (asymmetric AC)

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}")
        if min(self.rollout_length, self.minibatch_size, self.epochs) < 1:
            raise ValueError("rollout_length, minibatch_size and epochs must be positive")


class PPOState(flax.struct.PyTreeNode):
    params: Params  # {"actor": ..., "critic": ...}
    opt_state: Any
    step: jax.Array  # update calls so far


class GaussianHead(nn.Module):
    """``obs -> (mean [..., A], log_std [A])`` with a state-independent log-std."""

    hidden: tuple[int, ...]
    action_dim: int
    activation: str
    layer_norm: bool
    init_log_std: float

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = MLP(self.hidden, self.action_dim, self.activation, self.layer_norm, 0.01)(obs)
        log_std = self.param(
            "log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,)
        )
        return mean, log_std


class BetaHead(nn.Module):
    """``obs -> (alpha [..., A], beta [..., A])``, both > 1 (unimodal)."""

    hidden: tuple[int, ...]
    action_dim: int
    activation: str
    layer_norm: bool

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden, 2 * self.action_dim, self.activation, self.layer_norm, 0.01)(obs)
        alpha, beta = jnp.split(out, 2, axis=-1)
        return 1.0 + jax.nn.softplus(alpha), 1.0 + jax.nn.softplus(beta)


class Distribution(NamedTuple):
    """Sampling, log-prob and entropy of the policy in ``[-1, 1]`` action units."""

    sample: Any  # (dist_params, key) -> raw action [..., A]
    log_prob: Any  # (dist_params, raw) -> [...]
    entropy: Any  # (dist_params) -> [...]
    mode: Any  # (dist_params) -> action [..., A]
    to_unit: Any  # raw -> action in [-1, 1]


def _normal() -> Distribution:
    def log_prob(p, raw):
        mean, log_std = p
        log_std = jnp.broadcast_to(log_std, mean.shape)
        return jax.scipy.stats.norm.logpdf(raw, mean, jnp.exp(log_std)).sum(-1)

    def entropy(p):
        mean, log_std = p
        return jnp.broadcast_to(log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e), mean.shape).sum(-1)

    def sample(p, key):
        mean, log_std = p
        return mean + jnp.broadcast_to(jnp.exp(log_std), mean.shape) * jax.random.normal(
            key, mean.shape
        )

    return Distribution(
        sample,
        log_prob,
        entropy,
        lambda p: jnp.clip(p[0], -1.0, 1.0),
        lambda raw: jnp.clip(raw, -1.0, 1.0),
    )


def _beta() -> Distribution:
    # The raw sample is x in (0, 1); the action is 2x - 1.
    def log_prob(p, x):
        x = jnp.clip(x, BETA_EPS, 1 - BETA_EPS)
        return jax.scipy.stats.beta.logpdf(x, p[0], p[1]).sum(-1)

    def entropy(p):
        a, b = p
        digamma = jax.scipy.special.digamma
        log_beta = jax.scipy.special.betaln(a, b)
        return (
            log_beta - (a - 1) * digamma(a) - (b - 1) * digamma(b) + (a + b - 2) * digamma(a + b)
        ).sum(-1)

    def sample(p, key):
        return jnp.clip(jax.random.beta(key, p[0], p[1]), BETA_EPS, 1 - BETA_EPS)

    return Distribution(
        sample, log_prob, entropy, lambda p: 2 * p[0] / (p[0] + p[1]) - 1, lambda x: 2 * x - 1
    )


class Critic(nn.Module):
    """``obs -> [..., M]`` value-head outputs."""

    hidden: tuple[int, ...]
    num_outputs: int
    activation: str
    layer_norm: bool

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden, self.num_outputs, self.activation, self.layer_norm)(obs)


class PPONets(NamedTuple):
    actor: nn.Module
    critic: Critic
    head: ValueHead
    dist: Distribution
    scaler: ActionScaler
    opt: optax.GradientTransformation


def make_nets(cfg: PPOConfig, spec: EnvSpec) -> PPONets:
    head = critic_head(cfg.critic, spec, cfg.gamma)
    if cfg.distribution == "normal":
        actor = GaussianHead(
            cfg.actor_hidden,
            spec.action_dim,
            cfg.activation,
            cfg.actor_layer_norm,
            cfg.init_log_std,
        )
        dist = _normal()
    else:
        actor = BetaHead(cfg.actor_hidden, spec.action_dim, cfg.activation, cfg.actor_layer_norm)
        dist = _beta()
    return PPONets(
        actor=actor,
        critic=Critic(cfg.critic_hidden, head.num_outputs, cfg.activation, cfg.critic_layer_norm),
        head=head,
        dist=dist,
        scaler=ActionScaler.from_bounds(spec.action_low, spec.action_high),
        opt=optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr)),
    )


def init_state(key: PRNGKey, cfg: PPOConfig, spec: EnvSpec, nets: PPONets) -> PPOState:
    k_actor, k_critic = jax.random.split(key)
    obs, cobs, _ = example_inputs(spec, cfg.privileged_critic)
    params = {"actor": nets.actor.init(k_actor, obs), "critic": nets.critic.init(k_critic, cobs)}
    return PPOState(params=params, opt_state=nets.opt.init(params), step=jnp.zeros((), jnp.int32))


def gae(
    reward: jax.Array,
    value: jax.Array,
    next_value: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over ``[T, E]``; returns (advantages, returns).

    ``next_value`` is V of each step's true successor (the final observation at episode ends):
    terminated steps do not bootstrap, truncated ones do, and neither passes the trace on.
    """
    term = terminated.astype(reward.dtype)
    done = jnp.logical_or(terminated, truncated).astype(reward.dtype)
    delta = reward + gamma * (1.0 - term) * next_value - value

    def body(next_adv, x):
        delta_t, done_t = x
        adv = delta_t + gamma * lam * (1.0 - done_t) * next_adv
        return adv, adv

    _, adv = jax.lax.scan(body, jnp.zeros_like(delta[0]), (delta, done), reverse=True)
    return adv, adv + value


def losses(
    params: Params, batch: dict[str, Any], cfg: PPOConfig, nets: PPONets
) -> tuple[jax.Array, Metrics]:
    """Clipped surrogate + value loss - entropy bonus on one minibatch ``[B]``."""
    dist_params = nets.actor.apply(params["actor"], actor_obs(batch["obs"]))
    log_prob = nets.dist.log_prob(dist_params, batch["raw_action"])
    ratio = jnp.exp(log_prob - batch["log_prob"])
    adv = batch["advantage"]
    if cfg.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv)
    policy_loss = -surrogate.mean()
    entropy = nets.dist.entropy(dist_params).mean()

    out = nets.critic.apply(params["critic"], critic_obs(batch["obs"], cfg.privileged_critic))
    value = nets.head.value(out)
    if cfg.critic.kind == "mse" and cfg.value_clip_eps is not None:
        clipped = batch["value"] + jnp.clip(
            value - batch["value"], -cfg.value_clip_eps, cfg.value_clip_eps
        )
        value_loss = (
            0.5
            * jnp.maximum((value - batch["return"]) ** 2, (clipped - batch["return"]) ** 2).mean()
        )
    else:
        value_loss = nets.head.loss(out, batch["return"]).mean()
    loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
    log_ratio = log_prob - batch["log_prob"]
    return loss, {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": ((ratio - 1) - log_ratio).mean(),
        "clip_fraction": (jnp.abs(ratio - 1) > cfg.clip_eps).mean(),
    }


def make_update(cfg: PPOConfig, nets: PPONets):
    """``update(state, rollout [T, E], key)``: GAE, then ``epochs`` shuffled minibatch passes."""

    def values(params, obs):
        out = nets.critic.apply(params["critic"], critic_obs(obs, cfg.privileged_critic))
        return nets.head.value(out)

    def update(state: PPOState, batch: Transition, key: PRNGKey) -> tuple[PPOState, Metrics]:
        value = values(state.params, batch.obs)
        next_value = values(state.params, batch.next_obs)
        adv, ret = gae(
            batch.reward,
            value,
            next_value,
            batch.terminated,
            batch.truncated,
            cfg.gamma,
            cfg.gae_lambda,
        )
        data = {
            "obs": batch.obs,
            "raw_action": batch.extras["raw_action"],
            "log_prob": batch.extras["log_prob"],
            "advantage": adv,
            "return": ret,
            "value": value,
        }
        num = adv.size
        if num % cfg.minibatch_size:
            raise ValueError(
                f"rollout of {num} samples is not a multiple of minibatch_size {cfg.minibatch_size}"
            )
        flat = jax.tree.map(lambda x: x.reshape(num, *x.shape[2:]), data)
        num_minibatches = num // cfg.minibatch_size

        def minibatch_step(state, mb):
            grads, metrics = jax.grad(losses, has_aux=True)(state.params, mb, cfg, nets)
            params, opt_state = apply_gradients(nets.opt, state.params, state.opt_state, grads)
            return state.replace(params=params, opt_state=opt_state), metrics

        def epoch(state, k):
            order = jax.random.permutation(k, num)
            mbs = jax.tree.map(
                lambda x: x[order].reshape(num_minibatches, cfg.minibatch_size, *x.shape[1:]),
                flat,
            )
            mbs = shard_batch(mbs, axis=1)  # each minibatch over the data-parallel devices
            return jax.lax.scan(minibatch_step, state, mbs)

        state, metrics = jax.lax.scan(epoch, state, jax.random.split(key, cfg.epochs))
        metrics = jax.tree.map(jnp.mean, metrics)
        var = jnp.var(ret)
        metrics["explained_variance"] = jnp.where(var > 0, 1 - jnp.var(ret - value) / var, 0.0)
        metrics["value_mean"] = value.mean()
        return state.replace(step=state.step + 1), metrics

    return update


def make_policies(nets: PPONets) -> tuple[Policy, Policy]:
    """(sampling, deterministic) policies in env units; params are the actor's.

    The sampling policy's extras hold the raw sample and its log-probability, which the update
    needs for the ratio.
    """

    def sampling(params, carry, obs, key):
        p = nets.actor.apply(params, actor_obs(obs))
        raw = nets.dist.sample(p, key)
        extras = {"raw_action": raw, "log_prob": nets.dist.log_prob(p, raw)}
        return nets.scaler.to_env(nets.dist.to_unit(raw)), carry, extras

    def deterministic(params, carry, obs, key):
        p = nets.actor.apply(params, actor_obs(obs))
        return nets.scaler.to_env(nets.dist.mode(p)), carry, ()

    return Policy(no_carry, sampling), Policy(no_carry, deterministic)


def make(cfg: PPOConfig, spec: EnvSpec) -> Algorithm:
    """The PPO algorithm bundle for one env spec (on-policy: rollouts of ``rollout_length``)."""
    nets = make_nets(cfg, spec)
    sampling, deterministic = make_policies(nets)

    def make_policy(state: PPOState, deterministic_: bool) -> tuple[Policy, Params]:
        return (deterministic if deterministic_ else sampling), state.params["actor"]

    def describe_policy(state: PPOState) -> tuple[dict, dict]:
        head = "clip" if cfg.distribution == "normal" else "beta_mean"
        mlp = state.params["actor"]["params"]["MLP_0"]
        return mlp_program(mlp, cfg.activation, cfg.actor_layer_norm, head=head)

    return Algorithm(
        config=cfg,
        init=lambda key: init_state(key, cfg, spec, nets),
        update=make_update(cfg, nets),
        make_policy=make_policy,
        rollout_length=cfg.rollout_length,
        describe_policy=describe_policy,
    )
