"""Soft Actor-Critic with a REDQ-style critic ensemble (Haarnoja et al. 2018; Chen et al. 2021).

Objective: critics regress (or classify, see ``robotrl.nets.heads``) toward the soft TD target
``y = r + gamma (1 - terminated) (min_{i in M} Q'_i(s', a') - alpha log pi(a'|s'))``,
``a' ~ pi(s')``,
where ``M`` is a random subset of ``num_min`` of the ``num_critics`` target critics (twin-critic
SAC is ``num_critics = num_min = 2``). The tanh-Gaussian actor maximises
``E[Q(s, a) - alpha log pi(a|s)]`` and the temperature ``alpha`` is learned so the policy's entropy
tracks ``target_entropy``. With ``utd > 1`` one ``update`` call takes ``utd`` critic steps (a
``lax.scan`` over minibatches, targets updated after each) and one actor/temperature step on the
last minibatch (as RLPD and WSRL do).

Shapes: B minibatch, N critics, M value-head outputs, A action dim, O obs dim.
Actions in batches are in env units; the networks work in ``[-1, 1]`` (``ActionScaler``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from robotrl.algos.common import (
    apply_gradients,
    example_inputs,
    fit_critics,
    make_critic,
    make_optimizer,
    minibatches,
    polyak,
    scan_updates,
    td_target,
)
from robotrl.nets import (
    ActionScaler,
    CriticEnsemble,
    TanhGaussianActor,
    ValueHead,
    ValueHeadConfig,
    mlp_program,
    tanh_gaussian_sample,
)
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class SACConfig:
    actor_hidden: tuple[int, ...] = (256, 256)  # hidden layer sizes of the actor
    critic_hidden: tuple[int, ...] = (256, 256)  # hidden layer sizes of each critic
    activation: str = "relu"  # hidden activation of both
    actor_layer_norm: bool = False  # LayerNorm after each hidden layer (REDQ/WSRL: True)
    critic_layer_norm: bool = False
    num_critics: int = 2  # ensemble size N (REDQ/WSRL: 10)
    num_min: int = 2  # the target takes the min over a random subset of this many critics
    actor_q_reduction: str = "min"  # "min" | "mean" over the ensemble in the actor loss
    batch_size: int = 256  # minibatch per gradient step
    utd: int = 1  # critic gradient steps per update call (the call consumes utd * batch_size)
    gamma: float = 0.99  # discount
    tau: float = 0.005  # polyak rate of the target critics
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temp_lr: float = 3e-4
    init_temperature: float = 1.0
    learn_temperature: bool = True  # False keeps alpha at init_temperature
    target_entropy: float | None = None  # None: -A
    backup_entropy: bool = True  # subtract alpha log pi in the TD target (WSRL: False)
    weight_decay: float = 0.0  # AdamW decoupled weight decay on actor and critic
    max_grad_norm: float | None = None  # global-norm gradient clipping
    critic: ValueHeadConfig = ValueHeadConfig()  # mse | hl_gauss | two_hot
    privileged_critic: bool = False  # critic reads obs["privileged_state"] (asymmetric AC)

    def __post_init__(self) -> None:
        if not 1 <= self.num_min <= self.num_critics:
            raise ValueError(f"num_min must be in [1, num_critics={self.num_critics}]")
        if self.actor_q_reduction not in ("min", "mean"):
            raise ValueError("actor_q_reduction must be 'min' or 'mean'")
        if self.utd < 1 or self.batch_size < 1:
            raise ValueError("utd and batch_size must be positive")


class SACState(flax.struct.PyTreeNode):
    actor_params: Params
    critic_params: Params
    target_critic_params: Params
    log_temp: jax.Array
    actor_opt_state: Any
    critic_opt_state: Any
    temp_opt_state: Any
    step: jax.Array  # update calls so far


class SACNets(NamedTuple):
    """Everything static that the loss functions need; Cal-QL/CQL reuse it."""

    actor: TanhGaussianActor
    critic: CriticEnsemble
    head: ValueHead
    scaler: ActionScaler
    target_entropy: float
    actor_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation
    temp_opt: optax.GradientTransformation


def make_nets(cfg: SACConfig, spec: EnvSpec) -> SACNets:
    critic, head = make_critic(cfg, spec)
    return SACNets(
        actor=TanhGaussianActor(
            cfg.actor_hidden, spec.action_dim, cfg.activation, cfg.actor_layer_norm
        ),
        critic=critic,
        head=head,
        scaler=ActionScaler.from_bounds(spec.action_low, spec.action_high),
        target_entropy=(
            -float(spec.action_dim) if cfg.target_entropy is None else cfg.target_entropy
        ),
        actor_opt=make_optimizer(cfg.actor_lr, cfg.weight_decay, cfg.max_grad_norm),
        critic_opt=make_optimizer(cfg.critic_lr, cfg.weight_decay, cfg.max_grad_norm),
        temp_opt=optax.adam(cfg.temp_lr),
    )


def init_state(key: PRNGKey, cfg: SACConfig, spec: EnvSpec, nets: SACNets) -> SACState:
    k_actor, k_critic = jax.random.split(key)
    obs, cobs, act = example_inputs(spec, cfg.privileged_critic)
    actor_params = nets.actor.init(k_actor, obs)
    critic_params = nets.critic.init(k_critic, cobs, act)
    log_temp = jnp.log(jnp.float32(cfg.init_temperature))
    return SACState(
        actor_params=actor_params,
        critic_params=critic_params,
        # A copy, not the same arrays: a donated update must not receive one buffer twice.
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        log_temp=log_temp,
        actor_opt_state=nets.actor_opt.init(actor_params),
        critic_opt_state=nets.critic_opt.init(critic_params),
        temp_opt_state=nets.temp_opt.init(log_temp),
        step=jnp.zeros((), jnp.int32),
    )


def critic_values(nets: SACNets, params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
    """Scalar Q of every ensemble member, ``[N, B]``; ``action`` in ``[-1, 1]``."""
    return nets.head.value(nets.critic.apply(params, obs, action))


def soft_target(
    state: SACState, batch: Transition, key: PRNGKey, cfg: SACConfig, nets: SACNets
) -> jax.Array:
    """The soft TD target ``y [B]`` from the target critics and a fresh next action."""
    k_act, k_subset = jax.random.split(key)
    mean, log_std = nets.actor.apply(state.actor_params, actor_obs(batch.next_obs))
    next_action, next_logp = tanh_gaussian_sample(mean, log_std, k_act)
    next_obs = critic_obs(batch.next_obs, cfg.privileged_critic)
    next_q = critic_values(nets, state.target_critic_params, next_obs, next_action)  # [N, B]
    if cfg.num_min < cfg.num_critics:
        subset = jax.random.choice(k_subset, cfg.num_critics, (cfg.num_min,), replace=False)
        next_q = next_q[subset]
    next_v = next_q.min(axis=0)
    if cfg.backup_entropy:
        next_v = next_v - jnp.exp(state.log_temp) * next_logp
    return jax.lax.stop_gradient(td_target(batch.reward, batch.terminated, next_v, cfg.gamma))


def critic_loss(
    critic_params: Params,
    state: SACState,
    batch: Transition,
    key: PRNGKey,
    cfg: SACConfig,
    nets: SACNets,
) -> tuple[jax.Array, Metrics]:
    """Mean head loss of every critic against the shared soft target."""
    target = soft_target(state, batch, key, cfg, nets)
    obs = critic_obs(batch.obs, cfg.privileged_critic)
    action = nets.scaler.from_env(batch.action)
    return fit_critics(nets.critic, nets.head, critic_params, obs, action, target)


def actor_loss(
    actor_params: Params,
    state: SACState,
    batch: Transition,
    key: PRNGKey,
    cfg: SACConfig,
    nets: SACNets,
) -> tuple[jax.Array, tuple[Metrics, jax.Array]]:
    """``E[alpha log pi(a|s) - Q(s, a)]``; also returns ``log pi [B]`` for the temperature."""
    mean, log_std = nets.actor.apply(actor_params, actor_obs(batch.obs))
    action, logp = tanh_gaussian_sample(mean, log_std, key)
    q_all = critic_values(
        nets, state.critic_params, critic_obs(batch.obs, cfg.privileged_critic), action
    )
    q = q_all.min(axis=0) if cfg.actor_q_reduction == "min" else q_all.mean(axis=0)
    loss = (jnp.exp(state.log_temp) * logp - q).mean()
    return loss, ({"actor_loss": loss, "entropy": -logp.mean()}, logp)


def temperature_loss(log_temp: jax.Array, logp: jax.Array, target_entropy: float) -> jax.Array:
    """Raises alpha when the entropy ``-log pi`` is below the target, lowers it above."""
    return -(log_temp * jax.lax.stop_gradient(logp + target_entropy)).mean()


def critic_step(
    state: SACState,
    batch: Transition,
    key: PRNGKey,
    cfg: SACConfig,
    nets: SACNets,
    loss_fn=critic_loss,
) -> tuple[SACState, Metrics]:
    """One critic gradient step and its target update; ``loss_fn`` lets CQL/Cal-QL add terms."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(
        state.critic_params, state, batch, key, cfg, nets
    )
    params, opt_state = apply_gradients(
        nets.critic_opt, state.critic_params, state.critic_opt_state, grads
    )
    state = state.replace(
        critic_params=params,
        critic_opt_state=opt_state,
        target_critic_params=polyak(state.target_critic_params, params, cfg.tau),
    )
    return state, metrics


def actor_step(
    state: SACState,
    batch: Transition,
    key: PRNGKey,
    cfg: SACConfig,
    nets: SACNets,
    loss_fn=actor_loss,
) -> tuple[SACState, Metrics]:
    """One actor step, then one temperature step on the same samples; ``loss_fn`` (returning
    ``(loss, (metrics, log pi))``) lets SRL score a whole sequence."""
    grads, (metrics, logp) = jax.grad(loss_fn, has_aux=True)(
        state.actor_params, state, batch, key, cfg, nets
    )
    actor_params, actor_opt_state = apply_gradients(
        nets.actor_opt, state.actor_params, state.actor_opt_state, grads
    )
    state = state.replace(actor_params=actor_params, actor_opt_state=actor_opt_state)
    if cfg.learn_temperature:
        temp_grad = jax.grad(temperature_loss)(state.log_temp, logp, nets.target_entropy)
        log_temp, temp_opt_state = apply_gradients(
            nets.temp_opt, state.log_temp, state.temp_opt_state, temp_grad
        )
        state = state.replace(log_temp=log_temp, temp_opt_state=temp_opt_state)
    return state, {**metrics, "temperature": jnp.exp(state.log_temp)}


def make_update(cfg: SACConfig, nets: SACNets, loss_fn=critic_loss):
    """``update(state, batch [utd * B], key)``: ``utd`` critic steps, then one actor step."""

    def update(state: SACState, batch: Transition, key: PRNGKey) -> tuple[SACState, Metrics]:
        k_critic, k_actor = jax.random.split(key)
        batches = minibatches(batch, cfg.utd)
        keys = jax.random.split(k_critic, cfg.utd)
        step = lambda st, inp: critic_step(st, inp[0], inp[1], cfg, nets, loss_fn)
        state, critic_metrics = scan_updates(step, state, (batches, keys))
        last = jax.tree.map(lambda x: x[-1], batches)
        state, actor_metrics = actor_step(state, last, k_actor, cfg, nets)
        return state.replace(step=state.step + 1), {**critic_metrics, **actor_metrics}

    return update


def make_policies(nets: SACNets) -> tuple[Policy, Policy]:
    """(stochastic, deterministic) policies acting in env units; params are the actor's."""

    def stochastic(params, carry, obs, key):
        mean, log_std = nets.actor.apply(params, actor_obs(obs))
        return nets.scaler.to_env(tanh_gaussian_sample(mean, log_std, key)[0]), carry, ()

    def deterministic(params, carry, obs, key):
        mean, _ = nets.actor.apply(params, actor_obs(obs))
        return nets.scaler.to_env(jnp.tanh(mean)), carry, ()

    return Policy(no_carry, stochastic), Policy(no_carry, deterministic)


def make(cfg: SACConfig, spec: EnvSpec, loss_fn=critic_loss) -> Algorithm:
    """The SAC algorithm bundle for one env spec; ``loss_fn`` is the critic loss (CQL/Cal-QL
    pass theirs)."""
    nets = make_nets(cfg, spec)
    stochastic, deterministic = make_policies(nets)

    def make_policy(state: SACState, deterministic_: bool) -> tuple[Policy, Params]:
        return (deterministic if deterministic_ else stochastic), state.actor_params

    def describe_policy(state: SACState) -> tuple[dict, dict]:
        mlp = state.actor_params["params"]["MLP_0"]
        return mlp_program(mlp, cfg.activation, cfg.actor_layer_norm, head="tanh_mean")

    return Algorithm(
        config=cfg,
        init=lambda key: init_state(key, cfg, spec, nets),
        update=make_update(cfg, nets, loss_fn),
        make_policy=make_policy,
        describe_policy=describe_policy,
    )
