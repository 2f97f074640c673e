"""Push-T (Diffusion Policy, Chi et al. 2023) in pure JAX: push a T block onto a goal pose.

The task, numbers and initial-state distribution of ``diffusion_policy/env/pusht/pusht_env.py``
(pymunk), with the physics rebuilt in JAX (``sims/pusht/physics.py``), so it runs under
jit/vmap:

* Workspace 512 x 512 px (x right, y down), walls whose inner faces are at 7 and 504 px.
* T block of two boxes (bar 120 x 30, stem 30 x 90 px), mass 1, inertia 3000, centre of gravity
  at (0, 45) in its local frame (origin: the middle of the bar's top edge).
* Pusher: disc of radius 15 px; the action is its target position in [0, 512]^2 px, tracked by
  a PD law (k_p 100, k_v 20) at 100 Hz physics, 10 Hz control (10 substeps).
* Goal pose (256, 256, pi/4). Coverage = area(block & goal) / area(goal) (exact polygon
  clipping); reward = clip(coverage / 0.95, 0, 1); the episode terminates (success) when
  coverage > 0.95. 300 control steps per episode (the benchmark's evaluation length).
* Reset: pusher at integers in [50, 450)^2, block origin at integers in [100, 400)^2, block angle
  ``N(0, 1) * 2 pi - pi`` (the benchmark's draws); a pusher drawn overlapping the block is moved
  out of it (the benchmark lets pymunk separate them in one physics step).

Observation ``state`` ``[5]``: pusher x, y (px), block origin x, y (px), block angle (rad, wrapped
to [0, 2 pi)), unnormalised as in the benchmark. With ``obs="image"`` the observation is the dict
``{"state": [5], "pixels": [96, 96, 3] uint8}`` rendered in JAX (``sims/pusht/render.py``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.envs import EnvState
from robotrl.types import ArraySpec, EnvSpec, Field, PRNGKey
from sims.pusht import geometry, physics, render


@dataclasses.dataclass(frozen=True, kw_only=True)
class PushTConfig:
    obs: str = "state"  # "state": flat [5] vector; "image": {"state": [5], "pixels": [H, W, 3]}
    image_size: int = 96  # px, side of the "pixels" observation
    render_size: int = 256  # px, side of the frames ``render`` returns for videos
    workspace: float = 512.0  # px, side of the square workspace
    wall_low: float = 7.0  # px, inner face of the left/top walls (segment at 5, radius 2)
    wall_high: float = 504.0  # px, inner face of the right/bottom walls (segment at 506, radius 2)
    agent_radius: float = 15.0  # px, pusher disc radius
    tee_scale: float = 30.0  # px, width of the bar and the stem
    tee_length: float = 4.0  # bar length / width; the stem is (length - 1) widths long
    sim_dt: float = 0.01  # s, physics substep (the benchmark's 100 Hz)
    substeps: int = 10  # physics substeps per control step (ctrl_dt = sim_dt * substeps)
    solver_iterations: int = 8  # Gauss-Seidel sweeps over the pusher contacts per substep
    contact_bias: float = 0.2  # fraction of penetration (beyond the slop) removed per substep
    contact_slop: float = 0.1  # px of penetration left uncorrected (pymunk's collision slop)
    pen_tolerance: float = 0.5  # px; deeper pusher penetration is projected out
    goal_pose: tuple[float, float, float] = (256.0, 256.0, math.pi / 4)  # px, px, rad
    success_threshold: float = 0.95  # coverage above which the episode succeeds
    terminate_on_success: bool = True  # the benchmark ends the episode at success
    # "coverage": the benchmark's dense clip(coverage / threshold) per step; "success": sparse,
    # 1 at the step that succeeds and 0 otherwise (the binary task reward RL-100 trains with).
    reward: str = "coverage"
    episode_length: int = 300  # control steps (the benchmark's max_steps)
    init_agent_range: tuple[float, float] = (50.0, 450.0)  # px, integer draws in [low, high)
    init_block_range: tuple[float, float] = (100.0, 400.0)  # px, integer draws in [low, high)
    # Physical parameters (defaults of ``default_params``; randomisation replaces them).
    block_mass: float = 1.0  # benchmark mass units
    block_inertia: float = 3000.0  # mass px^2, about the centre of gravity
    block_cog: tuple[float, float] = (0.0, 45.0)  # px, centre of gravity in the local frame
    linear_damping_time: float = 0.0  # s, block velocity decays as exp(-t/tau); 0: quasi-static
    angular_damping_time: float = 0.0  # s, the same for its spin
    friction: float = 0.0  # Coulomb coefficient pusher/block (0 in the benchmark)
    kp: float = 100.0  # 1/s^2, PD stiffness of the pusher
    kv: float = 20.0  # 1/s, PD damping of the pusher

    def __post_init__(self) -> None:
        if self.obs not in ("state", "image"):
            raise ValueError(f"PushTConfig.obs must be 'state' or 'image', got {self.obs!r}")
        if self.reward not in ("coverage", "success"):
            raise ValueError(
                f"PushTConfig.reward must be 'coverage' or 'success', got {self.reward!r}"
            )


# Benchmark colours (pygame's named colours), RGB in [0, 1].
COLORS = {
    "background_color": (1.0, 1.0, 1.0),  # white
    "wall_color": (211 / 255, 211 / 255, 211 / 255),  # LightGray
    "goal_color": (144 / 255, 238 / 255, 144 / 255),  # LightGreen
    "block_color": (119 / 255, 136 / 255, 153 / 255),  # LightSlateGray
    "agent_color": (65 / 255, 105 / 255, 225 / 255),  # RoyalBlue
}


class PushT:
    """Functional Push-T; ``params`` (physical and visual) are per episode, for randomisation."""

    def __init__(self, config: PushTConfig | None = None):
        self.config = c = config or PushTConfig()
        centres, halves = geometry.tee_boxes(c.tee_scale, c.tee_length)
        self.geometry = physics.Geometry(
            box_centres=tuple(map(tuple, centres.tolist())),
            box_halves=tuple(map(tuple, halves.tolist())),
            agent_radius=c.agent_radius,
            wall_low=c.wall_low,
            wall_high=c.wall_high,
            sim_dt=c.sim_dt,
            substeps=c.substeps,
            solver_iterations=c.solver_iterations,
            contact_bias=c.contact_bias,
            contact_slop=c.contact_slop,
            pen_tolerance=c.pen_tolerance,
        )
        self.box_centres, self.box_halves = centres, halves
        self._renderers: dict = {}

    @property
    def spec(self) -> EnvSpec:
        c = self.config
        extra = {}
        if c.obs == "image":
            extra = {"pixels": ArraySpec((c.image_size, c.image_size, 3), "uint8")}
        return EnvSpec(
            name="pusht",
            obs=ArraySpec((5,)),
            action_low=(0.0, 0.0),
            action_high=(c.workspace, c.workspace),
            ctrl_dt=c.sim_dt * c.substeps,
            episode_length=c.episode_length,
            obs_layout=(
                Field("agent_pos", 2, "px", "workspace", "pusher centre (x right, y down)"),
                Field("block_pos", 2, "px", "workspace", "block local origin: bar top middle"),
                Field("block_angle", 1, "rad", "workspace", "block angle wrapped to [0, 2 pi)"),
            ),
            action_layout=(
                Field("target_pos", 2, "px", "workspace", "pusher target for the PD law"),
            ),
            extra_obs=extra,
            reward_range=(0.0, 1.0),
        )

    @property
    def goal_pose(self) -> jax.Array:
        return jnp.asarray(self.config.goal_pose, jnp.float32)

    def success(self, traces: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
        """Episodes whose coverage passed ``success_threshold`` at some step (``fly``'s judge, as
        the evaluation's ``success`` metric). ``traces``: metrics ``[T, B]``; ``lengths [B]``:
        steps after an episode's end hold its last values, so only its own steps count."""
        del lengths
        return np.asarray(traces["success"]).max(axis=0) > 0.5

    def default_params(self) -> dict[str, jax.Array]:
        c = self.config
        f32 = lambda v: jnp.asarray(v, jnp.float32)
        return {
            "block_mass": f32(c.block_mass),
            "block_inertia": f32(c.block_inertia),
            "block_cog": f32(c.block_cog),
            "linear_damping_time": f32(c.linear_damping_time),
            "angular_damping_time": f32(c.angular_damping_time),
            "friction": f32(c.friction),
            "kp": f32(c.kp),
            "kv": f32(c.kv),
            **{name: f32(rgb) for name, rgb in COLORS.items()},
            "camera_offset": f32((0.0, 0.0)),  # px of workspace
            "camera_rotation": f32(0.0),  # rad
            "camera_scale": f32(1.0),  # workspace px per nominal px (>1 zooms out)
            "brightness": f32(0.0),  # added to every channel in [0, 1]
            "contrast": f32(1.0),  # scales the channels about 0.5
        }

    def reset(self, key: PRNGKey, params: dict[str, jax.Array] | None = None) -> EnvState:
        c = self.config
        key, k_pos, k_angle = jax.random.split(key, 3)
        # Integers uniform in [low, high), as the benchmark's RandomState.randint draws.
        low = jnp.array(c.init_agent_range[:1] * 2 + c.init_block_range[:1] * 2)
        high = jnp.array(c.init_agent_range[1:] * 2 + c.init_block_range[1:] * 2)
        pos = jnp.floor(jax.random.uniform(k_pos, (4,), minval=low, maxval=high))
        agent, block = pos[:2], pos[2:]
        angle = jax.random.normal(k_angle, ()) * 2 * jnp.pi - jnp.pi
        return self.reset_to(key, agent, jnp.concatenate([block, angle[None]]), params)

    def reset_to(
        self, key: PRNGKey, agent_pos: jax.Array, block_pose: jax.Array, params=None
    ) -> EnvState:
        """Starts an episode from a pusher position ``[2]`` and block pose ``[3]`` (px, rad)."""
        params = self.default_params() if params is None else params
        agent_pos = physics.push_out(self.geometry, block_pose, agent_pos, 0.0)
        agent_pos, _ = physics.clamp_agent(self.geometry, agent_pos, jnp.zeros(2))
        phys = physics.PushTPhysics(
            agent_pos=agent_pos,
            agent_vel=jnp.zeros(2),
            block_pose=block_pose.astype(jnp.float32),
            block_vel=jnp.zeros(3),
            target=agent_pos,
        )
        cov = self.coverage(phys)
        return EnvState(
            obs=self.observe(phys, params),
            reward=jnp.zeros(()),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            physics=phys,
            params=params,
            key=key,
            metrics={
                "coverage": cov,
                "success": (cov > self.config.success_threshold).astype(jnp.float32),
            },
            info={},
        )

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        c = self.config
        target = jnp.clip(action.astype(jnp.float32), 0.0, c.workspace)
        phys = physics.control_step(self.geometry, state.params, state.physics, target)
        cov = self.coverage(phys)
        success = cov > c.success_threshold
        if c.reward == "success":
            reward = success.astype(jnp.float32)
        else:
            reward = jnp.clip(cov / c.success_threshold, 0.0, 1.0)
        return state.replace(
            obs=self.observe(phys, state.params),
            reward=reward,
            terminated=jnp.logical_and(success, c.terminate_on_success),
            truncated=jnp.zeros((), bool),
            physics=phys,
            metrics={"coverage": cov, "success": success.astype(jnp.float32)},
        )

    def coverage(self, phys: physics.PushTPhysics) -> jax.Array:
        """``area(block & goal) / area(goal)`` of a physics state."""
        return geometry.coverage(phys.block_pose, self.goal_pose, self.box_centres, self.box_halves)

    def state_obs(self, phys: physics.PushTPhysics) -> jax.Array:
        """The benchmark's ``[5]`` state: pusher xy, block origin xy (px), angle in [0, 2 pi)."""
        angle = jnp.mod(phys.block_pose[2], 2 * jnp.pi)
        angle = jnp.where(angle >= 2 * jnp.pi, 0.0, angle)  # float32 rounding of tiny negatives
        return jnp.concatenate([phys.agent_pos, phys.block_pose[:2], angle[None]])

    def observe(self, phys: physics.PushTPhysics, params: dict):
        """The observation of a physics state under ``params`` (re-render after new params)."""
        state = self.state_obs(phys)
        if self.config.obs == "state":
            return state
        return {"state": state, "pixels": self.image(phys, params, self.config.image_size)}

    def image(self, phys: physics.PushTPhysics, params: dict, size: int) -> jax.Array:
        """``[size, size, 3]`` uint8 frame of a physics state (pure JAX)."""
        c = self.config
        return render.render_image(
            params,
            phys.agent_pos,
            phys.block_pose,
            self.goal_pose,
            size=size,
            workspace=c.workspace,
            wall_low=c.wall_low,
            wall_high=c.wall_high,
            agent_radius=c.agent_radius,
            box_centres=self.box_centres,
            box_halves=self.box_halves,
        )

    def render(self, state: EnvState, draw_target: bool = True) -> np.ndarray:
        """A ``[render_size, render_size, 3]`` uint8 frame of one unbatched state, for videos;
        the last commanded target is marked with a red cross as in the benchmark's videos."""
        size = self.config.render_size
        if size not in self._renderers:  # one compiled renderer per size: called every frame
            self._renderers[size] = jax.jit(lambda phys, params: self.image(phys, params, size))
        frame = np.array(self._renderers[size](state.physics, state.params))
        if draw_target:
            col, row = (np.asarray(state.physics.target) / self.config.workspace * size).astype(int)
            arm = max(2, size // 48)
            for d in range(-arm, arm + 1):
                for r, cc in ((row + d, col), (row, col + d)):
                    if 0 <= r < size and 0 <= cc < size:
                        frame[r, cc] = (255, 0, 0)
        return frame
