"""Gymnasium's v5 locomotion tasks on MJX: functional, jittable, vmappable (accelerator backend).

Physics state is an ``mjx.Data`` of gymnasium's model (float32); a control step applies the
clipped action as ``ctrl`` and runs ``frame_skip`` ``mjx.step`` calls in a ``lax.fori_loop``
(plus ``mjx.rne_postconstraint`` for Ant, as gymnasium calls ``mj_rnePostConstraint``).
Observation, reward, termination and reset noise are ``sims.locomotion.tasks``' functions, the
same the native backend calls. ``state.params`` (``default_params``) holds body masses, geom
friction, actuator gears and joint damping; ``step`` writes them into the model every step
(``model_fields``), so each vmapped env can run its own randomised physics.

On a CPU this backend compiles for 10-30 s per batch shape and ran HalfCheetah at 0.09-0.16x the
control steps/s of single-thread native MuJoCo (``benchmarks/mjx_vs_native.py``); use
``NativeLocomotionEnv`` there (``sims.locomotion.default_backend()`` says which fits).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.envs import EnvState
from robotrl.types import EnvSpec, PRNGKey
from sims.locomotion import model as model_lib
from sims.locomotion.tasks import LocomotionConfig, LocomotionTask, resolve_task


class MJXLocomotion:
    """One locomotion task on MJX; ``reset``/``step`` are unbatched and pure.

    Args:
      task: a name in ``TASKS`` ("hopper", "halfcheetah", "walker2d", "ant") or a task object.
      config: shared settings (weights, episode length, MJX solver iterations, render size).
    """

    def __init__(self, task: str | LocomotionTask, config: LocomotionConfig | None = None):
        self.config = config or LocomotionConfig()
        self.task = resolve_task(task, self.config)
        mjx = model_lib.import_mjx()
        self._mjx = mjx
        self.mj_model = model_lib.load_model(self.task, textures=False)  # rendering loads its own
        if self.config.solver_iterations is not None:
            self.mj_model.opt.iterations = self.config.solver_iterations
        if self.config.ls_iterations is not None:
            self.mj_model.opt.ls_iterations = self.config.ls_iterations
        # dm_control's XMLs enable energy bookkeeping, which MJX lacks; it changes no dynamics.
        energy = int(model_lib.mujoco.mjtEnableBit.mjENBL_ENERGY)
        self.mj_model.opt.enableflags &= ~energy
        self.model = mjx.put_model(self.mj_model)
        # Host copy: reset turns it into uncommitted arrays, like every jit output, so states
        # from a jitted reset, an eager reset_to and step all hit one compiled step (a jit cache
        # entry depends on whether its inputs are committed to a device).
        self._data0 = jax.tree.map(np.asarray, mjx.make_data(self.model))
        self._const = {
            k: jnp.asarray(v, jnp.float32)
            for k, v in model_lib.model_constants(self.mj_model).items()
        }
        self._init_qpos = jnp.asarray(self.mj_model.qpos0, jnp.float32)
        self._init_qvel = jnp.zeros(self.mj_model.nv, jnp.float32)
        self._ctrl_low = jnp.asarray(self.mj_model.actuator_ctrlrange[:, 0], jnp.float32)
        self._ctrl_high = jnp.asarray(self.mj_model.actuator_ctrlrange[:, 1], jnp.float32)
        self.dt = float(self.mj_model.opt.timestep * self.task.frame_skip)
        self._spec = model_lib.make_spec(self.task, self.mj_model, self.config)
        self._renderer: model_lib.FrameRenderer | None = None

    @property
    def spec(self) -> EnvSpec:
        return self._spec

    def default_params(self) -> dict[str, jax.Array]:
        """Physical parameters (float32), see ``sims.locomotion.model``."""
        return {
            k: jnp.asarray(v, jnp.float32)
            for k, v in model_lib.default_params(self.mj_model).items()
        }

    def reset(self, key: PRNGKey, params: dict[str, jax.Array] | None = None) -> EnvState:
        """A new episode: ``qpos0`` and zero velocity plus the task's reset noise, run with
        ``params`` (``default_params()`` when None)."""
        key, k_qpos, k_qvel = jax.random.split(key, 3)
        qpos_noise = self._noise(k_qpos, self.task.qpos_noise, self.mj_model.nq)
        qvel_noise = self._noise(k_qvel, self.task.qvel_noise, self.mj_model.nv)
        qpos, qvel = self.task.initial_state(
            self._init_qpos, self._init_qvel, qpos_noise, qvel_noise
        )
        return self.reset_to(key, qpos, qvel, params)

    def reset_to(
        self,
        key: PRNGKey,
        qpos: jax.Array,
        qvel: jax.Array,
        params: dict[str, jax.Array] | None = None,
    ) -> EnvState:
        """Starts an episode from a given state ``[nq]``, ``[nv]`` (used by parity tests).

        Like gymnasium's ``set_state`` after ``mj_resetData``: time, controls and the solver's
        warm start are zero; kinematics are computed (Ant reads the torso's ``xpos``);
        ``cfrc_ext`` reads zero until the first step.
        """
        params = self.default_params() if params is None else params
        data = jax.tree.map(jnp.asarray, self._data0).replace(
            qpos=jnp.asarray(qpos, jnp.float32), qvel=jnp.asarray(qvel, jnp.float32)
        )
        if self.task.main_body is not None:
            with _mjx_numpy_rules():
                data = self._mjx.kinematics(self._model_with(params), data)
        zero_forces = jnp.zeros((self.mj_model.nbody, 6), jnp.float32)
        obs = self.task.observation(data.qpos, data.qvel, zero_forces, jnp)
        zero = jnp.zeros((), jnp.float32)
        return EnvState(
            obs=obs.astype(jnp.float32),
            reward=zero,
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            physics=data,
            params=params,
            key=key,
            metrics={k: zero for k in self.task.metric_keys},
            info={},
        )

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        """One control step: ``frame_skip`` physics steps under the episode's parameters."""
        model = self._model_with(state.params)
        action = jnp.clip(jnp.asarray(action, jnp.float32), self._ctrl_low, self._ctrl_high)
        data = state.physics
        pos_before = self.task.position(data.qpos, data.xpos, jnp)
        data = data.replace(ctrl=action)
        cfrc_ext = None
        with _mjx_numpy_rules():
            data = jax.lax.fori_loop(
                0, self.task.frame_skip, lambda _, d: self._mjx.step(model, d), data
            )
            if self.task.uses_cfrc_ext:
                data = self._mjx.rne_postconstraint(model, data)
                cfrc_ext = data._impl.cfrc_ext  # MJX 3.17 keeps it on the JAX implementation
        pos_after = self.task.position(data.qpos, data.xpos, jnp)
        healthy = self.task.is_healthy(data.qpos, data.qvel, jnp)
        terms = self.task.reward(
            pos_before,
            pos_after,
            action,
            healthy,
            self.dt,
            cfrc_ext,
            jnp,
            qpos=data.qpos,
            qvel=data.qvel,
        )
        obs = self.task.observation(data.qpos, data.qvel, cfrc_ext, jnp)
        return state.replace(
            obs=obs.astype(jnp.float32),
            reward=terms["reward"].astype(jnp.float32),
            terminated=self.task.terminated(healthy, jnp),
            truncated=jnp.zeros((), bool),  # time limits are EpisodeLimit's job
            physics=data,
            metrics={k: terms[k].astype(jnp.float32) for k in self.task.metric_keys},
        )

    def render(self, state: EnvState) -> np.ndarray:
        """``[H, W, 3]`` uint8 of one unbatched state, from the XML's tracking camera."""
        if self._renderer is None:
            self._renderer = model_lib.FrameRenderer(
                model_lib.load_model(self.task), self.config, self.config.camera or self.task.camera
            )
        qpos = np.asarray(state.physics.qpos, np.float64)
        qvel = np.asarray(state.physics.qvel, np.float64)
        if qpos.ndim != 1:
            raise ValueError("render takes one unbatched state; index a batch first")
        return self._renderer.render_state(qpos, qvel)

    def _model_with(self, params: dict[str, jax.Array]):
        fields = model_lib.model_fields(params, self._const, jnp)
        return self.model.replace(**fields)

    @staticmethod
    def _noise(key: PRNGKey, noise, size: int) -> jax.Array:
        scale = jnp.asarray(noise.scale, jnp.float32)
        if noise.kind == "uniform":
            return jax.random.uniform(key, (size,), jnp.float32, -scale, scale)
        return scale * jax.random.normal(key, (size,), jnp.float32)


def _mjx_numpy_rules():
    """MJX's own code relies on NumPy rank promotion; allow it there even where a program
    (robotrl's tests) makes it raise everywhere else."""
    return jax.numpy_rank_promotion("allow")


def make_mjx_env(task: str, config: LocomotionConfig | None = None) -> MJXLocomotion:
    """``make(config)`` for the registry: ``functools.partial(make_mjx_env, "hopper")``."""
    return MJXLocomotion(task, config)
