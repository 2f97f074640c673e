"""The host training loop: the same ``algo.update``, fed by a Python env (gymnasium, dm_control,
a robot) through a numpy replay buffer.

Per env step: one jitted policy call, one host env step, one buffer insert, and ``update`` when its
data is ready, exactly as in the scan loop (``robotrl.types.Algorithm``): off-policy after every
step on ``utd * batch_size`` sampled transitions, on-policy every ``rollout_length`` steps on the
buffer (one rollout ``[T, E]``). Metrics stay on the device until the end of a chunk, so the loop
does not wait on every update.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from robotrl.buffers import HostReplay
from robotrl.envs.host import HostEnv
from robotrl.envs.normalize import HostObsNormalizer
from robotrl.train.config import TrainConfig
from robotrl.train.evaluate import EvalResult, evaluate_host
from robotrl.train.scan_loop import buffer_capacity, check_chunking
from robotrl.train.session import ChunkResult, first_non_finite
from robotrl.types import Algorithm, Transition


def _reset_where(done: np.ndarray, fresh: Any, carry: Any) -> Any:
    def pick(a, b):
        mask = done.reshape(done.shape + (1,) * (np.ndim(b) - 1))
        return np.where(mask, np.broadcast_to(a, np.shape(b)), b)

    return jax.tree.map(pick, fresh, carry)


class HostSession:
    """Host-loop training state and the functions that advance it (one seed)."""

    num_seeds = 1

    def __init__(
        self,
        env: HostEnv,
        make_env: Callable[[int], HostEnv],
        algo: Algorithm,
        cfg: TrainConfig,
        seed: int,
        normalize_obs: bool = False,
    ):
        """``env`` is the training env (``cfg.num_envs`` copies); ``make_env(n)`` builds the
        evaluation batch; ``normalize_obs`` keeps running observation statistics (as the
        functional ``ObsNormalization`` does) and feeds the policy normalised observations."""
        check_chunking(algo, cfg)
        self.cfg, self.algo, self.seed = cfg, algo, seed
        self.env = env
        self._make_env = make_env
        self.spec = self.env.spec
        key = jax.random.PRNGKey(seed)
        k_algo, self.key = jax.random.split(key)
        self.algo_state = algo.init(k_algo)
        self.policy, _ = algo.make_policy(self.algo_state, False)
        self._act = jax.jit(self.policy.step)
        self._update = jax.jit(algo.update, donate_argnums=0)
        self.normalizer = HostObsNormalizer(self.spec.obs_dim) if normalize_obs else None
        self.obs = self._observe(self.env.reset(seed))
        self.carry = self.policy.init_carry((cfg.num_envs,))
        _, params = algo.make_policy(self.algo_state, False)
        action, _, extras = jax.eval_shape(self._act, params, self.carry, self.obs, self.key)
        example = Transition(
            obs=self.obs,
            action=np.zeros(action.shape, action.dtype),
            reward=np.zeros(cfg.num_envs, np.float32),
            terminated=np.zeros(cfg.num_envs, bool),
            truncated=np.zeros(cfg.num_envs, bool),
            next_obs=self.obs,
            extras=jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), extras),
        )
        self.buffer = HostReplay(example, buffer_capacity(algo, cfg), seed)
        self._steps = 0
        self.episode_return = np.zeros(cfg.num_envs)
        self.rng = np.random.default_rng(seed)
        self._low = np.asarray(self.spec.action_low, np.float32)
        self._high = np.asarray(self.spec.action_high, np.float32)

    def env_steps(self) -> int:
        return self._steps

    def run_chunk(self) -> ChunkResult:
        cfg = self.cfg
        rollout = self.algo.rollout_length
        start = self._steps
        iterations = cfg.log_every // cfg.num_envs
        metrics, returns, bad = [], [], None
        env_metrics: dict[str, list[np.ndarray]] = {}
        for i in range(iterations):
            self.key, k_act, k_update = jax.random.split(self.key, 3)
            _, params = self.algo.make_policy(self.algo_state, False)
            action, carry, extras = self._act(params, self.carry, self.obs, k_act)
            if not rollout and self._steps < cfg.learning_starts:
                action = self.rng.uniform(self._low, self._high, (cfg.num_envs, len(self._low)))
            action = np.asarray(action, np.float32)
            out = self.env.step(action)
            if not (np.all(np.isfinite(out.obs)) and np.all(np.isfinite(out.final_obs))):
                bad = (self._steps + cfg.num_envs, "env/obs")
                break
            next_obs = self._observe(out.obs)
            final_obs = (
                out.final_obs
                if self.normalizer is None
                else self.normalizer.normalize(out.final_obs)
            )
            self.buffer.add(
                Transition(
                    self.obs,
                    action,
                    out.reward,
                    out.terminated,
                    out.truncated,
                    final_obs,
                    jax.device_get(extras),
                )
            )
            done = out.terminated | out.truncated
            self.carry = _reset_where(
                done, self.policy.init_carry((cfg.num_envs,)), jax.device_get(carry)
            )
            self.obs = next_obs
            for name, value in out.metrics.items():
                env_metrics.setdefault(name, []).append(np.asarray(value, np.float64))
            self.episode_return += out.reward
            returns.extend(self.episode_return[done].tolist())
            self.episode_return[done] = 0.0
            self._steps += cfg.num_envs
            batch = self._data_for_update()
            if batch is not None:
                self.algo_state, m = self._update(self.algo_state, batch, k_update)
                metrics.append((i, m))
        # One transfer for the whole chunk; the first non-finite update names its step.
        values = jax.device_get([m for _, m in metrics])
        result: dict[str, np.ndarray] = {}
        if values:
            finite = {
                f"train/{k}": np.array([np.isfinite(v[k]).all() for v in values]) for k in values[0]
            }
            found = first_non_finite(finite, 0, 1)
            if found is not None:
                index = metrics[found[0] - 1][0]
                step = start + (index + 1) * cfg.num_envs
                if bad is None or step < bad[0]:
                    bad = (step, found[1])
            result = {f"train/{k}": np.array([np.mean([v[k] for v in values])]) for k in values[0]}
        # The env's own per-step metrics over the chunk (NaN where a step has none to report,
        # e.g. a lap time before the lap ends): mean, sum and last value, so rates, counts and
        # running figures all follow.
        for name, values in env_metrics.items():
            stacked = np.stack(values)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN chunks stay NaN
                result[f"train/env/{name}"] = np.array([np.nanmean(stacked)])
            result[f"train/env/{name}_sum"] = np.array([np.nansum(stacked)])
            result[f"train/env/{name}_last"] = np.array([np.mean(stacked[-1])])
        result["train/episode_return"] = np.array([np.mean(returns) if returns else np.nan])
        result["train/episodes"] = np.array([float(len(returns))])
        return ChunkResult(metrics=result, bad=bad)

    def _observe(self, raw: np.ndarray) -> np.ndarray:
        """What the policy sees: raw observations, or normalised ones (updating the stats)."""
        if self.normalizer is None:
            return raw
        self.normalizer.update(raw)
        return self.normalizer.normalize(raw)

    def obs_stats(self) -> HostObsNormalizer | None:
        return self.normalizer

    def _data_for_update(self) -> Any:
        """The batch ``update`` consumes after this step, or None when it is not due."""
        rollout = self.algo.rollout_length
        if rollout:
            due = (self._steps // self.cfg.num_envs) % rollout == 0
            return self.buffer.data if due else None
        if self._steps <= self.cfg.learning_starts:
            return None
        return self.buffer.sample(self.algo.config.batch_size * self.algo.config.utd)

    def evaluate(self, seed: int | None = None) -> EvalResult:
        """``eval_episodes`` deterministic episodes (seeded by ``seed`` when given)."""
        env = self._make_env(self.cfg.eval_episodes)
        seed = self.seed + 10_000 + self._steps if seed is None else seed
        try:
            transform = None if self.normalizer is None else self.normalizer.normalize
            return evaluate_host(env, self.algo, self.algo_state, seed, transform=transform)
        finally:
            env.close()

    def checkpoint_state(self) -> Any:
        state = {"algo": self.algo_state, "key": self.key, "env_steps": np.int64(self._steps)}
        if self.cfg.save_buffer:
            state["buffer"] = self.buffer.state_dict()
        if self.normalizer is not None:
            state["obs_stats"] = self.normalizer.state_dict()
        return state

    def abstract_state(self) -> Any:
        return jax.eval_shape(lambda: self.checkpoint_state())

    def load_state(self, tree: Any) -> None:
        """Restores algorithm, buffer and counters; the host env restarts its episodes (its
        internal state cannot be checkpointed), seeded from the step for reproducibility."""
        self.algo_state = tree["algo"]
        self.key = tree["key"]
        self._steps = int(tree["env_steps"])
        if "buffer" in tree:
            self.buffer.load_state_dict(tree["buffer"])
        if self.normalizer is not None:
            self.normalizer.load_state_dict(tree["obs_stats"])
        self.obs = self._observe(self.env.reset(self.seed + self._steps))
        self.carry = self.policy.init_carry((self.cfg.num_envs,))
        self.episode_return[:] = 0.0
        self.rng = np.random.default_rng([self.seed, self._steps])

    def close(self) -> None:
        self.env.close()
