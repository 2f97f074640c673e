"""Gymnasium's v5 locomotion tasks on native MuJoCo, batched on the host (CPU backend).

``num_envs`` (MjModel, MjData) pairs, each stepped exactly as gymnasium steps its env:
``mj_step(model, data, nstep=frame_skip)`` and, for Ant, ``mj_rnePostConstraint``. Observation,
reward, termination and reset noise are ``sims.locomotion.tasks``' functions, called once per
step on the whole ``[B, ...]`` batch in numpy, the same functions the MJX backend calls. With no
randomisation, env ``i`` after ``reset(seed)`` reproduces ``gymnasium.make(task.gym_id)`` reset
with ``seed + i`` step for step (float64 physics; observations returned as float32), auto-resets
included, as ``robotrl.envs.host.GymnasiumEnv`` would batch it.

Why not ``mujoco.rollout`` (present in 3.17) or ``mujoco.batch.Batch``: both return the state
(and sensors) after the substeps but not what gymnasium's Ant reads after ``mj_step``, the
``cfrc_ext`` of ``mj_rnePostConstraint`` and the torso ``xpos`` of the last Runge-Kutta stage, so
they cannot reproduce Ant exactly. A plain loop over ``mj_step`` can, and ``mj_step`` releases the
GIL, so contiguous chunks of envs run on a thread pool (``num_threads``; ~180k physics steps/s
per core for HalfCheetah here, the same as ``Batch`` and ``rollout``).

Domain randomisation: ``randomize`` (a parameter set, e.g. ``PARAMETER_SETS["train"]``) draws new
parameters for an env at each of its resets; ``set_params`` fixes them. Each env has its own
MjModel, written through the same ``model_fields`` as the MJX backend.
"""

from __future__ import annotations

import concurrent.futures
import copy
import itertools
import os
from collections.abc import Mapping

import numpy as np

from robotrl.envs.host import HostStep
from robotrl.envs.randomize import Range
from robotrl.types import EnvSpec
from sims.locomotion import model as model_lib
from sims.locomotion.model import mujoco
from sims.locomotion.randomize import sample_params
from sims.locomotion.tasks import LocomotionConfig, LocomotionTask, resolve_task


class NativeLocomotionEnv:
    """A batch of native MuJoCo envs behind ``robotrl.envs.host.HostEnv``'s semantics.

    Args:
      task: a name in ``TASKS`` or a task object.
      num_envs: batch size B.
      config: shared settings (weights, episode length, render size).
      randomize: parameter ranges drawn at every reset of an env, or None for the model's own.
      num_threads: threads stepping chunks of envs; None: one per 32 envs, at most the CPUs.
    """

    def __init__(
        self,
        task: str | LocomotionTask,
        num_envs: int = 1,
        config: LocomotionConfig | None = None,
        *,
        randomize: Mapping[str, Range] | None = None,
        num_threads: int | None = None,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.config = config or LocomotionConfig()
        self.task = resolve_task(task, self.config)
        self.num_envs = num_envs
        self.randomize = randomize
        self.base_model = model_lib.load_model(self.task)  # spec, parameters, rendering
        physics = model_lib.load_model(self.task, textures=False)
        self.models = [copy.copy(physics) for _ in range(num_envs)]
        self.datas = [mujoco.MjData(m) for m in self.models]
        self.spec: EnvSpec = model_lib.make_spec(self.task, self.base_model, self.config)
        self.dt = float(self.base_model.opt.timestep * self.task.frame_skip)
        self._defaults = model_lib.default_params(self.base_model)
        self._const = model_lib.model_constants(self.base_model)
        self._params = {k: np.repeat(v[None], num_envs, 0) for k, v in self._defaults.items()}
        if randomize is not None:
            sample_params(randomize, self._defaults, np.random.default_rng(0))  # checks names
        m = self.base_model
        self._low, self._high = m.actuator_ctrlrange[:, 0].copy(), m.actuator_ctrlrange[:, 1].copy()
        self._qpos = np.zeros((num_envs, m.nq))
        self._qvel = np.zeros((num_envs, m.nv))
        self._xpos = np.zeros((num_envs, m.nbody, 3))
        self._cfrc = np.zeros((num_envs, m.nbody, 6))
        self._pos = np.zeros((num_envs, 2))
        self._steps = np.zeros(num_envs, np.int64)
        self._rngs: list[np.random.Generator] = []
        self._param_rngs: list[np.random.Generator] = []
        threads = num_threads or min(os.cpu_count() or 1, max(1, num_envs // 32))
        bounds = np.linspace(0, num_envs, min(threads, num_envs) + 1).astype(int)
        self._chunks = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.num_threads = len(self._chunks)
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(self.num_threads)
            if self.num_threads > 1
            else None
        )
        self._renderer: model_lib.FrameRenderer | None = None
        self.last_metrics: dict[str, np.ndarray] = {}  # the last step's reward terms, [B] each

    # Parameters ------------------------------------------------------------------------------

    def default_params(self) -> dict[str, np.ndarray]:
        """The model's own physical parameters (float64, unbatched)."""
        return {k: v.copy() for k, v in self._defaults.items()}

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Every env's current parameters, ``[B, ...]``."""
        return {k: v.copy() for k, v in self._params.items()}

    def set_params(self, params: Mapping[str, np.ndarray], ids: np.ndarray | None = None) -> None:
        """Sets parameters (``[B, ...]`` or unbatched) of envs ``ids`` (all if None).

        They hold until the env's next reset draws new ones (only when ``randomize`` is set).
        """
        ids = np.arange(self.num_envs) if ids is None else np.asarray(ids)
        for name, value in params.items():
            if name not in self._params:
                raise KeyError(f"unknown parameter {name!r}; this env has {sorted(self._params)}")
            value = np.asarray(value, np.float64)
            if value.shape == self._defaults[name].shape:
                value = np.broadcast_to(value, (len(ids), *value.shape))
            self._params[name][ids] = value
        for i in ids:
            one = {k: v[i] for k, v in self._params.items()}
            model_lib.set_model_fields(self.models[i], model_lib.model_fields(one, self._const))

    # Episodes --------------------------------------------------------------------------------

    def reset(self, seed: int) -> np.ndarray:
        """Resets every env; env ``i`` draws its noise from ``default_rng(seed + i)``."""
        self._seed(seed)
        ids = np.arange(self.num_envs)
        self._reset_envs(ids)
        return self._observe(ids)

    def reset_to(self, qpos: np.ndarray, qvel: np.ndarray, seed: int = 0) -> np.ndarray:
        """Every env from a given state ``[B, nq]``, ``[B, nv]`` (as gymnasium's ``set_state``
        after ``mj_resetData``); keeps the current parameters; later auto-resets draw from
        ``seed`` as in ``reset``. Returns obs ``[B, O]``."""
        self._seed(seed)
        qpos = np.broadcast_to(qpos, self._qpos.shape)
        qvel = np.broadcast_to(qvel, self._qvel.shape)
        for i in range(self.num_envs):
            self._set_state(i, qpos[i], qvel[i])
        self._steps[:] = 0
        ids = np.arange(self.num_envs)
        return self._observe(ids)

    def step(self, action: np.ndarray) -> HostStep:
        """One control step of every env; ended envs are reset (``final_obs`` keeps their end)."""
        if not self._rngs:
            raise RuntimeError("call reset(seed) or reset_to(qpos, qvel) before step")
        action = np.clip(np.asarray(action, np.float64), self._low, self._high)
        if action.shape != (self.num_envs, self.base_model.nu):
            raise ValueError(f"action must be [{self.num_envs}, {self.base_model.nu}]")
        pos_before = self._pos.copy()
        if self._pool is None:
            self._step_chunk(0, self.num_envs, action)
        else:
            futures = [self._pool.submit(self._step_chunk, a, b, action) for a, b in self._chunks]
            for f in futures:
                f.result()
        task = self.task
        cfrc = self._cfrc if task.uses_cfrc_ext else None
        self._pos = task.position(self._qpos, self._xpos)
        healthy = task.is_healthy(self._qpos, self._qvel)
        terms = task.reward(
            pos_before, self._pos, action, healthy, self.dt, cfrc, qpos=self._qpos, qvel=self._qvel
        )
        terminated = np.asarray(task.terminated(healthy), bool)
        obs = task.observation(self._qpos, self._qvel, cfrc).astype(np.float32)
        self._steps += 1
        truncated = (self._steps >= self.config.episode_length) & ~terminated
        done = np.flatnonzero(terminated | truncated)
        next_obs = obs.copy()
        if done.size:
            self._reset_envs(done)
            next_obs[done] = self._observe(done)
        self.last_metrics = {k: np.asarray(v) for k, v in terms.items() if k != "reward"}
        return HostStep(
            obs=next_obs,
            reward=np.asarray(terms["reward"], np.float32),
            terminated=terminated,
            truncated=truncated,
            final_obs=obs,
        )

    def render(self, index: int = 0) -> np.ndarray:
        """``[H, W, 3]`` uint8 of env ``index`` from the XML's tracking camera."""
        if self._renderer is None:
            self._renderer = model_lib.FrameRenderer(
                self.base_model, self.config, self.config.camera or self.task.camera
            )
        return self._renderer.render_data(self.datas[index])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # Internals -------------------------------------------------------------------------------

    def _seed(self, seed: int) -> None:
        self._rngs = [np.random.default_rng(seed + i) for i in range(self.num_envs)]
        self._param_rngs = [np.random.default_rng([seed + i, 1]) for i in range(self.num_envs)]

    def _step_chunk(self, start: int, stop: int, action: np.ndarray) -> None:
        """Steps envs [start, stop) and copies out what the task reads (runs on a pool thread)."""
        fs, post, body = self.task.frame_skip, self.task.uses_cfrc_ext, self.task.main_body
        for i in range(start, stop):
            model, data = self.models[i], self.datas[i]
            data.ctrl[:] = action[i]
            mujoco.mj_step(model, data, nstep=fs)
            if post:  # as gymnasium: cfrc_ext is not computed by mj_step
                mujoco.mj_rnePostConstraint(model, data)
                self._cfrc[i] = data.cfrc_ext
            if body is not None:
                self._xpos[i] = data.xpos
            self._qpos[i] = data.qpos
            self._qvel[i] = data.qvel

    def _reset_envs(self, ids: np.ndarray) -> None:
        """New episodes for ``ids``: new parameters if randomised, then gymnasium's reset."""
        task, m = self.task, self.base_model
        for i in ids:
            if self.randomize is not None:
                params = sample_params(self.randomize, self._defaults, self._param_rngs[i])
                for k, v in params.items():
                    self._params[k][i] = v
                model_lib.set_model_fields(
                    self.models[i], model_lib.model_fields(params, self._const)
                )
            rng = self._rngs[i]
            qpos_noise = _draw(rng, task.qpos_noise, m.nq)
            qvel_noise = _draw(rng, task.qvel_noise, m.nv)
            qpos, qvel = task.initial_state(m.qpos0, np.zeros(m.nv), qpos_noise, qvel_noise)
            self._set_state(int(i), qpos, qvel)
            self._steps[i] = 0

    def _set_state(self, i: int, qpos: np.ndarray, qvel: np.ndarray) -> None:
        model, data = self.models[i], self.datas[i]
        mujoco.mj_resetData(model, data)
        data.qpos[:] = qpos
        data.qvel[:] = qvel
        mujoco.mj_forward(model, data)
        self._qpos[i], self._qvel[i], self._xpos[i] = data.qpos, data.qvel, data.xpos
        self._cfrc[i] = 0.0  # gymnasium's reset observation: mj_forward leaves cfrc_ext zero

    def _observe(self, ids: np.ndarray) -> np.ndarray:
        """Observation ``[len(ids), O]`` of freshly reset envs; records their start position."""
        task = self.task
        self._pos[ids] = task.position(self._qpos[ids], self._xpos[ids])
        cfrc = self._cfrc[ids] if task.include_cfrc_ext else None
        return task.observation(self._qpos[ids], self._qvel[ids], cfrc).astype(np.float32)


def _draw(rng: np.random.Generator, noise, size: int) -> np.ndarray:
    """gymnasium's draws: ``uniform(low=-s, high=s, size)`` or ``s * standard_normal(size)``."""
    scale = np.asarray(noise.scale, np.float64)
    if noise.kind == "uniform":
        return rng.uniform(low=-scale, high=scale, size=size)
    return scale * rng.standard_normal(size)


def make_native_env(
    task: str, num_envs: int = 1, config: LocomotionConfig | None = None, **kwargs
) -> NativeLocomotionEnv:
    """Host-env factory: ``lambda n: make_native_env("hopper", n, config)``."""
    return NativeLocomotionEnv(task, num_envs, config, **kwargs)
