"""Auto-Regressive Soft Q-learning, ARSQ (Liu et al., ICML 2025), and its factorised baseline.

Coarse-to-fine actions (CQN, Seo et al. 2024): each action dimension is chosen in ``levels``
steps of ``bins`` bins, level ``l`` splitting the interval chosen at level ``l - 1`` (the first
level splits ``[-1, 1]``), so an action is ``L x A`` sub-decisions and the resolution is
``range / bins^levels``. The action is the centre of the last interval.

ARSQ orders the sub-decisions level by level and, inside a level, dimension by dimension, and
writes the soft Q-function as a value plus one soft advantage per sub-decision, each
conditioned on every earlier one:

    Q(s, a) = V(s) + sum_{l, d} A_{l,d}(s, b_{l,d} | b_{<(l,d)}),
    A_{l,d}(s, .) = f_{l,d}(s, .) - alpha logsumexp(f_{l,d}(s, .) / alpha),

with ``f`` one network (the advantage net) that sees the observation, one-hots of the level and
of the dimension, and the centres of the intervals chosen so far (earlier dimensions at this
level, later ones at the previous level). The normalisation makes ``exp(A / alpha)`` the
auto-regressive soft-optimal policy, so ``V(s) = alpha log sum_a exp(Q(s, a) / alpha)`` and the
soft (entropy-regularised) backup needs no sum over the ``bins^(L A)`` joint actions:
``Q(s, a) -> y = r + gamma (1 - terminated) V_target(s')`` (squared error), with a polyak
target network. Acting samples ``softmax(f / alpha)`` per sub-decision; the deterministic
policy takes the argmax, a fixed loop of ``L x A`` evaluations of the advantage net (which is
also what the policy bundle and the C export run).

``factorized: true`` is CQN's decoupled Q (the baseline ARSQ improves on): each sub-decision has
its own Q over the same bins that sees only its own dimension's coarser interval, never the
other dimensions; every ``Q_{l,d}(s, b_{l,d})`` regresses on
``r + gamma (1 - terminated) alpha logsumexp(Q'_{l,d}(s', .) / alpha)`` along the online net's
greedy path at ``s'``. Such a Q averages each dimension over the others' actions in the data, so
a rare good joint action can lose to a common mediocre one (``sims/bandit``).

Shapes: B minibatch, L levels, A action dims, C bins per level, O obs dim, I = O + L + 2A the
advantage net's input ``[obs, level one-hot, dimension one-hot, interval centres]``.
Actions in batches are in env units; the discretisation works in ``[-1, 1]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from robotrl.algos import sac
from robotrl.algos.common import make_optimizer, minibatches, scan_updates
from robotrl.nets import MLP, ActionScaler, mlp_program
from robotrl.types import (
    Algorithm,
    EnvSpec,
    Metrics,
    Params,
    Policy,
    PRNGKey,
    Transition,
    actor_obs,
    no_carry,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ARSQConfig:
    levels: int = 3  # L coarse-to-fine levels per action dimension (CQN: 3)
    bins: int = 5  # C bins per level (CQN: 5); resolution = range / bins^levels
    factorized: bool = False  # True: CQN's per-dimension Q, no conditioning on other dims
    critic_hidden: tuple[int, ...] = (256, 256)  # hidden sizes of the advantage and value nets
    activation: str = "relu"
    critic_layer_norm: bool = True  # LayerNorm after each hidden layer (as CQN's critic)
    alpha: float = 0.01  # entropy temperature: soft backup, advantage normalisation, sampling
    batch_size: int = 256  # minibatch per gradient step
    utd: int = 1  # gradient steps per update call (the call consumes utd * batch_size)
    gamma: float = 0.99  # discount
    tau: float = 0.005  # polyak rate of the target network
    critic_lr: float = 3e-4
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    max_grad_norm: float | None = None  # global-norm gradient clipping

    def __post_init__(self) -> None:
        if self.levels < 1 or self.bins < 2:
            raise ValueError("levels must be >= 1 and bins >= 2")
        if not self.alpha > 0:
            raise ValueError("alpha must be positive")
        if self.utd < 1 or self.batch_size < 1:
            raise ValueError("utd and batch_size must be positive")


class ARSQState(flax.struct.PyTreeNode):
    critic_params: Params  # {"adv": advantage (or factorised Q) net, "value": V(s) (ARSQ)}
    target_critic_params: Params
    critic_opt_state: Any
    step: jax.Array  # update calls so far


class ARSQNets(NamedTuple):
    adv: MLP  # [..., I] -> [..., C]
    value: MLP  # [..., O] -> [..., 1]
    scaler: ActionScaler
    critic_opt: optax.GradientTransformation


# ---- the coarse-to-fine discretisation --------------------------------------------------------
def zoom(low: jax.Array, high: jax.Array, index: jax.Array, bins: int):
    """The ``index``-th of ``bins`` equal parts of ``[low, high]`` (any matching shapes).

    The width is a product with the float32 ``1 / bins`` (not a division), as in the numpy
    bundle and the C export (which agree to the bit; XLA may fuse the multiply-add, so JAX's
    intervals can differ from theirs in the last bit).
    """
    width = (high - low) * np.float32(1.0 / bins)
    low = low + width * index.astype(low.dtype)
    return low, low + width


def encode(action: jax.Array, levels: int, bins: int) -> jax.Array:
    """Bin indices ``[..., L, A]`` (int32) of actions ``[..., A]`` in ``[-1, 1]``."""
    low, high = -jnp.ones_like(action), jnp.ones_like(action)
    out = []
    for _ in range(levels):
        width = (high - low) * np.float32(1.0 / bins)
        index = jnp.clip(jnp.floor((action - low) / width), 0, bins - 1).astype(jnp.int32)
        out.append(index)
        low, high = zoom(low, high, index, bins)
    return jnp.stack(out, axis=-2)


def interval_centres(index: jax.Array, bins: int) -> jax.Array:
    """Centre of each dimension's interval after every level, ``[..., L, A]`` from ``[..., L, A]``
    indices; ``[..., -1, :]`` is the decoded action in ``[-1, 1]``."""
    low = -jnp.ones(index.shape[:-2] + index.shape[-1:], jnp.float32)
    high = -low
    out = []
    for level in range(index.shape[-2]):
        low, high = zoom(low, high, index[..., level, :], bins)
        out.append((low + high) / 2)
    return jnp.stack(out, axis=-2)


def decode(index: jax.Array, bins: int) -> jax.Array:
    """Actions ``[..., A]`` in ``[-1, 1]``: the centres of the finest intervals."""
    return interval_centres(index, bins)[..., -1, :]


def contexts(centres: jax.Array, factorized: bool) -> jax.Array:
    """What sub-decision ``(l, d)`` sees of the others, ``[..., L, A, A]`` from the centres after
    every level ``[..., L, A]``: dimension ``d' < d`` at level ``l``, ``d' >= d`` at level
    ``l - 1`` (0, the centre of ``[-1, 1]``, before the first level). Factorised: only ``d``'s
    own coarser centre, zeros elsewhere."""
    before = jnp.concatenate([jnp.zeros_like(centres[..., :1, :]), centres[..., :-1, :]], -2)
    dims = centres.shape[-1]
    shape = (*centres.shape[:-1], dims, dims)  # [..., L, d, d']
    before = jnp.broadcast_to(before[..., :, None, :], shape)
    if factorized:
        return before * jnp.broadcast_to(jnp.eye(dims, dtype=centres.dtype), shape)
    earlier = jnp.arange(dims)[None, :] < jnp.arange(dims)[:, None]  # [d, d']: d' < d
    now = jnp.broadcast_to(centres[..., :, None, :], shape)
    return jnp.where(jnp.broadcast_to(earlier, shape), now, before)


def net_input(obs: jax.Array, ctx: jax.Array) -> jax.Array:
    """``[obs, level one-hot, dimension one-hot, context]`` for every sub-decision: obs
    ``[..., O]`` and contexts ``[..., L, A, A]`` -> ``[..., L, A, I]``."""
    levels, dims = ctx.shape[-3], ctx.shape[-2]
    lead = ctx.shape[:-3]
    shape = (*lead, levels, dims)
    parts = [
        jnp.broadcast_to(obs[..., None, None, :], (*shape, obs.shape[-1])),
        jnp.broadcast_to(jnp.eye(levels)[:, None, :], (*shape, levels)),
        jnp.broadcast_to(jnp.eye(dims)[None, :, :], (*shape, dims)),
        ctx,
    ]
    return jnp.concatenate(parts, axis=-1)


def input_dim(spec: EnvSpec, levels: int) -> int:
    """I = O + L + 2A."""
    return spec.obs_dim + levels + 2 * spec.action_dim


# ---- networks, state ---------------------------------------------------------------------------
def make_nets(cfg: ARSQConfig, spec: EnvSpec) -> ARSQNets:
    # A zero last layer (as CQN): the first policy is uniform over the bins.
    adv = MLP(cfg.critic_hidden, cfg.bins, cfg.activation, cfg.critic_layer_norm, out_scale=0.0)
    return ARSQNets(
        adv=adv,
        value=MLP(cfg.critic_hidden, 1, cfg.activation, cfg.critic_layer_norm),
        scaler=ActionScaler.from_bounds(spec.action_low, spec.action_high),
        critic_opt=make_optimizer(cfg.critic_lr, cfg.weight_decay, cfg.max_grad_norm),
    )


def init_state(key: PRNGKey, cfg: ARSQConfig, spec: EnvSpec, nets: ARSQNets) -> ARSQState:
    k_adv, k_value = jax.random.split(key)
    params = {"adv": nets.adv.init(k_adv, jnp.zeros((1, input_dim(spec, cfg.levels))))}
    if not cfg.factorized:
        params["value"] = nets.value.init(k_value, jnp.zeros((1, spec.obs_dim)))
    return ARSQState(
        critic_params=params,
        # A copy, not the same arrays: a donated update must not receive one buffer twice.
        target_critic_params=jax.tree.map(jnp.copy, params),
        critic_opt_state=nets.critic_opt.init(params),
        step=jnp.zeros((), jnp.int32),
    )


def soft_normalize(logits: jax.Array, alpha: float) -> jax.Array:
    """``A = f - alpha logsumexp(f / alpha)`` over the bins: ``sum_b exp(A_b / alpha) = 1``."""
    return logits - alpha * jax.nn.logsumexp(logits / alpha, axis=-1, keepdims=True)


def bin_logits(
    nets: ARSQNets, params: Params, obs: jax.Array, index: jax.Array, cfg: ARSQConfig
) -> jax.Array:
    """The advantage net's output ``f [..., L, A, C]`` at every sub-decision of the actions whose
    bins are ``index [..., L, A]`` (teacher forcing: one batched call, no loop)."""
    ctx = contexts(interval_centres(index, cfg.bins), cfg.factorized)
    return nets.adv.apply(params["adv"], net_input(obs, ctx))


def _taken(values: jax.Array, index: jax.Array) -> jax.Array:
    """``values [..., C]`` at ``index [...]``."""
    return jnp.take_along_axis(values, index[..., None], axis=-1)[..., 0]


def soft_q(
    nets: ARSQNets, params: Params, obs: jax.Array, index: jax.Array, cfg: ARSQConfig
) -> tuple[jax.Array, jax.Array]:
    """ARSQ's ``Q(s, a) = V(s) + sum_{l,d} A_{l,d}`` ``[B]``, and ``f [B, L, A, C]``."""
    logits = bin_logits(nets, params, obs, index, cfg)
    adv = _taken(soft_normalize(logits, cfg.alpha), index)  # [B, L, A]
    value = nets.value.apply(params["value"], obs)[..., 0]
    return value + adv.sum(axis=(-2, -1)), logits


# ---- acting ------------------------------------------------------------------------------------
def choose(
    nets: ARSQNets,
    params: Params,
    obs: jax.Array,
    key: PRNGKey,
    cfg: ARSQConfig,
    action_dim: int,
    greedy: bool,
) -> tuple[jax.Array, jax.Array]:
    """The auto-regressive decision for obs ``[..., O]``: ``(action [..., A] in [-1, 1], bins
    [..., L, A])``. A scan over the ``L x A`` sub-decisions, level-major; each samples
    ``softmax(f / alpha)`` (or takes the argmax when ``greedy``) and zooms into its bin."""
    lead = obs.shape[:-1]
    levels, dims = cfg.levels, action_dim

    def step(carry, inp):
        low, high, centre = carry
        level, dim, sub = inp
        dim_hot = jnp.broadcast_to(jax.nn.one_hot(dim, dims), (*lead, dims))
        ctx = centre * dim_hot if cfg.factorized else centre
        x = jnp.concatenate(
            [
                obs,
                jnp.broadcast_to(jax.nn.one_hot(level, levels), (*lead, levels)),
                dim_hot,
                ctx,
            ],
            axis=-1,
        )
        logits = nets.adv.apply(params["adv"], x)
        if greedy:
            index = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        else:
            index = jax.random.categorical(sub, logits / cfg.alpha, axis=-1).astype(jnp.int32)
        new_low, new_high = zoom(low[..., dim], high[..., dim], index, cfg.bins)
        low = low.at[..., dim].set(new_low)
        high = high.at[..., dim].set(new_high)
        centre = centre.at[..., dim].set((new_low + new_high) / 2)
        return (low, high, centre), index

    count = levels * dims
    inputs = (
        jnp.arange(count) // dims,
        jnp.arange(count) % dims,
        jax.random.split(key, count),
    )
    start = (-jnp.ones((*lead, dims)), jnp.ones((*lead, dims)), jnp.zeros((*lead, dims)))
    (_, _, centre), index = jax.lax.scan(step, start, inputs)  # index [L * A, ...]
    index = jnp.moveaxis(index.reshape(levels, dims, *lead), (0, 1), (-2, -1))
    return centre, index


# ---- losses ------------------------------------------------------------------------------------
def soft_target(
    state: ARSQState, batch: Transition, key: PRNGKey, cfg: ARSQConfig, nets: ARSQNets
) -> jax.Array:
    """The soft TD target: ``[B]`` (ARSQ, ``r + gamma (1 - terminated) V_target(s')``) or
    ``[B, L, A]`` (factorised: per sub-decision, ``alpha logsumexp(Q'_{l,d} / alpha)`` along the
    online net's greedy path at ``s'``)."""
    next_obs = actor_obs(batch.next_obs)
    keep = cfg.gamma * (1.0 - batch.terminated.astype(jnp.float32))
    if not cfg.factorized:
        next_v = nets.value.apply(state.target_critic_params["value"], next_obs)[..., 0]
        return jax.lax.stop_gradient(batch.reward + keep * next_v)
    dims = batch.action.shape[-1]
    _, index = choose(nets, state.critic_params, next_obs, key, cfg, dims, greedy=True)
    logits = bin_logits(nets, state.target_critic_params, next_obs, index, cfg)
    next_v = cfg.alpha * jax.nn.logsumexp(logits / cfg.alpha, axis=-1)  # [B, L, A]
    return jax.lax.stop_gradient(batch.reward[:, None, None] + keep[:, None, None] * next_v)


def _entropy(logits: jax.Array, alpha: float) -> jax.Array:
    """Mean entropy (nats) of the per-sub-decision policies ``softmax(f / alpha)``."""
    logp = jax.nn.log_softmax(logits / alpha, axis=-1)
    return -(jnp.exp(logp) * logp).sum(-1).mean()


def critic_loss(
    params: Params,
    state: ARSQState,
    batch: Transition,
    key: PRNGKey,
    cfg: ARSQConfig,
    nets: ARSQNets,
) -> tuple[jax.Array, Metrics]:
    """Squared soft TD error: of ``Q(s, a)`` (ARSQ) or of every ``Q_{l,d}`` (factorised)."""
    target = soft_target(state, batch, key, cfg, nets)
    obs = actor_obs(batch.obs)
    index = encode(nets.scaler.from_env(batch.action), cfg.levels, cfg.bins)
    if cfg.factorized:
        logits = bin_logits(nets, params, obs, index, cfg)
        q = _taken(logits, index)  # [B, L, A]
    else:
        q, logits = soft_q(nets, params, obs, index, cfg)
    loss = 0.5 * ((q - target) ** 2).mean()
    return loss, {
        "critic_loss": loss,
        "q_mean": q.mean(),
        "target_mean": target.mean(),
        "entropy": _entropy(logits, cfg.alpha),
    }


def make_update(cfg: ARSQConfig, nets: ARSQNets):
    """``update(state, batch [utd * B], key)``: ``utd`` gradient steps in a ``lax.scan``."""

    def update(state: ARSQState, batch: Transition, key: PRNGKey) -> tuple[ARSQState, Metrics]:
        batches = minibatches(batch, cfg.utd)
        keys = jax.random.split(key, cfg.utd)
        # SAC's critic step (gradient, optimiser, polyak target) with ARSQ's loss.
        step = lambda st, inp: sac.critic_step(st, inp[0], inp[1], cfg, nets, critic_loss)
        state, metrics = scan_updates(step, state, (batches, keys))
        return state.replace(step=state.step + 1), metrics

    return update


def make_policies(cfg: ARSQConfig, nets: ARSQNets, action_dim: int) -> tuple[Policy, Policy]:
    """(stochastic, deterministic) policies in env units; params are the critic's."""

    def act(greedy: bool):
        def step(params, carry, obs, key):
            unit, _ = choose(nets, params, actor_obs(obs), key, cfg, action_dim, greedy)
            return nets.scaler.to_env(unit), carry, ()

        return Policy(no_carry, step)

    return act(False), act(True)


def make(cfg: ARSQConfig, spec: EnvSpec) -> Algorithm:
    """The ARSQ (or factorised) algorithm bundle for one env spec."""
    nets = make_nets(cfg, spec)
    stochastic, deterministic = make_policies(cfg, nets, spec.action_dim)

    def make_policy(state: ARSQState, deterministic_: bool) -> tuple[Policy, Params]:
        return (deterministic if deterministic_ else stochastic), state.critic_params

    def describe_policy(state: ARSQState) -> tuple[dict, dict]:
        """The greedy policy as an ``arsq`` program over the advantage net's layers (see
        ``policies.arsq``): the network input is ``[obs, level, dimension, centres]``."""
        adv = state.critic_params["adv"]["params"]
        program, arrays = mlp_program(
            adv, cfg.activation, cfg.critic_layer_norm, head="clip", prefix="adv"
        )
        program["program"] = "arsq"
        program["arsq"] = {"levels": cfg.levels, "bins": cfg.bins, "factorized": cfg.factorized}
        return program, arrays

    return Algorithm(
        config=cfg,
        init=lambda key: init_state(key, cfg, spec, nets),
        update=make_update(cfg, nets),
        make_policy=make_policy,
        describe_policy=describe_policy,
    )
