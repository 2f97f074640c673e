"""The on-device training loop: act, step, insert and update inside one jitted ``lax.scan``.

One *chunk* of ``log_every / num_envs`` iterations is one compiled call; nothing in it goes back to
Python. Each iteration: the policy acts on the batched env, the transition (with the true
``next_obs`` at episode ends) goes into the device buffer, and ``algo.update`` runs when its data
is ready (see ``robotrl.types.Algorithm``): off-policy, after every step once ``learning_starts``
transitions of uniform random actions are in, on ``utd * batch_size`` sampled transitions;
on-policy, every ``rollout_length`` steps on the buffer itself, which is then exactly one rollout
``[T, E]`` in time order. Seeds are a leading ``vmap`` axis over the whole loop state, so S seeds
train in one program.

Shapes: S seeds, T iterations per chunk, E parallel envs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from robotrl import parallel
from robotrl.buffers import replay
from robotrl.envs import EnvState
from robotrl.train.config import TrainConfig
from robotrl.train.evaluate import EvalResult, make_evaluator
from robotrl.train.session import ChunkResult, first_non_finite
from robotrl.types import Algorithm, PRNGKey, Transition


class LoopState(flax.struct.PyTreeNode):
    """Everything a training run is, for one seed (a leading ``[S]`` axis when vmapped)."""

    algo: Any
    env: EnvState
    buffer: replay.ReplayState
    policy_carry: Any
    key: jax.Array
    env_steps: jax.Array  # transitions collected so far, int32
    episode_return: jax.Array  # [E] return of the running episodes


class ChunkOut(NamedTuple):
    """Per-iteration records of one chunk (each ``[T]``, ``[S, T]`` when vmapped)."""

    metrics: dict[str, jax.Array]
    updated: jax.Array  # an update ran this iteration
    return_sum: jax.Array  # summed returns of episodes that ended this iteration
    episodes: jax.Array  # number of episodes that ended this iteration
    finite: dict[str, jax.Array]  # per watched quantity: all finite this iteration


def _where_done(done: jax.Array, fresh: Any, old: Any) -> Any:
    """Per-env select between two pytrees with leading axis ``[E]``."""

    def pick(a, b):
        mask = done.reshape(done.shape + (1,) * (b.ndim - 1))
        return jnp.where(mask, jnp.broadcast_to(a, b.shape), b)

    return jax.tree.map(pick, fresh, old)


def _all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.ones((), bool)


def check_chunking(algo: Algorithm, cfg: TrainConfig) -> None:
    """On-policy chunks must hold whole rollouts, so every update sees one aligned rollout."""
    rollout = algo.rollout_length * cfg.num_envs
    if rollout and cfg.log_every % rollout:
        raise ValueError(
            f"train.log_every ({cfg.log_every}) must be a multiple of rollout_length x num_envs "
            f"({algo.rollout_length} x {cfg.num_envs} = {rollout})"
        )


def buffer_capacity(algo: Algorithm, cfg: TrainConfig) -> int:
    """One rollout for on-policy algorithms, ``buffer_size`` transitions for off-policy ones."""
    return algo.rollout_length * cfg.num_envs if algo.rollout_length else cfg.buffer_size


def make_init(env: Any, algo: Algorithm, cfg: TrainConfig):
    """``init(key) -> LoopState`` for one seed; ``env`` is batched (``make_training_env``)."""
    num_envs = cfg.num_envs
    # Offline runs sample the dataset, never their own buffer (kept one row long).
    capacity = num_envs if cfg.offline else buffer_capacity(algo, cfg)

    def init(key: PRNGKey) -> LoopState:
        k_algo, k_env, k_loop = jax.random.split(key, 3)
        algo_state = algo.init(k_algo)
        env_state = env.reset(k_env)
        policy, params = algo.make_policy(algo_state, False)
        carry = policy.init_carry((num_envs,))
        action, _, extras = jax.eval_shape(policy.step, params, carry, env_state.obs, k_loop)
        zeros = lambda s: jnp.zeros(s.shape, s.dtype)
        example = Transition(
            obs=env_state.obs,
            action=zeros(action),
            reward=env_state.reward,
            terminated=env_state.terminated,
            truncated=env_state.truncated,
            next_obs=env_state.obs,
            extras=jax.tree.map(zeros, extras),
        )
        return LoopState(
            algo=algo_state,
            env=env_state,
            buffer=replay.init(example, capacity),
            policy_carry=carry,
            key=k_loop,
            env_steps=jnp.zeros((), jnp.int32),
            episode_return=jnp.zeros(num_envs),
        )

    return init


def make_chunk(env: Any, algo: Algorithm, cfg: TrainConfig):
    """``chunk(state) -> (state, ChunkOut)``: ``log_every / num_envs`` iterations in a scan."""
    check_chunking(algo, cfg)
    spec = env.spec
    low = jnp.asarray(spec.action_low, jnp.float32)
    high = jnp.asarray(spec.action_high, jnp.float32)
    on_policy = algo.rollout_length > 0
    iterations = cfg.log_every // cfg.num_envs
    # A reward curriculum (the env's ``relabel_reward``, e.g. L2F's): the learner sees every
    # transition's reward recomputed for the current stage, as if the buffer were relabelled
    # (through the wrappers: a reward scale applies to the relabelled rewards too).
    relabel = getattr(env, "relabel_reward", None)

    def data_for_update(buffer: replay.ReplayState, env_steps: jax.Array, key: PRNGKey, data):
        """(ready, batch): what ``algo.update`` consumes after this step, and whether it is due;
        ``data`` (a retained offline dataset) supplies ``offline_fraction`` of each batch."""
        if on_policy:
            ready, batch = (env_steps // cfg.num_envs) % algo.rollout_length == 0, buffer.data
        else:
            size = algo.config.batch_size * algo.config.utd
            if data is None:
                batch = replay.sample(buffer, key, size)
            else:
                batch = replay.sample_mixed(key, data, buffer, size, cfg.offline_fraction)
            ready = env_steps > cfg.learning_starts
        if relabel is not None:
            batch = batch._replace(reward=relabel(batch, env_steps))
        return ready, batch

    def iteration(s: LoopState, data: replay.ReplayState | None) -> tuple[LoopState, ChunkOut]:
        key, k_act, k_rand, k_sample, k_update = jax.random.split(s.key, 5)
        policy, params = algo.make_policy(s.algo, False)
        obs = s.env.obs
        action, carry, extras = policy.step(params, s.policy_carry, obs, k_act)
        if not on_policy and cfg.random_warmup:  # uniform random actions until learning starts
            random_action = jax.random.uniform(
                k_rand,
                action.shape,
                minval=jnp.broadcast_to(low, action.shape),
                maxval=jnp.broadcast_to(high, action.shape),
            )
            action = jnp.where(s.env_steps < cfg.learning_starts, random_action, action)
        env_state = env.step(s.env, action)
        transition = Transition(
            obs=obs,
            action=action,
            reward=env_state.reward,
            terminated=env_state.terminated,
            truncated=env_state.truncated,
            next_obs=env_state.info["final_obs"],
            extras=extras,
        )
        # The barrier keeps XLA from fusing this write into the sampling gathers below, which
        # made it copy whole buffer fields every iteration (2.5x slower for one seed, more
        # for vmapped seeds).
        buffer = jax.lax.optimization_barrier(replay.add(s.buffer, transition))
        done = env_state.done
        carry = _where_done(done, policy.init_carry((cfg.num_envs,)), carry)
        env_steps = s.env_steps + cfg.num_envs

        # Sampled outside the cond: a cond operand as large as the buffer gets copied.
        ready, batch = data_for_update(buffer, env_steps, k_sample, data)
        metric_shapes = jax.eval_shape(algo.update, s.algo, batch, k_update)[1]
        skip = lambda st, b, k: (
            st,
            jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metric_shapes),
        )
        algo_state, metrics = jax.lax.cond(ready, algo.update, skip, s.algo, batch, k_update)

        ep_return = s.episode_return + env_state.reward
        out = ChunkOut(
            metrics=metrics,
            updated=ready,
            return_sum=jnp.where(done, ep_return, 0.0).sum(),
            episodes=done.sum(),
            finite={
                "env/obs": _all_finite(env_state.obs),
                "env/reward": _all_finite(env_state.reward),
                **{f"train/{name}": _all_finite(value) for name, value in metrics.items()},
            },
        )
        new = LoopState(
            algo=algo_state,
            env=env_state,
            buffer=buffer,
            policy_carry=carry,
            key=key,
            env_steps=env_steps,
            episode_return=jnp.where(done, 0.0, ep_return),
        )
        return new, out

    def offline_iteration(s: LoopState, data: replay.ReplayState) -> tuple[LoopState, ChunkOut]:
        """One gradient step on a uniform sample of the dataset; no env step."""
        key, k_sample, k_update = jax.random.split(s.key, 3)
        batch = replay.sample(data, k_sample, algo.config.batch_size * algo.config.utd)
        algo_state, metrics = algo.update(s.algo, batch, k_update)
        out = ChunkOut(
            metrics=metrics,
            updated=jnp.bool_(True),
            return_sum=jnp.float32(0.0),
            episodes=jnp.int32(0),
            finite={f"train/{name}": _all_finite(value) for name, value in metrics.items()},
        )
        return s.replace(algo=algo_state, key=key, env_steps=s.env_steps + 1), out

    def chunk(state: LoopState, data: replay.ReplayState | None) -> tuple[LoopState, ChunkOut]:
        """``data``: the dataset (shared by the seeds) of an offline run, or retained by an
        online one; None when there is none."""
        body = offline_iteration if cfg.offline else iteration
        return jax.lax.scan(lambda s, _: body(s, data), state, None, length=iterations)

    return chunk


def seed_axes() -> LoopState:
    """``vmap`` axes of a ``LoopState`` over seeds: 0 everywhere but the shared counters."""
    return LoopState(
        algo=0,
        env=0,
        buffer=replay.ReplayState(data=0, pos=None, size=None),
        policy_carry=0,
        key=0,
        env_steps=None,
        episode_return=0,
    )


def state_shardings(mesh: Mesh, state: LoopState, num_envs: int) -> LoopState:
    """Where each array of a seed-batched loop state lives on ``mesh`` (``robotrl.parallel``):
    seeds over ``"seed"``; env-batched arrays (leading per-seed axis of ``num_envs``, the replay
    rows' second axis) over ``"data"``; the rest (parameters, optimiser state, statistics)
    replicated over ``"data"``; the shared counters everywhere."""
    per_seed = NamedSharding(mesh, P(parallel.SEED))
    by_env = NamedSharding(mesh, P(parallel.SEED, parallel.DATA))
    env_axis = lambda x: by_env if x.ndim >= 2 and x.shape[1] == num_envs else per_seed
    shared = parallel.replicated(mesh)
    return LoopState(
        algo=jax.tree.map(lambda _: per_seed, state.algo),
        env=jax.tree.map(env_axis, state.env),
        buffer=replay.ReplayState(
            data=jax.tree.map(
                lambda _: NamedSharding(mesh, P(parallel.SEED, None, parallel.DATA)),
                state.buffer.data,
            ),
            pos=shared,
            size=shared,
        ),
        policy_carry=jax.tree.map(env_axis, state.policy_carry),
        key=per_seed,
        env_steps=shared,
        episode_return=by_env,
    )


def select_seed(state: LoopState, index: int | slice) -> LoopState:
    """One seed's loop state out of a seed-batched one, or a slice of seeds (shared counters
    stay as they are); ``state.buffer`` may be None (a checkpoint without the buffer)."""

    def pick(axis, subtree):
        return subtree if axis is None else jax.tree.map(lambda x: x[index], subtree)

    axes = seed_axes() if state.buffer is not None else seed_axes().replace(buffer=None)
    return jax.tree.map(pick, axes, state, is_leaf=lambda x: x is None)


class Hyper(NamedTuple):
    """Numeric hyperparameters swept in one program: ``values`` (name -> ``[P]``, one per
    point) and ``build(values) -> Algorithm`` (called inside the traced program with one
    run's values, as tracers)."""

    values: dict[str, np.ndarray]
    build: Any

    @property
    def points(self) -> int:
        return len(next(iter(self.values.values())))

    def per_run(self, seeds: int) -> dict[str, np.ndarray]:
        return {k: np.repeat(np.asarray(v, np.float32), seeds) for k, v in self.values.items()}


class ScanSession:
    """Holds the compiled chunk/eval functions and the current (seed-batched) loop state."""

    def __init__(
        self,
        env: Any,
        eval_env: Any,
        algo: Algorithm,
        cfg: TrainConfig,
        seed: int,
        dataset: replay.ReplayState | None = None,
        hyper: Hyper | None = None,
    ):
        """``dataset`` (offline runs): transitions on the device, ``[N, 1, ...]``, which every
        update samples from instead of the run's own buffer. ``hyper`` (a sweep): P points of
        numeric hyperparameters, each trained with ``cfg.num_seeds`` seeds, all in one program
        (runs ordered point-major: run ``p * num_seeds + s``)."""
        check_chunking(algo, cfg)
        self._data = dataset
        self.cfg, self.algo = cfg, algo
        points = hyper.points if hyper is not None else 1
        self.num_seeds = runs = cfg.num_seeds * points
        # Seed i's stream does not depend on how many seeds (or sweep points) run beside it.
        keys = jax.vmap(jax.random.fold_in, (None, 0))(
            jax.random.PRNGKey(seed), jnp.arange(runs) % cfg.num_seeds
        )
        # Every run's hyperparameter values ([R] each); the algorithm is built from them inside
        # the traced program, so they are vmapped like the seeds.
        values = {} if hyper is None else hyper.per_run(cfg.num_seeds)
        build = (lambda h: algo) if hyper is None else hyper.build
        self._values = values
        # Seeds run in lockstep, so the step counter and the buffer's write position are shared
        # (unbatched): a batched write index would turn the in-place buffer write into a scatter
        # that copies the whole buffer every step.
        axes = seed_axes()
        # Seeds over devices, and each seed's envs and minibatches over cfg.data_parallel of
        # them (robotrl.parallel); None on one device.
        self.mesh = parallel.make_mesh(runs, cfg.data_parallel)
        init = jax.vmap(
            lambda key, h: make_init(env, build(h), cfg)(key),
            out_axes=axes,
            spmd_axis_name=parallel.SEED,
        )
        chunk = jax.vmap(
            lambda state, data, h: make_chunk(env, build(h), cfg)(state, data),
            in_axes=(axes, None, 0),
            out_axes=(axes, 0),
            spmd_axis_name=parallel.SEED,
        )
        length = eval_env.spec.episode_length
        evaluate = jax.vmap(
            lambda state, key, stats, h: make_evaluator(eval_env, build(h), length)(
                state, key, stats
            )
        )
        if self.mesh is None:
            self._shardings = None
            self._init = jax.jit(init)
            self._chunk = jax.jit(chunk, donate_argnums=0)
            self._evaluate = jax.jit(evaluate)
        else:
            with jax.set_mesh(self.mesh):
                shapes = jax.eval_shape(init, keys, values)
            self._shardings = state_shardings(self.mesh, shapes, cfg.num_envs)
            # What comes back to the host (metrics, evaluations) is replicated, so every process
            # of a multi-host run can read it.
            shared = parallel.replicated(self.mesh)
            self._init = jax.jit(init, in_shardings=(shared, shared), out_shardings=self._shardings)
            self._chunk = jax.jit(
                chunk,
                in_shardings=(self._shardings, shared, shared),
                out_shardings=(self._shardings, shared),
                donate_argnums=0,
            )
            self._evaluate = jax.jit(evaluate, out_shardings=shared)
        self.eval_env = eval_env
        self._keys = keys
        self.state: LoopState = self._call(self._init, keys, values)

    def _call(self, fn: Any, *args: Any) -> Any:
        """Calls (and on the first call traces) ``fn`` with the mesh as the ambient one, so the
        algorithms' ``parallel.shard_batch`` constraints see it."""
        if self.mesh is None:
            return fn(*args)
        with jax.set_mesh(self.mesh):
            return fn(*args)

    def env_steps(self) -> int:
        return int(np.asarray(self.state.env_steps).reshape(-1)[0])

    def run_chunk(self) -> ChunkResult:
        start = self.env_steps()
        self.state, out = self._call(self._chunk, self.state, self._data, self._values)
        out = jax.device_get(out)
        # Per-seed chunk averages of the metrics, over the iterations that updated.
        updated = out.updated.astype(np.float64)  # [S, T]
        n_updates = updated.sum(-1)
        metrics = {
            f"train/{k}": np.where(
                n_updates > 0, (v * updated).sum(-1) / np.maximum(n_updates, 1), np.nan
            )
            for k, v in out.metrics.items()
        }
        episodes = out.episodes.sum(-1)
        metrics["train/episode_return"] = np.where(
            episodes > 0, out.return_sum.sum(-1) / np.maximum(episodes, 1), np.nan
        )
        metrics["train/episodes"] = episodes.astype(np.float64)
        bad = first_non_finite(out.finite, start, self.cfg.num_envs)
        return ChunkResult(metrics=metrics, bad=bad)

    def evaluate(self, seed: int | None = None) -> EvalResult:
        """``eval_episodes`` deterministic episodes per seed (keyed by ``seed`` when given)."""
        if seed is None:
            # Keyed by the step, so a resumed run evaluates exactly as an uninterrupted one.
            step = self.env_steps()
            keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, 1), step))(
                self._keys
            )
        else:
            keys = jax.random.split(jax.random.PRNGKey(seed), self.num_seeds)
        returns, lengths, metrics, traces = jax.device_get(
            self._call(self._evaluate, self.state.algo, keys, self.obs_stats(), self._values)
        )
        judge = getattr(self.eval_env.unwrapped, "success", None)
        success = None
        if judge is not None:  # per seed: traces [S, T, B] -> [T, B]
            success = np.stack(
                [
                    judge({k: v[i] for k, v in traces.items()}, lengths[i])
                    for i in range(len(lengths))
                ]
            )
        return EvalResult(
            np.asarray(returns), {k: np.asarray(v) for k, v in metrics.items()}, success
        )

    def set_algo_state(self, algo_state: Any) -> None:
        """Every seed's algorithm state becomes ``algo_state`` (one seed's, e.g. pretrained)."""
        tile = lambda x: jnp.array(jnp.broadcast_to(x, (self.num_seeds, *x.shape)))
        batched = jax.tree.map(tile, algo_state)
        state = self.state.replace(algo=batched)
        if self._shardings is not None:
            state = jax.device_put(state, self._shardings)
        self.state = state

    def obs_stats(self) -> Any:
        """The running observation statistics ``[S, ...]`` when the env normalises, else None."""
        return self.state.env.info.get("obs_stats")

    def checkpoint_state(self) -> Any:
        if self.cfg.save_buffer:
            return self.state
        return self.state.replace(buffer=None)

    def abstract_state(self) -> Any:
        return jax.eval_shape(lambda: self.checkpoint_state())

    def load_state(self, tree: Any) -> None:
        if not self.cfg.save_buffer:
            # Without a saved buffer the run resumes with an empty one (documented trade-off).
            tree = tree.replace(buffer=self.state.buffer)
        if self._shardings is not None:
            tree = jax.device_put(tree, self._shardings)
        self.state = tree
