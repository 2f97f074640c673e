"""Twin Delayed DDPG (Fujimoto et al. 2018).

Objective: critics regress (or classify, see ``robotrl.nets.heads``) toward
``y = r + gamma (1 - terminated) min_i Q'_i(s', clip(mu'(s') + clip(eps, -c, c), -1, 1))`` with
``eps ~ N(0, policy_noise^2)`` (target policy smoothing). Every ``policy_delay`` critic steps the
deterministic actor ascends ``Q_1(s, mu(s))`` and the target actor and critics move by polyak
averaging. Exploration adds Gaussian noise of ``exploration_noise`` to the actor's action.

Shapes: B minibatch, N critics, M value-head outputs, A action dim.
Actions in batches are in env units; networks work in ``[-1, 1]``.
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
    DeterministicActor,
    ValueHead,
    ValueHeadConfig,
    mlp_program,
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
class TD3Config:
    actor_hidden: tuple[int, ...] = (256, 256)  # hidden layer sizes of the actor
    critic_hidden: tuple[int, ...] = (256, 256)  # hidden layer sizes of each critic
    activation: str = "relu"  # hidden activation of both (Learning to Fly: tanh)
    actor_layer_norm: bool = False
    critic_layer_norm: bool = False
    num_critics: int = 2  # the target takes the min over all of them
    batch_size: int = 256  # minibatch per gradient step
    utd: int = 1  # critic gradient steps per update call
    gamma: float = 0.99
    tau: float = 0.005  # polyak rate of target actor and critics
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    policy_noise: float = 0.2  # target smoothing noise std, in normalised action units
    noise_clip: float = 0.5  # target smoothing noise clip
    exploration_noise: float = 0.1  # behaviour noise std, normalised action units
    policy_delay: int = 2  # critic steps per actor (and target) step
    weight_decay: float = 0.0  # AdamW decoupled weight decay (Learning to Fly: 1e-4)
    max_grad_norm: float | None = None
    critic: ValueHeadConfig = ValueHeadConfig()  # mse | hl_gauss | two_hot
    privileged_critic: bool = False  # critic reads obs["privileged_state"] (asymmetric AC)

    def __post_init__(self) -> None:
        if self.num_critics < 1 or self.policy_delay < 1 or self.utd < 1:
            raise ValueError("num_critics, policy_delay and utd must be positive")


class TD3State(flax.struct.PyTreeNode):
    actor_params: Params
    target_actor_params: Params
    critic_params: Params
    target_critic_params: Params
    actor_opt_state: Any
    critic_opt_state: Any
    critic_steps: jax.Array  # critic gradient steps so far (drives the policy delay)
    step: jax.Array  # update calls so far


class TD3Nets(NamedTuple):
    actor: DeterministicActor
    critic: CriticEnsemble
    head: ValueHead
    scaler: ActionScaler
    actor_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation


def make_nets(cfg: TD3Config, spec: EnvSpec) -> TD3Nets:
    critic, head = make_critic(cfg, spec)
    return TD3Nets(
        actor=DeterministicActor(
            cfg.actor_hidden, spec.action_dim, cfg.activation, cfg.actor_layer_norm
        ),
        critic=critic,
        head=head,
        scaler=ActionScaler.from_bounds(spec.action_low, spec.action_high),
        actor_opt=make_optimizer(cfg.actor_lr, cfg.weight_decay, cfg.max_grad_norm),
        critic_opt=make_optimizer(cfg.critic_lr, cfg.weight_decay, cfg.max_grad_norm),
    )


def init_state(key: PRNGKey, cfg: TD3Config, spec: EnvSpec, nets: TD3Nets) -> TD3State:
    k_actor, k_critic = jax.random.split(key)
    obs, cobs, act = example_inputs(spec, cfg.privileged_critic)
    actor_params = nets.actor.init(k_actor, obs)
    critic_params = nets.critic.init(k_critic, cobs, act)
    return TD3State(
        actor_params=actor_params,
        # Copies, not the same arrays: a donated update must not receive one buffer twice.
        target_actor_params=jax.tree.map(jnp.copy, actor_params),
        critic_params=critic_params,
        target_critic_params=jax.tree.map(jnp.copy, critic_params),
        actor_opt_state=nets.actor_opt.init(actor_params),
        critic_opt_state=nets.critic_opt.init(critic_params),
        critic_steps=jnp.zeros((), jnp.int32),
        step=jnp.zeros((), jnp.int32),
    )


def critic_loss(
    critic_params: Params,
    state: TD3State,
    batch: Transition,
    key: PRNGKey,
    cfg: TD3Config,
    nets: TD3Nets,
) -> tuple[jax.Array, Metrics]:
    """Head loss of every critic against the clipped double-Q target with smoothed actions."""
    next_action = nets.actor.apply(state.target_actor_params, actor_obs(batch.next_obs))
    noise = jnp.clip(
        cfg.policy_noise * jax.random.normal(key, next_action.shape),
        -cfg.noise_clip,
        cfg.noise_clip,
    )
    next_action = jnp.clip(next_action + noise, -1.0, 1.0)
    next_obs = critic_obs(batch.next_obs, cfg.privileged_critic)
    next_q = nets.head.value(nets.critic.apply(state.target_critic_params, next_obs, next_action))
    target = td_target(batch.reward, batch.terminated, next_q.min(axis=0), cfg.gamma)
    target = jax.lax.stop_gradient(target)
    obs = critic_obs(batch.obs, cfg.privileged_critic)
    action = nets.scaler.from_env(batch.action)
    return fit_critics(nets.critic, nets.head, critic_params, obs, action, target)


def actor_loss(
    actor_params: Params, state: TD3State, batch: Transition, cfg: TD3Config, nets: TD3Nets
) -> tuple[jax.Array, Metrics]:
    """``-Q_1(s, mu(s))``: the deterministic policy gradient through the first critic."""
    action = nets.actor.apply(actor_params, actor_obs(batch.obs))
    obs = critic_obs(batch.obs, cfg.privileged_critic)
    q = nets.head.value(nets.critic.apply(state.critic_params, obs, action))[0]
    loss = -q.mean()
    return loss, {"actor_loss": loss}


def _actor_and_targets(
    state: TD3State, batch: Transition, cfg: TD3Config, nets: TD3Nets
) -> tuple[TD3State, Metrics]:
    grads, metrics = jax.grad(actor_loss, has_aux=True)(state.actor_params, state, batch, cfg, nets)
    actor_params, opt_state = apply_gradients(
        nets.actor_opt, state.actor_params, state.actor_opt_state, grads
    )
    state = state.replace(
        actor_params=actor_params,
        actor_opt_state=opt_state,
        target_actor_params=polyak(state.target_actor_params, actor_params, cfg.tau),
        target_critic_params=polyak(state.target_critic_params, state.critic_params, cfg.tau),
    )
    return state, metrics


def make_update(cfg: TD3Config, nets: TD3Nets):
    """``update(state, batch [utd * B], key)``: ``utd`` critic steps, each followed by the delayed
    actor/target step when its turn has come."""

    def gradient_step(state: TD3State, inp) -> tuple[TD3State, Metrics]:
        batch, key = inp
        grads, metrics = jax.grad(critic_loss, has_aux=True)(
            state.critic_params, state, batch, key, cfg, nets
        )
        params, opt_state = apply_gradients(
            nets.critic_opt, state.critic_params, state.critic_opt_state, grads
        )
        state = state.replace(
            critic_params=params, critic_opt_state=opt_state, critic_steps=state.critic_steps + 1
        )
        # Off-turn steps still report the actor objective (a forward pass), so metrics stay
        # comparable from call to call.
        skip = lambda st, b: (st, actor_loss(st.actor_params, st, b, cfg, nets)[1])
        run_actor = state.critic_steps % cfg.policy_delay == 0
        state, actor_metrics = jax.lax.cond(
            run_actor, lambda st, b: _actor_and_targets(st, b, cfg, nets), skip, state, batch
        )
        return state, {**metrics, **actor_metrics}

    def update(state: TD3State, batch: Transition, key: PRNGKey) -> tuple[TD3State, Metrics]:
        keys = jax.random.split(key, cfg.utd)
        state, metrics = scan_updates(gradient_step, state, (minibatches(batch, cfg.utd), keys))
        return state.replace(step=state.step + 1), metrics

    return update


def make_policies(cfg: TD3Config, nets: TD3Nets) -> tuple[Policy, Policy]:
    """(exploring, deterministic) policies acting in env units; params are the actor's."""

    def exploring(params, carry, obs, key):
        action = nets.actor.apply(params, actor_obs(obs))
        action = action + cfg.exploration_noise * jax.random.normal(key, action.shape)
        return nets.scaler.to_env(jnp.clip(action, -1.0, 1.0)), carry, ()

    def deterministic(params, carry, obs, key):
        return nets.scaler.to_env(nets.actor.apply(params, actor_obs(obs))), carry, ()

    return Policy(no_carry, exploring), Policy(no_carry, deterministic)


def make(cfg: TD3Config, spec: EnvSpec) -> Algorithm:
    """The TD3 algorithm bundle for one env spec."""
    nets = make_nets(cfg, spec)
    exploring, deterministic = make_policies(cfg, nets)

    def make_policy(state: TD3State, deterministic_: bool) -> tuple[Policy, Params]:
        return (deterministic if deterministic_ else exploring), state.actor_params

    def describe_policy(state: TD3State) -> tuple[dict, dict]:
        mlp = state.actor_params["params"]["MLP_0"]
        return mlp_program(mlp, cfg.activation, cfg.actor_layer_norm, head="tanh")

    return Algorithm(
        config=cfg,
        init=lambda key: init_state(key, cfg, spec, nets),
        update=make_update(cfg, nets),
        make_policy=make_policy,
        describe_policy=describe_policy,
    )
