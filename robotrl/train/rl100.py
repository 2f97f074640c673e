"""RL-100 (Lei et al. 2025): diffusion policy imitation, improvement by RL, one-step distillation.

Stages, each a function over pure pieces (``policies/diffusion``, ``robotrl/algos``):

1. ``imitate``: the DDPM loss on demonstrations (``policies.diffusion.data`` windows), an EMA of
   the weights acting.
2. Offline improvement and 3. online RL: PPO over the denoising steps (see ``robotrl/algos``).
4. Consistency distillation to a one-step policy.

``rollout`` runs any chunked policy in a functional env, batched over episodes, with receding
horizon control: every ``action_steps`` env steps the policy sees its last ``To`` observations
and emits a chunk of ``H`` actions, of which the first ``action_steps`` are executed. Episodes
that end stop stepping (the env state is frozen), so one scan covers a fixed number of
decisions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from policies.bundle import PolicyBundle
from policies.diffusion import data as demo_data
from policies.diffusion import numpy_policy
from policies.diffusion.network import random_shift
from policies.diffusion.policy import DiffusionPolicy, DiffusionState, Normalizer
from robotrl.algos import diffusion_ppo, iql
from robotrl.algos.dynamics import Dynamics, DynamicsConfig, DynamicsState
from robotrl.algos.ppo import gae
from robotrl.nets.mlp import MLP
from robotrl.types import ArraySpec, EnvSpec, PRNGKey, Transition

# act(obs_history, key) -> (chunk [B, H, A], extras pytree [B, ...]); obs_history: dict [B, To, ...]
ActFn = Callable[[dict, PRNGKey], tuple[jax.Array, Any]]


class Rollout(NamedTuple):
    """Per decision ``D``: ``obs`` dict ``[B, D, To, ...]`` seen, ``chunks [B, D, H, A]``,
    ``extras`` (the act function's), ``rewards [B, D, action_steps]`` (0 after the end),
    ``alive [B, D]`` (the episode was running at the decision), ``done [B, D]`` (it ended
    during the decision by termination); per episode ``success``, ``returns``, ``length``."""

    obs: dict
    chunks: jax.Array
    extras: Any
    rewards: jax.Array
    alive: jax.Array
    terminated: jax.Array
    success: jax.Array
    returns: jax.Array
    length: jax.Array
    final_obs: dict


def _as_dict(obs) -> dict:
    return obs if isinstance(obs, dict) else {"state": obs}


def rollout(
    env: Any,
    act: ActFn,
    key: PRNGKey,
    num_episodes: int,
    obs_horizon: int,
    action_steps: int,
    num_decisions: int | None = None,
    params: Any = None,
) -> Rollout:
    """Runs ``num_episodes`` episodes of ``env`` (unbatched functional env) under ``act``.

    ``num_decisions`` defaults to enough for the env's episode length; success is the env's
    ``metrics["success"]`` at any step.
    """
    length = env.spec.episode_length
    decisions = num_decisions or math.ceil(length / action_steps)
    k_reset, k_act = jax.random.split(key)

    def start(k):
        state = env.reset(k, params)
        hist = jax.tree.map(lambda o: jnp.repeat(o[None], obs_horizon, axis=0), _as_dict(state.obs))
        return state, hist

    states, hist = jax.vmap(start)(jax.random.split(k_reset, num_episodes))
    zeros = jnp.zeros((num_episodes,))
    carry0 = (states, hist, jnp.ones((num_episodes,), bool), zeros, zeros, zeros.astype(bool))

    def env_step(carry, action):
        state, hist, alive, ret, steps, success = carry

        def one(s, a, h, live):
            new = env.step(s, a)
            new = jax.tree.map(lambda x, y: jnp.where(live, y, x), s, new)
            obs = _as_dict(new.obs)
            h_new = jax.tree.map(lambda hh, o: jnp.concatenate([hh[1:], o[None]], 0), h, obs)
            h_new = jax.tree.map(lambda x, y: jnp.where(live, y, x), h, h_new)
            return new, h_new

        new, hist = jax.vmap(one)(state, action, hist, alive)
        running = alive & (steps < length)
        reward = jnp.where(running, new.reward, 0.0)
        success = success | (running & (new.metrics["success"] > 0))
        steps = steps + running
        ended = running & (new.terminated | (steps >= length))
        alive = alive & ~ended
        term = running & new.terminated
        return (new, hist, alive, ret + reward, steps, success), (reward, term)

    def decide(carry, k):
        hist, alive = carry[1], carry[2]
        chunk, extras = act(hist, k)
        executed = jnp.swapaxes(chunk[:, :action_steps], 0, 1)  # [action_steps, B, A]
        carry_new, (rewards, term) = jax.lax.scan(env_step, carry, executed)
        out = (hist, chunk, extras, rewards.T, alive, jnp.any(term, axis=0))
        return carry_new, out

    carry, (obs, chunks, extras, rewards, alive, term) = jax.lax.scan(
        decide, carry0, jax.random.split(k_act, decisions)
    )
    _, final_hist, _, returns, steps, success = carry
    swap = lambda x: jnp.swapaxes(x, 0, 1)
    return Rollout(
        obs=jax.tree.map(swap, obs),
        chunks=swap(chunks),
        extras=jax.tree.map(swap, extras),
        rewards=swap(rewards),
        alive=swap(alive),
        terminated=swap(term),
        success=success,
        returns=returns,
        length=steps,
        final_obs=final_hist,
    )


def policy_act(
    policy: DiffusionPolicy,
    params: Any,
    norm: Normalizer,
    one_step: bool = False,
    zero_noise: bool = False,
):
    """The ``ActFn`` of a parameter set: the K-step DDIM policy (eta = 0), or the distilled
    student's one-step map; from noise draws, or from zero noise (``zero_noise``: the policy a
    bundle holds). Call it inside a traced function that takes ``params`` as an argument, so
    one compilation serves every parameter set."""
    sample = policy.sample_one_step if one_step else policy.sample
    return lambda hist, k: (sample(params, norm, hist, k, zero_noise), ())


def make_evaluator(
    env: Any,
    policy: DiffusionPolicy,
    num_episodes: int,
    one_step: bool = False,
    zero_noise: bool = False,
):
    """``evaluate(params, norm, key) -> {"success", "return", "length"}`` (means over
    ``num_episodes``), compiled once for any parameters of this policy."""
    cfg = policy.cfg

    @jax.jit
    def run(params, norm, key):
        act = policy_act(policy, params, norm, one_step, zero_noise)
        out = rollout(env, act, key, num_episodes, cfg.obs_horizon, cfg.action_steps)
        return {
            "success": jnp.mean(out.success),
            "return": jnp.mean(out.returns),
            "length": jnp.mean(out.length),
        }

    return lambda params, norm, key: {k: float(v) for k, v in run(params, norm, key).items()}


def evaluate(
    env: Any, policy: DiffusionPolicy, state: DiffusionState, key: PRNGKey, num_episodes: int
) -> dict[str, float]:
    """Success rate, mean return and mean length of the deterministic policy (EMA weights).
    One call compiles; ``make_evaluator`` for repeated evaluations."""
    return make_evaluator(env, policy, num_episodes)(state.ema_params, state.norm, key)


def imitate(
    policy: DiffusionPolicy,
    state: DiffusionState,
    demos: demo_data.Demos,
    key: PRNGKey,
    steps: int,
    log_every: int = 1000,
    on_log: Callable[[int, dict], None] | None = None,
    host_loop: bool | None = None,
) -> DiffusionState:
    """``steps`` DDPM updates on minibatches of demonstration windows (``log_every`` per call).

    The updates of a call run in one ``lax.scan``, or with ``host_loop`` each as its own jitted
    call. ``None`` picks the host loop for the image encoder on a CPU: XLA's CPU backend runs
    convolutions inside a loop about 20 times slower than at top level (measured: 5.3 s against
    0.25 s per update at batch 64)."""
    cfg = policy.cfg

    def one(state, k, demos):
        k_batch, k_loss = jax.random.split(k)
        obs, actions = demo_data.sample(
            demos, k_batch, cfg.batch_size, cfg.obs_horizon, cfg.horizon
        )
        return policy.update(state, obs, actions, k_loss)

    if host_loop is None:  # features of a frozen trunk (``frame_demos``) need no convolutions
        pixels = "pixels" in demos.obs
        host_loop = cfg.encoder == "image" and pixels and jax.default_backend() == "cpu"
    if host_loop:
        update = jax.jit(one)

        def chunk(state, key, demos):
            rows = []
            for k in jax.random.split(key, log_every):
                state, metrics = update(state, k, demos)
                rows.append(metrics)
            return state, jax.tree.map(lambda *m: jnp.mean(jnp.stack(m)), *rows)

    else:

        @jax.jit
        def chunk(state, key, demos):
            scan = lambda s, k: one(s, k, demos)
            state, metrics = jax.lax.scan(scan, state, jax.random.split(key, log_every))
            return state, jax.tree.map(jnp.mean, metrics)

    if steps % log_every:
        raise ValueError(f"steps ({steps}) must be a multiple of log_every ({log_every})")
    start = time.perf_counter()
    for done in range(log_every, steps + 1, log_every):
        key, sub = jax.random.split(key)
        state, metrics = chunk(state, sub, demos)
        if on_log is not None:
            row = {k: float(v) for k, v in metrics.items()}
            on_log(done, {**row, "timing/elapsed_s": time.perf_counter() - start})
    return state


# --- privileged state supervision of the image encoder ----------------------------------------
# The simulator knows the state of every rendered demonstration frame; the policy that acts sees
# only the image and the proprioception. Trained through the diffusion loss alone the CNN needs a
# GPU's budget (0.00 success after 8k updates at batch 64 on two CPU cores), so
# ``pretrain_encoder`` first trains the CNN trunk to regress the state from the images (a linear
# read-out, discarded afterwards); imitation then keeps the trunk frozen
# (``DiffusionConfig.freeze_encoder``) and trains the rest on its features of every frame,
# computed once (``frame_demos``), at the state policy's speed.


def state_targets(norm: Normalizer, states: jax.Array, angles: tuple[int, ...]) -> jax.Array:
    """``[..., O] -> [..., O + len(angles)]``: the normalised state, its ``angles`` entries as
    (sin, cos) at the end instead: an angle wraps, 0 and 2 pi are one pose."""
    rest = [i for i in range(states.shape[-1]) if i not in angles]
    idx = jnp.asarray(angles, jnp.int32)
    trig = [jnp.sin(states[..., idx]), jnp.cos(states[..., idx])]
    return jnp.concatenate([norm.state(states)[..., rest], *trig], axis=-1)


def decode_state(norm: Normalizer, targets: jax.Array, angles: tuple[int, ...]) -> jax.Array:
    """The inverse of ``state_targets``: states ``[..., O]``, angles in [0, 2 pi)."""
    dim = targets.shape[-1] - len(angles)
    rest = [i for i in range(dim) if i not in angles]
    full = jnp.zeros((*targets.shape[:-1], dim)).at[..., rest].set(targets[..., : len(rest)])
    sin, cos = jnp.split(targets[..., len(rest) :], 2, axis=-1)
    angle = jnp.mod(jnp.arctan2(sin, cos), 2 * jnp.pi)
    return norm.unstate(full).at[..., jnp.asarray(angles, jnp.int32)].set(angle)


@functools.partial(jax.jit, static_argnums=0)
def _frame_features(policy: DiffusionPolicy, params: Any, pixels: jax.Array) -> jax.Array:
    return policy.frame_features(params, pixels[:, None])[:, 0]


def _trunk_features(
    policy: DiffusionPolicy, params: Any, pixels: jax.Array, batch: int = 256
) -> jax.Array:
    """The image trunk's features ``[S, F]`` of frames ``pixels [S, H, W, 3]``, a jitted call
    per ``batch`` frames (the last one padded, so one compilation)."""
    out = []
    for start in range(0, pixels.shape[0], batch):
        chunk = pixels[start : start + batch]
        pad = batch - chunk.shape[0]
        padded = jnp.concatenate([chunk, jnp.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        out.append(_frame_features(policy, params, padded)[: chunk.shape[0]])
    return jnp.concatenate(out)


def predict_state(
    policy: DiffusionPolicy,
    params: Any,
    head: dict,
    norm: Normalizer,
    pixels: jax.Array,
    angles: tuple[int, ...],
) -> jax.Array:
    """The state ``[S, O]`` the pretrained trunk and its read-out ``head`` see in frames
    ``pixels [S, H, W, 3]`` (to measure ``pretrain_encoder`` on held-out episodes)."""
    feats = _trunk_features(policy, params, pixels)
    return decode_state(norm, feats @ head["w"] + head["b"][None], angles)


def pretrain_encoder(
    policy: DiffusionPolicy,
    state: DiffusionState,
    demos: demo_data.Demos,
    key: PRNGKey,
    steps: int,
    angles: tuple[int, ...] = (),
    batch_size: int = 64,
    log_every: int = 500,
    on_log: Callable[[int, dict], None] | None = None,
) -> tuple[DiffusionState, dict]:
    """Privileged state supervision: ``steps`` Adam updates (``cfg.lr``, ``batch_size``
    frames, random shift if ``cfg.augment``) of the image trunk and a linear read-out ``head``
    on the squared error to ``state_targets`` of each frame's state.

    Each update is its own jitted call (convolutions in a loop are slow on a CPU). Returns the
    state with the trained trunk in ``params`` and ``ema_params`` (a fresh optimiser state) and
    the head ``{"w": [F, D], "b": [D]}``, which the policy never uses: it only measures.
    """
    cfg = policy.cfg
    if cfg.encoder != "image":
        raise ValueError("pretrain_encoder trains an image encoder: needs encoder='image'")
    targets = state_targets(state.norm, demos.obs["state"], angles)  # [S, D]
    k_head, key = jax.random.split(key)
    feats = policy.frame_features(state.params, demos.obs["pixels"][:1, None])
    w = jax.random.normal(k_head, (feats.shape[-1], targets.shape[-1])) / feats.shape[-1] ** 0.5
    params = {"encoder": state.params["encoder"], "head": {"w": w, "b": jnp.zeros(w.shape[1])}}
    opt = optax.adam(cfg.lr)

    def loss(params, pixels, target, k):
        if cfg.augment:
            pixels = random_shift(k, pixels)
        feats = policy.frame_features({"encoder": params["encoder"]}, pixels)[:, 0]
        return jnp.mean((feats @ params["head"]["w"] + params["head"]["b"][None] - target) ** 2)

    @jax.jit
    def update(params, opt_state, k, pixels, targets):
        k_idx, k_aug = jax.random.split(k)
        idx = jax.random.randint(k_idx, (batch_size,), 0, targets.shape[0])
        value, grads = jax.value_and_grad(loss)(params, pixels[idx][:, None], targets[idx], k_aug)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    opt_state = opt.init(params)
    start, losses = time.perf_counter(), []
    for step, k in enumerate(jax.random.split(key, steps), 1):
        params, opt_state, value = update(params, opt_state, k, demos.obs["pixels"], targets)
        losses.append(value)
        if on_log is not None and step % log_every == 0:
            row = {"pretrain/loss": float(jnp.mean(jnp.stack(losses)))}
            on_log(step, {**row, "timing/elapsed_s": time.perf_counter() - start})
            losses = []
    full = {**state.params, "encoder": params["encoder"]}
    ema = {**state.ema_params, "encoder": jax.tree.map(jnp.copy, params["encoder"])}
    state = state.replace(params=full, ema_params=ema, opt_state=policy.opt.init(full))
    return state, params["head"]


def frame_demos(policy: DiffusionPolicy, params: Any, demos: demo_data.Demos) -> demo_data.Demos:
    """``demos`` with its pixels replaced by the frozen trunk's features of every frame,
    ``"frames" [S, F]``: ``imitate`` on them trains the rest of the policy without running the
    CNN (the same updates as on the pixels without the random shift)."""
    if not policy.cfg.freeze_encoder:
        raise ValueError("features of a trunk that trains go stale: needs freeze_encoder=True")
    frames = _trunk_features(policy, params, demos.obs["pixels"])
    return demos._replace(obs={"state": demos.obs["state"], "frames": frames})


# --- decision-level transitions -------------------------------------------------------------
# The critic, the dynamics model and PPO act at the policy's time scale: one "action" is the
# executed part of a chunk (E env steps), its reward the discounted sum of the E rewards, and
# the discount gamma^E. Observations are the policy's normalised state history, flattened.
# ``terminal_value`` is the value credited to a terminated (successful) decision: Push-T ends an
# episode at success, so with per-step coverage rewards a policy that hovers near the goal
# without finishing out-earns one that finishes; crediting success as an absorbing state of
# maximal reward (``r_max / (1 - gamma)``) makes finishing the best thing to do.


def chunk_spec(spec: EnvSpec, obs_horizon: int, action_steps: int) -> EnvSpec:
    """The env seen one decision at a time: obs ``[To * O]``, action ``[E * A]``."""
    return dataclasses.replace(
        spec,
        name=f"{spec.name}-chunks",
        obs=ArraySpec((obs_horizon * spec.obs_dim,)),
        action_low=tuple(spec.action_low) * action_steps,
        action_high=tuple(spec.action_high) * action_steps,
        ctrl_dt=spec.ctrl_dt * action_steps,
        episode_length=math.ceil(spec.episode_length / action_steps),
        obs_layout=(),
        action_layout=(),
        privileged_obs=None,
        extra_obs={},
        reward_range=None,
    )


def flat_history(norm: Normalizer, state_hist: jax.Array) -> jax.Array:
    """``[..., To, O]`` state history -> ``[..., To * O]`` normalised (the critic's input)."""
    x = norm.state(state_hist)
    return x.reshape(*x.shape[:-2], -1)


def demo_transitions(
    demos: dict,
    norm: Normalizer,
    obs_horizon: int,
    action_steps: int,
    gamma: float,
    terminal_value: float = 0.0,
) -> Transition:
    """Every step of ``collect_demonstrations``-style episodes (``obs [N, T, O]`` state,
    ``actions``, ``rewards``, ``lengths``, ``success``) as a decision starting there."""
    obs = np.asarray(demos["obs"]["state"] if isinstance(demos["obs"], dict) else demos["obs"])
    actions, rewards = np.asarray(demos["actions"]), np.asarray(demos["rewards"])
    lengths, success = np.asarray(demos["lengths"]), np.asarray(demos["success"])
    t_max = actions.shape[1]
    ep, t = np.nonzero(np.arange(t_max)[None] < lengths[:, None])
    last = lengths[ep] - 1
    past = np.maximum(t[:, None] + np.arange(1 - obs_horizon, 1)[None], 0)
    ahead = t[:, None] + np.arange(action_steps)[None]
    act = actions[ep[:, None], np.minimum(ahead, last[:, None])]
    live = ahead <= last[:, None]
    reward = (
        rewards[ep[:, None], np.minimum(ahead, t_max - 1)]
        * live
        * gamma ** np.arange(action_steps)[None]
    ).sum(-1)
    # obs[len] is the observation after the last step (collection repeats it after the end).
    nxt = np.maximum(t[:, None] + action_steps + np.arange(1 - obs_horizon, 1)[None], 0)
    nxt = np.minimum(nxt, np.minimum(lengths[ep], t_max - 1)[:, None])
    ended = ahead[:, -1] >= last
    terminated = ended & success[ep]
    reward = reward + gamma**action_steps * terminal_value * terminated
    return Transition(
        obs=flat_history(norm, jnp.asarray(obs[ep[:, None], past])),
        action=jnp.asarray(act.reshape(len(ep), -1), jnp.float32),
        reward=jnp.asarray(reward, jnp.float32),
        terminated=jnp.asarray(terminated),
        truncated=jnp.asarray(ended & ~success[ep]),
        next_obs=flat_history(norm, jnp.asarray(obs[ep[:, None], nxt])),
    )


def rollout_transitions(
    out: Rollout, norm: Normalizer, action_steps: int, gamma: float, terminal_value: float = 0.0
) -> Transition:
    """The decisions of a ``Rollout`` that happened (``alive``), as transitions."""
    states = out.obs["state"]  # [B, D, To, O]
    nxt = jnp.concatenate([states[:, 1:], out.final_obs["state"][:, None]], axis=1)
    reward = jnp.sum(out.rewards * gamma ** jnp.arange(action_steps)[None, None], axis=-1)
    reward = reward + gamma**action_steps * terminal_value * out.terminated
    b, d = out.alive.shape
    executed = out.chunks[:, :, :action_steps].reshape(b, d, -1)
    alive = np.asarray(out.alive)
    ended = np.concatenate([~alive[:, 1:], np.ones((b, 1), bool)], axis=1) & alive
    term = np.asarray(out.terminated)
    pick = lambda x: jnp.asarray(np.asarray(x)[alive])
    return Transition(
        obs=pick(flat_history(norm, states)),
        action=pick(executed),
        reward=pick(reward),
        terminated=pick(term),
        truncated=pick(ended & ~term),
        next_obs=pick(flat_history(norm, nxt)),
    )


def concat(*transitions: Transition) -> Transition:
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *transitions)


# --- stage 2: offline improvement with the OPE gate ------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class OfflineConfig:
    critic: iql.IQLConfig = iql.IQLConfig(expectile=0.7, batch_size=256)
    critic_steps: int = 20_000  # IQL gradient steps on demonstrations + rollouts
    dynamics: DynamicsConfig = DynamicsConfig()
    dynamics_steps: int = 5_000
    ppo: diffusion_ppo.DiffusionPPOConfig = diffusion_ppo.DiffusionPPOConfig()
    batch_size: int = 256  # dataset states per PPO update
    updates: int = 1_000  # PPO updates in all
    ope_every: int = 50  # M: updates between OPE checks
    ope_horizon: int = 20  # H: imagined decisions per AM-Q rollout
    ope_batch: int = 256  # dataset start states per AM-Q score
    gate: bool = True  # False: the reference follows every M updates (the ungated ablation)
    delta: float = 0.0  # accept when score > best + delta (+ ope_z standard errors)
    # The paired standard error of the score's gain over the best accepted policy (the same
    # start states and noise; per start state): ope_z > 0 asks for a gain of ope_z SEs beyond
    # delta, so noise in the OPE alone does not replace the reference. RL-100: 0.
    ope_z: float = 0.0
    gamma: float = 0.99  # per env step; decisions discount gamma ** action_steps

    def __post_init__(self) -> None:
        if self.updates % self.ope_every:
            raise ValueError("updates must be a multiple of ope_every")


class Critic(NamedTuple):
    """An IQL critic at the decision level: ``q(obs_flat, action) -> [B]`` (min over the
    ensemble) and ``v(obs_flat) -> [B]``."""

    nets: iql.IQLNets
    state: iql.IQLState

    def q(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        a = self.nets.scaler.from_env(action)
        out = self.nets.critic.apply(self.state.critic_params, obs, a)
        return self.nets.head.value(out).min(axis=0)

    def v(self, obs: jax.Array) -> jax.Array:
        return self.nets.value.apply(self.state.value_params, obs)[..., 0]


def fit_critic(
    spec: EnvSpec, data: Transition, cfg: iql.IQLConfig, steps: int, key: PRNGKey
) -> tuple[Critic, dict]:
    """IQL (expectile V, Q, and its AWR actor, unused here) on decision-level transitions."""
    nets = iql.make_nets(cfg, spec)
    update = iql.make_update(cfg, nets)
    k_init, key = jax.random.split(key)
    n = data.reward.shape[0]

    @jax.jit
    def train(state, key):
        def one(state, k):
            k_idx, k_up = jax.random.split(k)
            idx = jax.random.randint(k_idx, (cfg.batch_size * cfg.utd,), 0, n)
            return update(state, jax.tree.map(lambda x: x[idx], data), k_up)

        state, metrics = jax.lax.scan(one, state, jax.random.split(key, steps))
        return state, jax.tree.map(lambda m: m[-100:].mean(), metrics)

    state, metrics = train(iql.init_state(k_init, cfg, spec, nets), key)
    return Critic(nets, state), {k: float(v) for k, v in metrics.items()}


def fit_dynamics(
    data: Transition, cfg: DynamicsConfig, steps: int, key: PRNGKey, holdout: float = 0.1
) -> tuple[Dynamics, DynamicsState, dict]:
    """The ensemble on ``(obs, action) -> next_obs``; elites by error on a held-out split."""
    n = data.reward.shape[0]
    k_perm, k_init, k_train = jax.random.split(key, 3)
    perm = jax.random.permutation(k_perm, n)
    n_val = max(1, int(n * holdout))
    val, train = perm[:n_val], perm[n_val:]
    triple = lambda idx: (data.obs[idx], data.action[idx], data.next_obs[idx])
    dyn = Dynamics(cfg, data.obs.shape[-1], data.action.shape[-1])
    state = dyn.init(k_init, *triple(train))
    state, metrics = jax.jit(dyn.train, static_argnums=3)(state, triple(train), k_train, steps)
    state = dyn.select_elites(state, *triple(val))
    err = dyn.errors(state, *triple(val))[state.elites].mean()  # standardised units
    return dyn, state, {**{k: float(v) for k, v in metrics.items()}, "dynamics/val_mse": float(err)}


def amq_score(
    policy: DiffusionPolicy,
    params: Any,
    norm: Normalizer,
    q: Callable[[jax.Array, jax.Array], jax.Array],
    step: Callable[[jax.Array, jax.Array, PRNGKey], jax.Array],
    start: jax.Array,
    horizon: int,
    key: PRNGKey,
) -> jax.Array:
    """AM-Q: the mean of ``q`` along ``horizon``-decision rollouts of the stochastic policy in a
    model ``step(obs_flat, action, key) -> next obs_flat``, from state histories ``start [B,
    To, O]`` (undiscounted, as RL-100's code does). Per start state: ``[B]``; the score is
    their mean."""
    n = policy.cfg.action_steps
    shape = start.shape

    def one(hist, k):
        k_act, k_model = jax.random.split(k)
        chain = policy.sample_chain(params, norm, {"state": hist}, k_act)
        action = chain.actions[:, :n].reshape(shape[0], -1)
        flat = flat_history(norm, hist)
        value = q(flat, action)
        nxt = norm.unstate(step(flat, action, k_model).reshape(shape))
        return nxt, value

    _, values = jax.lax.scan(one, start, jax.random.split(key, horizon))
    return values.mean(axis=0)


def gate(score: float, best: float, delta: float) -> bool:
    """RL-100's acceptance rule: the new policy replaces the reference when its OPE score
    beats the best accepted so far by more than ``delta``."""
    return bool(score > best + delta)


class OfflineResult(NamedTuple):
    policy_state: DiffusionState  # params = the last accepted (reference) policy
    history: list  # one dict per OPE check


def offline_improve(
    policy: DiffusionPolicy,
    state: DiffusionState,
    critic: Critic,
    model: Callable[[jax.Array, jax.Array, PRNGKey], jax.Array],
    states: jax.Array,
    cfg: OfflineConfig,
    key: PRNGKey,
    on_check: Callable[[dict, DiffusionState], dict] | None = None,
    ope_q: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> OfflineResult:
    """PPO over the denoising steps on dataset states, gated by AM-Q every ``ope_every``
    updates. ``states [S, To, O]`` are the dataset's state histories. The acting policy is the
    reference (the EMA weights of imitation to begin with); PPO trains a copy. ``model(obs_flat,
    action, key) -> next obs_flat`` imagines the AM-Q rollouts (``Dynamics.predict``). ``on_check``
    may add fields to each check's row (e.g. the real success of the candidate). ``ope_q``
    scores the imagined rollouts (default: the critic's Q, as RL-100 does)."""
    update = diffusion_ppo.make_update(policy, cfg.ppo)
    opt = diffusion_ppo.make_optimizer(cfg.ppo)
    norm, n = state.norm, policy.cfg.action_steps

    def ppo_step(carry, k):
        params, opt_state, ref = carry
        k_idx, k_chain = jax.random.split(k)
        obs = {"state": states[jax.random.randint(k_idx, (cfg.batch_size,), 0, states.shape[0])]}
        chain = policy.sample_chain(ref, norm, obs, k_chain)
        flat = flat_history(norm, obs["state"])
        adv = critic.q(flat, chain.actions[:, :n].reshape(cfg.batch_size, -1)) - critic.v(flat)
        params, opt_state, metrics = update(
            params, opt_state, norm, obs, chain.xs, chain.log_probs, adv
        )
        return (params, opt_state, ref), metrics

    @jax.jit
    def block(params, opt_state, ref, key):
        (params, opt_state, _), metrics = jax.lax.scan(
            ppo_step, (params, opt_state, ref), jax.random.split(key, cfg.ope_every)
        )
        return params, opt_state, jax.tree.map(jnp.mean, metrics)

    @jax.jit
    def score(params, key):
        k_idx, k_roll = jax.random.split(key)
        start = states[jax.random.randint(k_idx, (cfg.ope_batch,), 0, states.shape[0])]
        q = critic.q if ope_q is None else ope_q
        return amq_score(policy, params, norm, q, model, start, cfg.ope_horizon, k_roll)

    k_score, key = jax.random.split(key)
    ref = state.ema_params
    params, opt_state = ref, opt.init(ref)
    # every check scores on the same start states and noise: gains are paired per start state
    best_scores = np.asarray(score(ref, k_score))
    best = float(best_scores.mean())
    history = [{"update": 0, "ope": best, "best": best, "accepted": True}]
    if on_check is not None:
        history[0].update(on_check(history[0], state))
    for i in range(cfg.updates // cfg.ope_every):
        key, k_block = jax.random.split(key)
        params, opt_state, metrics = block(params, opt_state, ref, k_block)
        scores = np.asarray(score(params, k_score))
        value = float(scores.mean())
        gain = scores - best_scores
        se = float(gain.std(ddof=1) / np.sqrt(gain.size))
        accepted = gate(value, best, cfg.delta + cfg.ope_z * se) if cfg.gate else True
        if accepted:
            ref, best, best_scores = params, value, scores
        row = {
            "update": (i + 1) * cfg.ope_every,
            "ope": value,
            "ope_gain_se": se,
            "best": best,
            "accepted": accepted,
            **{k: float(v) for k, v in metrics.items()},
        }
        if on_check is not None:
            row.update(on_check(row, state.replace(ema_params=params)))
        history.append(row)
    return OfflineResult(state.replace(ema_params=ref), history)


# --- stage 3: online RL -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class OnlineConfig:
    ppo: diffusion_ppo.DiffusionPPOConfig = diffusion_ppo.DiffusionPPOConfig(
        clip_eps=0.2, lr=1e-5, train_encoder=True
    )
    iterations: int = 10  # rollout + update rounds
    num_episodes: int = 32  # episodes per rollout (all decisions of each are the batch)
    minibatch: int = 128  # decisions per minibatch
    epochs: int = 5
    value_hidden: tuple[int, ...] = (256, 256)
    value_lr: float = 3e-4
    value_clip_eps: float = 0.2
    gamma: float = 0.99  # per env step; decisions discount gamma ** action_steps
    lam: float = 0.95
    terminal_value: float = 0.0  # credited to terminated decisions (see the transitions note)


class OnlineState(NamedTuple):
    params: Any  # the acting diffusion policy's
    opt_state: Any
    value_params: Any
    value_opt_state: Any


def online_rl(
    env: Any,
    policy: DiffusionPolicy,
    state: DiffusionState,
    cfg: OnlineConfig,
    key: PRNGKey,
    on_iteration: Callable[[int, dict, DiffusionState], None] | None = None,
) -> DiffusionState:
    """PPO over the denoising steps with GAE over decisions, on episodes of ``env``.

    Each iteration runs ``num_episodes`` whole episodes with the stochastic sampler (keeping
    the chains), computes GAE with ``gamma ** action_steps`` per decision (rewards summed with
    ``gamma ** j`` inside the chunk), then ``epochs`` passes of shuffled minibatches: the K
    per-step actor updates and one clipped value step each. Decisions after an episode ended
    are padding, masked out of every loss. Returns the state with the trained policy in
    ``ema_params`` (the weights that act).
    """
    pcfg, n = policy.cfg, policy.cfg.action_steps
    norm = state.norm
    value_net = MLP(cfg.value_hidden, 1, "silu")
    value_opt = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(cfg.value_lr, eps=1e-5))
    actor_opt = diffusion_ppo.make_optimizer(cfg.ppo)
    update_actor = diffusion_ppo.make_update(policy, cfg.ppo)
    flat_dim = pcfg.obs_horizon * policy.state_dim
    k_value, key = jax.random.split(key)
    value_params = value_net.init(k_value, jnp.zeros((1, flat_dim)))
    online = OnlineState(
        state.ema_params,
        actor_opt.init(state.ema_params),
        value_params,
        value_opt.init(value_params),
    )
    gamma_d = cfg.gamma**n

    def values(params, hist):
        return value_net.apply(params, flat_history(norm, hist))[..., 0]

    def act(params):
        def fn(hist, k):
            chain = policy.sample_chain(params, norm, hist, k)
            return chain.actions, (chain.xs, chain.log_probs)

        return fn

    @jax.jit
    def collect(online, key):
        out = rollout(env, act(online.params), key, cfg.num_episodes, pcfg.obs_horizon, n)
        v = values(online.value_params, out.obs["state"])  # [B, D]
        v_last = values(online.value_params, out.final_obs["state"])
        v_next = jnp.concatenate([v[:, 1:], v_last[:, None]], axis=1)
        reward = jnp.sum(out.rewards * cfg.gamma ** jnp.arange(n)[None, None], -1)
        reward = reward + gamma_d * cfg.terminal_value * out.terminated
        alive = out.alive
        ended = jnp.concatenate([~alive[:, 1:], jnp.ones_like(alive[:, :1])], axis=1) & alive
        truncated = ended & ~out.terminated
        adv, ret = gae(
            reward.T, v.T, v_next.T, out.terminated.T, truncated.T | ~alive.T, gamma_d, cfg.lam
        )
        flat = lambda x: x.reshape(-1, *x.shape[2:])
        batch = {
            "obs": {"state": flat(out.obs["state"])},
            "xs": flat(out.extras[0]),
            "log_probs": flat(out.extras[1]),
            "advantage": flat(adv.T),
            "return": flat(ret.T),
            "value": flat(v),
            "mask": flat(alive).astype(jnp.float32),
        }
        stats = {
            "online/success": jnp.mean(out.success),
            "online/return": jnp.mean(out.returns),
            "online/length": jnp.mean(out.length),
        }
        return batch, stats

    @jax.jit
    def learn(online, batch, key):
        size = batch["mask"].shape[0]
        per_epoch = size // cfg.minibatch

        def minibatch(online, idx):
            mb = jax.tree.map(lambda x: x[idx], batch)
            params, opt_state, metrics = update_actor(
                online.params,
                online.opt_state,
                norm,
                mb["obs"],
                mb["xs"],
                mb["log_probs"],
                mb["advantage"],
                mb["mask"],
            )

            def v_loss(p):
                v = values(p, mb["obs"]["state"])
                return diffusion_ppo.value_loss(
                    v, mb["value"], mb["return"], cfg.value_clip_eps, mb["mask"]
                )

            loss_v, grads = jax.value_and_grad(v_loss)(online.value_params)
            updates, v_opt = value_opt.update(grads, online.value_opt_state, online.value_params)
            value_params = optax.apply_updates(online.value_params, updates)
            new = OnlineState(params, opt_state, value_params, v_opt)
            return new, {**metrics, "online/value_loss": loss_v}

        def epoch(online, k):
            perm = jax.random.permutation(k, size)[: per_epoch * cfg.minibatch]
            return jax.lax.scan(minibatch, online, perm.reshape(per_epoch, cfg.minibatch))

        online, metrics = jax.lax.scan(epoch, online, jax.random.split(key, cfg.epochs))
        return online, jax.tree.map(jnp.mean, metrics)

    for i in range(cfg.iterations):
        key, k_roll, k_learn = jax.random.split(key, 3)
        batch, stats = collect(online, k_roll)
        online, metrics = learn(online, batch, k_learn)
        if on_iteration is not None:
            row = {k: float(v) for k, v in {**stats, **metrics}.items()}
            on_iteration(i + 1, row, state.replace(ema_params=online.params))
    return state.replace(ema_params=online.params)


# --- what leaves each stage: a PolicyBundle ----------------------------------------------------


def _frames(layout, count: int, label) -> list[dict[str, Any]]:
    return [
        {
            "name": f"{f.name}{label(k)}",
            "size": f.size,
            "units": f.units,
            "frame": f.frame,
            "description": f.description,
        }
        for k in range(count)
        for f in layout
    ]


def to_bundle(
    policy: DiffusionPolicy,
    params: Any,
    norm: Normalizer,
    spec: EnvSpec,
    golden_states: jax.Array,
    one_step: bool = False,
    source: dict[str, Any] | None = None,
) -> PolicyBundle:
    """A stage's deterministic policy (zero noise) as a ``PolicyBundle`` of a chunk.

    The bundle's observation is the flat history of the last ``To`` frames (oldest first), its
    action the ``Ha`` executed actions of the chunk (``spec["chunk"]``); the min-max normaliser
    becomes the bundle's mean/std, the action normaliser its offset/scale, ``relative_to`` its
    ``action_reference``. The K-step policy is a ``ddim`` program (numpy); the one-step student
    (``one_step=True``, state encoder only) a layer program: the encoder MLP, then the student
    MLP with the noise inputs dropped (zero noise) and only the executed outputs kept, which
    ``firmware_export`` turns into C. Golden pairs: ``golden_states [G, To, O]`` (raw) and the
    JAX policy's actions on them.
    """
    cfg, o, a = policy.cfg, policy.state_dim, policy.action_dim
    if cfg.encoder != "state":
        raise ValueError("only state-encoder policies have a bundle (the CNN is not ported)")
    to, ha = cfg.obs_horizon, cfg.action_steps
    np_tree = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
    s_low, s_high = np.asarray(norm.state_low), np.asarray(norm.state_high)
    a_low, a_high = np.asarray(norm.action_low), np.asarray(norm.action_high)

    obs = {"state": jnp.asarray(golden_states)}
    zeros = jnp.zeros((obs["state"].shape[0], cfg.horizon, a))
    if one_step:
        x = jnp.clip(policy.denoise_one_step(params, norm, obs, zeros), -1.0, 1.0)
        program = {"layers": [], "head": "clip"}
        flat: dict[str, np.ndarray] = {}

        def dense(name: str, w: np.ndarray, b: np.ndarray, act: bool) -> None:
            flat[f"{name}.w"], flat[f"{name}.b"] = w, b
            program["layers"].append({"op": "dense", "weight": f"{name}.w", "bias": f"{name}.b"})
            if act:
                program["layers"].append({"op": "activation", "fn": cfg.activation})

        enc = np_tree["encoder"].get("params", {})
        if enc:
            layers = enc["MLP_0"]
            names = sorted(layers, key=lambda k: int(k.split("_")[1]))
            for i, n in enumerate(names):
                dense(f"enc{i}", layers[n]["kernel"], layers[n]["bias"], i < len(names) - 1)
        features = enc["MLP_0"][names[-1]]["bias"].shape[0] if enc else to * o
        layers = np_tree["student"]["params"]["MLP_0"]
        names = sorted(layers, key=lambda k: int(k.split("_")[1]))
        for i, n in enumerate(names):
            w, b = layers[n]["kernel"], layers[n]["bias"]
            if i == 0:
                w = w[:features]  # the noise rows meet zeros
            if i == len(names) - 1:
                w, b = w[:, : ha * a], b[: ha * a]  # executed actions only
            dense(f"student{i}", w, b, i < len(names) - 1)
    else:
        x = policy.denoise(params, norm, obs, zeros)
        program = {
            "program": "ddim",
            "head": "clip",
            "ddim": {
                **numpy_policy.arch(policy),
                **{
                    k: (v.tolist() if isinstance(v, np.ndarray) else v)
                    for k, v in numpy_policy.schedule(policy).items()
                },
            },
        }
        flat = numpy_policy.flatten({"encoder": np_tree["encoder"], "noise": np_tree["noise"]})
    golden = norm.unaction(x) + policy.reference(obs)
    program["chunk"] = {"obs_history": to, "action_steps": ha}
    if cfg.relative_to:
        program["action_reference"] = [(to - 1) * o + i for _ in range(ha) for i in cfg.relative_to]
    safe = None if spec.safe_action is None else np.tile(spec.safe_action, ha)
    frame_label = lambda k: f"[t-{to - 1 - k}]" if k < to - 1 else "[t]"
    bundle = PolicyBundle(
        spec=program,
        params=flat,
        obs_layout=_frames(spec.obs_layout, to, frame_label),
        action_layout=_frames(spec.action_layout, ha, lambda k: f"[+{k}]"),
        action_offset=np.tile((a_high + a_low) / 2, ha).astype(np.float32),
        action_scale=np.tile((a_high - a_low) / 2, ha).astype(np.float32),
        ctrl_dt=float(spec.ctrl_dt),
        obs_mean=np.tile((s_high + s_low) / 2, to).astype(np.float32),
        obs_std=np.tile(np.maximum(s_high - s_low, 1e-6) / 2, to).astype(np.float32),
        safe_action=None if safe is None else np.asarray(safe, np.float32),
        source=source or {},
        golden_obs=np.asarray(golden_states, np.float32).reshape(-1, to * o),
        golden_actions=np.asarray(golden[:, :ha], np.float32).reshape(-1, ha * a),
    )
    bundle.validate("rl100 bundle")
    return bundle


# --- stage 4: distillation to one step -------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillConfig:
    steps: int = 5_000
    batch_size: int = 256
    lr: float = 1e-4


def distill(
    policy: DiffusionPolicy,
    teacher: DiffusionState,
    states: jax.Array,
    cfg: DistillConfig,
    key: PRNGKey,
    init: Any = None,
) -> tuple[Any, dict]:
    """Consistency distillation: a one-step student (the teacher's encoder and a fresh
    ``StudentNet``, ``policy.init_student``) maps the teacher's starting noise and the
    observation to the teacher's K-step DDIM action chunk (MSE on the executed actions,
    normalised). ``states [S, To, O]``: dataset histories. A tenth of every batch starts from
    zero noise, the deterministic action a bundle exports, so the student is trained where it
    is deployed as well as around it. ``init``: a student to go on training (a DAgger round on
    states it visited itself) instead of a fresh one."""
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(cfg.lr))
    norm, n = teacher.norm, policy.cfg.action_steps
    k_init, key = jax.random.split(key)
    student = policy.init_student(k_init, teacher.ema_params) if init is None else init

    def loss(params, obs, noise, target):
        pred = policy.denoise_one_step(params, norm, obs, noise)
        return jnp.mean((pred[:, :n] - target[:, :n]) ** 2)

    def one(carry, k):
        params, opt_state = carry
        k_idx, k_noise = jax.random.split(k)
        obs = {"state": states[jax.random.randint(k_idx, (cfg.batch_size,), 0, states.shape[0])]}
        noise = jax.random.normal(k_noise, (cfg.batch_size, policy.cfg.horizon, policy.action_dim))
        noise = noise.at[: cfg.batch_size // 10].set(0.0)
        target = policy.denoise(teacher.ema_params, norm, obs, noise)
        value, grads = jax.value_and_grad(loss)(params, obs, noise, target)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    @jax.jit
    def train(params, key):
        (params, _), losses = jax.lax.scan(
            one, (params, opt.init(params)), jax.random.split(key, cfg.steps)
        )
        return params, losses

    student, losses = train(student, key)
    return student, {
        "distill/loss_first": float(losses[:100].mean()),
        "distill/loss_last": float(losses[-100:].mean()),
    }


__all__ = [
    "Critic",
    "DistillConfig",
    "OfflineConfig",
    "OfflineResult",
    "OnlineConfig",
    "Rollout",
    "amq_score",
    "chunk_spec",
    "concat",
    "decode_state",
    "demo_transitions",
    "distill",
    "evaluate",
    "fit_critic",
    "fit_dynamics",
    "flat_history",
    "frame_demos",
    "gate",
    "imitate",
    "make_evaluator",
    "offline_improve",
    "online_rl",
    "policy_act",
    "predict_state",
    "pretrain_encoder",
    "rollout",
    "rollout_transitions",
    "state_targets",
    "to_bundle",
]
