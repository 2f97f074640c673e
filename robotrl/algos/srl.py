"""Sequence RL (SRL, Patel & Siegelmann 2024): one decision, J primitive actions, open loop.

The actor is a GRU that emits J primitive actions from one observation: an MLP encodes the
observation into the GRU's first hidden state, and each step's input is the previous primitive
(zeros for the first). The critic is SAC's, at the primitive time scale (``Q(s, a)`` for one env
step, trained on the buffer's transitions, any value head). A learned dynamics model (an MLP
predicting ``s' - s``) gives the actor's *temporal recall*: from a buffer state it predicts the
states the sequence passes through, so every primitive ``a_j`` is scored by the critic at its own
predicted state ``s_j`` instead of only the first one. The actor minimises
``mean_j [alpha log pi(a_j | s, a_<j) - Q(s_j, a_j)]`` with the predicted states held fixed (no
gradient through the model); the temperature targets the entropy of every primitive.

Acting, in training and at deployment, is open loop: the policy's carry holds the planned
sequence and its position; it plans from the observation every J steps and plays the plan in
between. No model runs at deployment. Everything else is SAC (``robotrl.algos.sac``: the soft
target uses the first primitive at ``s'``, the policy a fresh decision would take there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from robotrl.algos import sac
from robotrl.algos.common import apply_gradients, minibatches, scan_updates
from robotrl.nets import MLP
from robotrl.nets.actors import LOG_STD_MAX, LOG_STD_MIN, tanh_gaussian_sample
from robotrl.types import (
    Algorithm,
    EnvSpec,
    Metrics,
    Params,
    Policy,
    PRNGKey,
    Transition,
    actor_obs,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SRLConfig(sac.SACConfig):
    sequence_length: int = 4  # J primitive actions per decision
    gru_hidden: int = 128  # GRU state size
    model_hidden: tuple[int, ...] = (256, 256)  # dynamics model s, a -> s' - s
    model_lr: float = 1e-3
    recall: bool = True  # temporal recall; False scores every primitive at the decision state

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sequence_length < 1 or self.gru_hidden < 1:
            raise ValueError("sequence_length and gru_hidden must be positive")
        if self.privileged_critic:
            raise ValueError("recall predicts the actor's observation: no privileged_critic")


class SequenceActor(nn.Module):
    """``obs [..., O] -> (mean, log_std)`` of the first primitive (what SAC's target and a fresh
    decision use); ``sequence`` rolls the GRU over all J primitives."""

    hidden: Sequence[int]
    gru_hidden: int
    action_dim: int
    length: int
    activation: str = "relu"
    layer_norm: bool = False

    def setup(self) -> None:
        self.encoder = MLP(self.hidden, self.gru_hidden, self.activation, self.layer_norm)
        self.cell = nn.GRUCell(features=self.gru_hidden)
        init = nn.initializers.variance_scaling(0.01, "fan_avg", "uniform")
        self.head = nn.Dense(2 * self.action_dim, kernel_init=init)

    def _gaussian(self, out: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, log_std = jnp.split(self.head(out), 2, axis=-1)
        return mean, LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(log_std) + 1)

    def _first(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jnp.tanh(self.encoder(obs))
        return self.cell(h, jnp.zeros((*obs.shape[:-1], self.action_dim)))

    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self._gaussian(self._first(obs)[1])

    def sequence(self, obs: jax.Array, key: PRNGKey | None) -> tuple[jax.Array, jax.Array]:
        """``(actions [..., J, A] in [-1, 1], log pi [..., J])``; ``key`` None is the
        deterministic sequence (tanh of the means, each fed to the next step)."""
        h, out = self._first(obs)
        actions, logps = [], []
        keys = [None] * self.length if key is None else list(jax.random.split(key, self.length))
        for j in range(self.length):  # J is small and static: unrolled
            if j > 0:
                h, out = self.cell(h, actions[-1])
            mean, log_std = self._gaussian(out)
            if keys[j] is None:
                action, logp = jnp.tanh(mean), jnp.zeros(mean.shape[:-1])
            else:
                action, logp = tanh_gaussian_sample(mean, log_std, keys[j])
            actions.append(action)
            logps.append(logp)
        return jnp.stack(actions, axis=-2), jnp.stack(logps, axis=-1)


class SRLState(sac.SACState):
    model_params: Params
    model_opt_state: Any


class SRLNets(NamedTuple):
    sac: sac.SACNets  # SAC's nets with the sequence actor
    model: MLP
    model_opt: optax.GradientTransformation


def make_nets(cfg: SRLConfig, spec: EnvSpec) -> SRLNets:
    actor = SequenceActor(
        cfg.actor_hidden,
        cfg.gru_hidden,
        spec.action_dim,
        cfg.sequence_length,
        cfg.activation,
        cfg.actor_layer_norm,
    )
    return SRLNets(
        sac=sac.make_nets(cfg, spec)._replace(actor=actor),
        model=MLP(cfg.model_hidden, spec.obs_dim, cfg.activation),
        model_opt=optax.adam(cfg.model_lr),
    )


def predict(nets: SRLNets, params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
    """The model's next observation for ``action`` in ``[-1, 1]``."""
    return obs + nets.model.apply(params, jnp.concatenate([obs, action], axis=-1))


def init_state(key: PRNGKey, cfg: SRLConfig, spec: EnvSpec, nets: SRLNets) -> SRLState:
    k_sac, k_model = jax.random.split(key)
    base = sac.init_state(k_sac, cfg, spec, nets.sac)
    model_params = nets.model.init(k_model, jnp.zeros((1, spec.obs_dim + spec.action_dim)))
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return SRLState(
        **fields, model_params=model_params, model_opt_state=nets.model_opt.init(model_params)
    )


def model_loss(params: Params, batch: Transition, nets: SRLNets) -> jax.Array:
    obs, next_obs = actor_obs(batch.obs), actor_obs(batch.next_obs)
    action = nets.sac.scaler.from_env(batch.action)
    return jnp.square(predict(nets, params, obs, action) - next_obs).mean()


def recall_states(
    nets: SRLNets, model_params: Params, obs: jax.Array, actions: jax.Array, recall: bool
) -> jax.Array:
    """States at which each primitive is scored, ``[B, J, O]``: ``s_0 = obs``, then the
    model's predictions along ``actions [B, J, A]`` (all ``obs`` without recall); no gradient."""
    states = [obs]
    for j in range(actions.shape[-2] - 1):
        nxt = predict(nets, model_params, states[-1], actions[..., j, :]) if recall else obs
        states.append(nxt)
    return jax.lax.stop_gradient(jnp.stack(states, axis=-2))


def actor_loss(
    actor_params: Params,
    state: SRLState,
    batch: Transition,
    key: PRNGKey,
    cfg: SRLConfig,
    nets: SRLNets,
) -> tuple[jax.Array, tuple[Metrics, jax.Array]]:
    """``mean_j E[alpha log pi(a_j) - Q(s_j, a_j)]`` with temporal recall; ``log pi [B, J]``."""
    obs = actor_obs(batch.obs)
    actions, logp = nets.sac.actor.apply(actor_params, obs, key, method=SequenceActor.sequence)
    states = recall_states(
        nets, state.model_params, obs, jax.lax.stop_gradient(actions), cfg.recall
    )
    flat = lambda x: x.reshape(-1, x.shape[-1])
    q_all = sac.critic_values(nets.sac, state.critic_params, flat(states), flat(actions))
    q = q_all.min(axis=0) if cfg.actor_q_reduction == "min" else q_all.mean(axis=0)
    q = q.reshape(logp.shape)
    loss = (jnp.exp(state.log_temp) * logp - q).mean()
    metrics = {
        "actor_loss": loss,
        "entropy": -logp.mean(),
        "q_first": q[:, 0].mean(),
        "q_last": q[:, -1].mean(),
    }
    return loss, (metrics, logp)


def make_update(cfg: SRLConfig, nets: SRLNets):
    """``update(state, batch [utd * B], key)``: ``utd`` critic and model steps, then one
    actor (and temperature) step on the last minibatch."""

    def step(state: SRLState, inputs) -> tuple[SRLState, Metrics]:
        batch, key = inputs
        state, metrics = sac.critic_step(state, batch, key, cfg, nets.sac)
        loss, grads = jax.value_and_grad(model_loss)(state.model_params, batch, nets)
        params, opt_state = apply_gradients(
            nets.model_opt, state.model_params, state.model_opt_state, grads
        )
        state = state.replace(model_params=params, model_opt_state=opt_state)
        return state, {**metrics, "model_loss": loss}

    def update(state: SRLState, batch: Transition, key: PRNGKey) -> tuple[SRLState, Metrics]:
        k_critic, k_actor = jax.random.split(key)
        batches = minibatches(batch, cfg.utd)
        state, critic_metrics = scan_updates(
            step, state, (batches, jax.random.split(k_critic, cfg.utd))
        )
        last = jax.tree.map(lambda x: x[-1], batches)
        # SAC's actor and temperature step, with the loss over the recalled sequence.
        loss = lambda params, st, b, k, c, _: actor_loss(params, st, b, k, c, nets)
        state, metrics = sac.actor_step(state, last, k_actor, cfg, nets.sac, loss)
        metrics = {**critic_metrics, **metrics}
        return state.replace(step=state.step + 1), metrics

    return update


def make_policies(cfg: SRLConfig, nets: SRLNets, spec: EnvSpec) -> tuple[Policy, Policy]:
    """(stochastic, deterministic) open-loop sequence policies. The carry is the plan
    ``[*batch, J, A]`` (env units) and the position in it; a new plan every J steps."""
    length, dim = cfg.sequence_length, spec.action_dim

    def init_carry(batch_shape):
        return jnp.zeros((*batch_shape, length, dim)), jnp.zeros(batch_shape, jnp.int32)

    def make(stochastic: bool) -> Policy:
        def step(params, carry, obs, key):
            plan, position = carry
            fresh, _ = nets.sac.actor.apply(
                params, actor_obs(obs), key if stochastic else None, method=SequenceActor.sequence
            )
            replan = (position == 0)[..., None, None]
            plan = jnp.where(replan, nets.sac.scaler.to_env(fresh), plan)
            action = jnp.take_along_axis(plan, position[..., None, None], axis=-2)[..., 0, :]
            return action, (plan, (position + 1) % length), ()

        return Policy(init_carry, step)

    return make(True), make(False)


def make(cfg: SRLConfig, spec: EnvSpec) -> Algorithm:
    nets = make_nets(cfg, spec)
    stochastic, deterministic = make_policies(cfg, nets, spec)

    def make_policy(state: SRLState, deterministic_: bool) -> tuple[Policy, Params]:
        return (deterministic if deterministic_ else stochastic), state.actor_params

    return Algorithm(
        config=cfg,
        init=lambda key: init_state(key, cfg, spec, nets),
        update=make_update(cfg, nets),
        make_policy=make_policy,
    )
