"""Offline value learning without querying out-of-data actions: IQL (Kostrikov et al. 2022),
with Dual RL's f-DVL losses (Sikchi et al. 2024) and XQL's Gumbel loss as alternatives.

One learner, three networks: a state value ``V(s)``, a critic ensemble ``Q(s, a)`` with
Polyak targets, and a tanh-Gaussian actor. Per gradient step, on a batch of dataset
transitions, with ``x = min_i Q_target_i(s, a) - V(s)``:

  V      minimises ``value_loss(x)``:
           expectile  |tau - 1(x < 0)| x^2                        (IQL, tau = ``expectile``)
           chi2       alpha max(x + x^2 / 4, 0) - (1 - alpha) x  (f-DVL, chi-square)
           tv         alpha max(x, 0) - (1 - alpha) x            (f-DVL, total variation)
           gumbel     exp(x / beta) - x / beta - 1               (XQL; unstable at small beta)
  Q      regresses (or classifies, ``critic`` head) ``r + gamma (1 - terminated) V(s')``
  actor  advantage-weighted regression: maximise ``exp(awr_temperature x)`` (clipped at
         ``max_weight``) times the log-likelihood of the dataset action.

Only dataset actions enter the value losses, so nothing is queried outside the data. The
deterministic policy is ``tanh(mean)``, exported like SAC's actor.
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
from robotrl.algos.sac import make_policies
from robotrl.nets import (
    ActionScaler,
    CriticEnsemble,
    TanhGaussianActor,
    ValueHead,
    ValueHeadConfig,
    mlp_program,
)
from robotrl.nets.actors import tanh_gaussian_log_prob
from robotrl.nets.mlp import MLP
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
)

VALUE_LOSSES = ("expectile", "chi2", "tv", "gumbel")


@dataclasses.dataclass(frozen=True, kw_only=True)
class IQLConfig:
    actor_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)  # also the value network's
    activation: str = "relu"
    actor_layer_norm: bool = False
    critic_layer_norm: bool = False
    num_critics: int = 2  # V's target is the min over these
    batch_size: int = 256
    utd: int = 1  # gradient steps per update call
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    value_loss: str = "expectile"  # expectile (IQL) | chi2 | tv (f-DVL) | gumbel (XQL)
    expectile: float = 0.7  # IQL's tau
    alpha: float = 0.7  # f-DVL's weight of the conjugate term
    gumbel_beta: float = 1.0  # XQL's temperature
    awr_temperature: float = 3.0  # beta of the advantage weights exp(beta A)
    max_weight: float = 100.0
    critic: ValueHeadConfig = ValueHeadConfig()  # mse | hl_gauss | two_hot
    privileged_critic: bool = False  # Q and V read obs["privileged_state"]

    def __post_init__(self) -> None:
        if self.value_loss not in VALUE_LOSSES:
            raise ValueError(f"value_loss must be one of {VALUE_LOSSES}, got {self.value_loss!r}")
        if not 0.0 < self.expectile < 1.0 or not 0.0 < self.alpha < 1.0:
            raise ValueError("expectile and alpha must be in (0, 1)")
        if self.gumbel_beta <= 0 or self.awr_temperature < 0:
            raise ValueError("gumbel_beta must be positive, awr_temperature non-negative")
        if self.utd < 1 or self.batch_size < 1:
            raise ValueError("utd and batch_size must be positive")


def value_loss(x: jax.Array, cfg: IQLConfig) -> jax.Array:
    """The elementwise loss of ``V`` at ``x = Q - V`` (see the module docstring)."""
    if cfg.value_loss == "expectile":
        weight = jnp.where(x < 0, 1.0 - cfg.expectile, cfg.expectile)
        return weight * x**2
    if cfg.value_loss == "chi2":
        return cfg.alpha * jnp.maximum(x + x**2 / 4, 0.0) - (1 - cfg.alpha) * x
    if cfg.value_loss == "tv":
        return cfg.alpha * jnp.maximum(x, 0.0) - (1 - cfg.alpha) * x
    z = x / cfg.gumbel_beta
    return jnp.exp(z) - z - 1.0


class IQLState(flax.struct.PyTreeNode):
    actor_params: Params
    critic_params: Params
    target_critic_params: Params
    value_params: Params
    actor_opt_state: Any
    critic_opt_state: Any
    value_opt_state: Any
    step: jax.Array


class IQLNets(NamedTuple):
    actor: TanhGaussianActor
    critic: CriticEnsemble
    head: ValueHead
    value: MLP
    scaler: ActionScaler
    actor_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation
    value_opt: optax.GradientTransformation


def make_nets(cfg: IQLConfig, spec: EnvSpec) -> IQLNets:
    critic, head = make_critic(cfg, spec)
    return IQLNets(
        actor=TanhGaussianActor(
            cfg.actor_hidden, spec.action_dim, cfg.activation, cfg.actor_layer_norm
        ),
        critic=critic,
        head=head,
        value=MLP(cfg.critic_hidden, 1, cfg.activation, cfg.critic_layer_norm),
        scaler=ActionScaler.from_bounds(spec.action_low, spec.action_high),
        actor_opt=make_optimizer(cfg.actor_lr),
        critic_opt=make_optimizer(cfg.critic_lr),
        value_opt=make_optimizer(cfg.value_lr),
    )


def init_state(key: PRNGKey, cfg: IQLConfig, spec: EnvSpec, nets: IQLNets) -> IQLState:
    k_actor, k_critic, k_value = jax.random.split(key, 3)
    obs, cobs, act = example_inputs(spec, cfg.privileged_critic)
    actor_params = nets.actor.init(k_actor, obs)
    critic_params = nets.critic.init(k_critic, cobs, act)
    value_params = nets.value.init(k_value, cobs)
    return IQLState(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        value_params=value_params,
        actor_opt_state=nets.actor_opt.init(actor_params),
        critic_opt_state=nets.critic_opt.init(critic_params),
        value_opt_state=nets.value_opt.init(value_params),
        step=jnp.zeros((), jnp.int32),
    )


def make_update(cfg: IQLConfig, nets: IQLNets):
    """``update(state, batch [utd * B], key)``: ``utd`` steps of V, Q and the actor."""

    def values(params, obs):
        return nets.value.apply(params, obs)[..., 0]

    def step(state: IQLState, batch: Transition) -> tuple[IQLState, Metrics]:
        obs = critic_obs(batch.obs, cfg.privileged_critic)
        next_obs = critic_obs(batch.next_obs, cfg.privileged_critic)
        action = nets.scaler.from_env(batch.action)
        q_target = nets.head.value(nets.critic.apply(state.target_critic_params, obs, action))
        q_target = jax.lax.stop_gradient(q_target.min(axis=0))  # [B]

        def v_loss(params):
            x = q_target - values(params, obs)
            return value_loss(x, cfg).mean(), x

        (loss_v, adv), grads = jax.value_and_grad(v_loss, has_aux=True)(state.value_params)
        value_params, value_opt_state = apply_gradients(
            nets.value_opt, state.value_params, state.value_opt_state, grads
        )
        next_v = values(value_params, next_obs)
        target = jax.lax.stop_gradient(td_target(batch.reward, batch.terminated, next_v, cfg.gamma))
        (_, q_metrics), grads = jax.value_and_grad(
            lambda p: fit_critics(nets.critic, nets.head, p, obs, action, target), has_aux=True
        )(state.critic_params)
        critic_params, critic_opt_state = apply_gradients(
            nets.critic_opt, state.critic_params, state.critic_opt_state, grads
        )
        adv = jax.lax.stop_gradient(adv)
        weight = jnp.minimum(jnp.exp(cfg.awr_temperature * adv), cfg.max_weight)

        def actor_loss(params):
            mean, log_std = nets.actor.apply(params, actor_obs(batch.obs))
            return -(weight * tanh_gaussian_log_prob(mean, log_std, action)).mean()

        loss_pi, grads = jax.value_and_grad(actor_loss)(state.actor_params)
        actor_params, actor_opt_state = apply_gradients(
            nets.actor_opt, state.actor_params, state.actor_opt_state, grads
        )
        new = state.replace(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=polyak(state.target_critic_params, critic_params, cfg.tau),
            value_params=value_params,
            actor_opt_state=actor_opt_state,
            critic_opt_state=critic_opt_state,
            value_opt_state=value_opt_state,
        )
        metrics = {
            **q_metrics,
            "value_loss": loss_v,
            "actor_loss": loss_pi,
            "v_mean": (q_target - adv).mean(),
            "advantage_mean": adv.mean(),
            "weight_mean": weight.mean(),
            "td_error": jnp.abs(q_target - target).mean(),
        }
        return new, metrics

    def update(state: IQLState, batch: Transition, key: PRNGKey) -> tuple[IQLState, Metrics]:
        del key  # IQL's updates are deterministic given the batch
        state, metrics = scan_updates(step, state, minibatches(batch, cfg.utd))
        return state.replace(step=state.step + 1), metrics

    return update


def make(cfg: IQLConfig, spec: EnvSpec) -> Algorithm:
    """The IQL / f-DVL / XQL learner for one env spec (offline: ``train.dataset``)."""
    nets = make_nets(cfg, spec)
    stochastic, deterministic = make_policies(nets)  # SAC's: same actor and scaler

    def make_policy(state: IQLState, deterministic_: bool) -> tuple[Policy, Params]:
        return (deterministic if deterministic_ else stochastic), state.actor_params

    def describe_policy(state: IQLState) -> tuple[dict, dict]:
        mlp = state.actor_params["params"]["MLP_0"]
        return mlp_program(mlp, cfg.activation, cfg.actor_layer_norm, head="tanh_mean")

    return Algorithm(
        config=cfg,
        init=lambda key: init_state(key, cfg, spec, nets),
        update=make_update(cfg, nets),
        make_policy=make_policy,
        describe_policy=describe_policy,
    )
