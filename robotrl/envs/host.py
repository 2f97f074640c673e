"""Host (numpy) environments behind the same batch semantics as the functional envs.

A host env holds ``num_envs`` copies of a Python environment (gymnasium, dm_control, a robot) and
auto-resets them: ``step`` returns the observation to act on next (a reset observation where an
episode just ended) and, separately, ``final_obs``, the true last observation of that step, so a
transition can bootstrap from it when the episode was truncated.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import numpy as np

from robotrl.types import ArraySpec, EnvSpec, Field


class HostStep(NamedTuple):
    """Result of one batched host step; every array has leading axis ``[B]``.

    ``metrics`` (optional) are per-env scalars of the step just taken (``name -> [B]``), as a
    functional env's ``EnvState.metrics``; evaluation reports them at each episode's last step.
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    metrics: dict[str, np.ndarray] = {}  # noqa: RUF012 (a NamedTuple default, never mutated)


class HostEnv(Protocol):
    spec: EnvSpec
    num_envs: int

    def reset(self, seed: int) -> np.ndarray: ...

    def step(self, action: np.ndarray) -> HostStep: ...

    def close(self) -> None: ...


class HostRewardScale:
    """A host env whose rewards, and its spec's ``reward_range``, are multiplied by ``scale`` > 0
    (the host counterpart of ``robotrl.envs.RewardScale``); everything else is the env's."""

    def __init__(self, env: HostEnv, scale: float):
        if not scale > 0:
            raise ValueError(f"reward scale must be positive, got {scale}")
        self.env, self.scale = env, float(scale)
        self.num_envs = env.num_envs
        spec = env.spec
        if spec.reward_range is not None:
            low, high = spec.reward_range
            spec = dataclasses.replace(spec, reward_range=(low * self.scale, high * self.scale))
        self.spec = spec

    def reset(self, seed: int) -> np.ndarray:
        return self.env.reset(seed)

    def step(self, action: np.ndarray) -> HostStep:
        out = self.env.step(action)
        return out._replace(reward=(out.reward * self.scale).astype(np.float32))

    def close(self) -> None:
        self.env.close()

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.env, name)


class GymnasiumEnv:
    """Any gymnasium env with Box observation and action spaces, batched on the host."""

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        *,
        make: Callable[[], Any] | None = None,
        reward_range: tuple[float, float] | None = None,
        **kwargs: Any,
    ):
        import gymnasium as gym

        make = make or (lambda: gym.make(env_id, **kwargs))
        self.envs = [make() for _ in range(num_envs)]
        self.num_envs = num_envs
        env = self.envs[0]
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, gym.spaces.Box) or not isinstance(act_space, gym.spaces.Box):
            raise ValueError(f"{env_id}: only Box observation and action spaces are supported")
        unwrapped = env.unwrapped
        dt = getattr(unwrapped, "dt", None)
        if dt is None:
            fps = env.metadata.get("render_fps")
            dt = 1.0 / fps if fps else 0.0
        max_steps = env.spec.max_episode_steps if env.spec is not None else None
        obs_dim = int(np.prod(obs_space.shape))
        self.spec = EnvSpec(
            name=f"gym/{env_id}",
            obs=ArraySpec((obs_dim,)),
            action_low=tuple(float(x) for x in act_space.low),
            action_high=tuple(float(x) for x in act_space.high),
            ctrl_dt=float(dt),
            episode_length=int(max_steps or 1000),
            obs_layout=(Field("obs", obs_dim),),
            action_layout=(Field("action", int(act_space.shape[0])),),
            reward_range=reward_range,
        )
        self._obs = None

    def reset(self, seed: int) -> np.ndarray:
        obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(self.envs)]
        self._obs = np.stack(obs).reshape(self.num_envs, -1).astype(np.float32)
        return self._obs

    def step(self, action: np.ndarray) -> HostStep:
        obs, final, rew, term, trunc = [], [], [], [], []
        for env, act in zip(self.envs, np.asarray(action), strict=True):
            o, r, te, tr, _ = env.step(act)
            final.append(o)
            if te or tr:
                o, _ = env.reset()
            obs.append(o)
            rew.append(r)
            term.append(te)
            trunc.append(tr and not te)
        self._obs = np.stack(obs).reshape(self.num_envs, -1).astype(np.float32)
        return HostStep(
            obs=self._obs,
            reward=np.asarray(rew, np.float32),
            terminated=np.asarray(term, bool),
            truncated=np.asarray(trunc, bool),
            final_obs=np.stack(final).reshape(self.num_envs, -1).astype(np.float32),
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()


class DMControlEnv:
    """A dm_control suite task (``domain``/``task``) with its observation dict flattened."""

    def __init__(
        self,
        domain: str,
        task: str,
        num_envs: int = 1,
        time_limit: float | None = None,
        **task_kwargs: Any,
    ):
        # Headless machines: render through EGL instead of failing to open an X display.
        os.environ.setdefault("MUJOCO_GL", "egl")
        try:
            from dm_control import suite
        except ImportError as err:
            raise ImportError("dm_control is not installed: pip install 'robotrl[dmc]'") from err
        self._suite = suite
        self.domain, self.task, self.task_kwargs = domain, task, task_kwargs
        if time_limit is not None:
            self.task_kwargs["time_limit"] = time_limit
        self.num_envs = num_envs
        self.envs = [self._load(None) for _ in range(num_envs)]
        env = self.envs[0]
        self._keys = list(env.observation_spec().keys())
        sizes = [int(np.prod(s.shape)) for s in env.observation_spec().values()]
        act = env.action_spec()
        step_limit = getattr(env, "_step_limit", None)
        self.spec = EnvSpec(
            name=f"dmc/{domain}-{task}",
            obs=ArraySpec((sum(sizes),)),
            action_low=tuple(float(x) for x in act.minimum),
            action_high=tuple(float(x) for x in act.maximum),
            ctrl_dt=float(env.control_timestep()),
            episode_length=int(step_limit) if step_limit and np.isfinite(step_limit) else 1000,
            obs_layout=tuple(Field(k, n) for k, n in zip(self._keys, sizes, strict=True)),
            action_layout=(Field("action", int(act.shape[0])),),
            reward_range=(0.0, 1.0),  # suite rewards are in [0, 1]
        )

    def _load(self, seed: int | None):
        task_kwargs = dict(self.task_kwargs)
        if seed is not None:
            task_kwargs["random"] = seed
        return self._suite.load(self.domain, self.task, task_kwargs=task_kwargs)

    def _flat(self, observation: dict) -> np.ndarray:
        return np.concatenate([np.asarray(observation[k], np.float32).ravel() for k in self._keys])

    def reset(self, seed: int) -> np.ndarray:
        self.envs = [self._load(seed + i) for i in range(self.num_envs)]
        return np.stack([self._flat(env.reset().observation) for env in self.envs])

    def step(self, action: np.ndarray) -> HostStep:
        obs, final, rew, term, trunc = [], [], [], [], []
        for env, act in zip(self.envs, np.asarray(action), strict=True):
            ts = env.step(act)
            o = self._flat(ts.observation)
            final.append(o)
            ended = ts.last()
            terminated = bool(ended and ts.discount == 0.0)
            if ended:
                o = self._flat(env.reset().observation)
            obs.append(o)
            rew.append(ts.reward or 0.0)
            term.append(terminated)
            trunc.append(bool(ended and not terminated))
        return HostStep(
            obs=np.stack(obs),
            reward=np.asarray(rew, np.float32),
            terminated=np.asarray(term, bool),
            truncated=np.asarray(trunc, bool),
            final_obs=np.stack(final),
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()
