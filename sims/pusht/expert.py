"""A scripted Push-T expert in pure JAX, and batched demonstration collection.

The expert reads only the benchmark's ``[5]`` state (pusher xy, block origin xy, block angle)
and is memoryless, so it runs under ``vmap`` and inside ``lax.scan``. Each control step:

1. Pose error: the desired motion of the block's centre of gravity ``dp`` (px) and of its angle
   ``dth`` (rad, wrapped), stacked as ``d = (dp, L dth)`` with ``L`` px per rad chosen from the
   coverage's sensitivity (1 px of offset costs about as much coverage as 1/45 rad).
2. Candidate pushes: fixed contact points on the T's outline that the 15 px disc can reach (bar
   top, bar ends, the bar's underside beside the stem, stem sides, stem end), each with its face
   normal. With frictionless quasi-static pushing (the benchmark's regime) a push at point ``c``
   along the inward normal ``f`` moves the block along ``u = (f / m, L (r x f) / I)``
   (``r = c - cog``). Score = cos(u, d) minus a travel cost (distance from the pusher to the
   point's approach position), minus infinity for approach positions outside the walls.
3. Act on the best candidate: if the pusher sits in its approach corridor (on the face normal,
   within a few px), push: target the contact point moved along ``f`` by the normal displacement
   that minimises ``|d - lambda u|`` (clipped). Otherwise reposition without touching the block:
   straight to the approach point when that segment clears the block, else radially out to a
   circle around the block, around it (the way that stays inside the walls), then in along the
   face normal.

The travel cost gives the choice hysteresis (the candidate being pushed costs nothing to reach),
so the expert alternates translating and rotating phases instead of chattering.
``collect_demonstrations`` rolls it out at batch and returns ``[N, T, ...]`` arrays.

Measured (300-step episodes, success = coverage > 0.95, 500 episodes from
``PRNGKey(1)``): 99.8% with default parameters (mean 115 steps to success), 99.0% under the
"train" randomisation, 100% under "heldout"; 30/30 when run closed loop on pymunk set up as the
benchmark's env.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.envs.randomize import make_randomizer
from robotrl.types import PRNGKey
from sims.pusht import geometry
from sims.pusht.env import PushT, PushTConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExpertConfig:
    rotation_length: float = 45.0  # px per rad weighting angle error against offset (L)
    travel_cost: float = 0.25  # score lost per 100 px of repositioning
    approach_gap: float = 8.0  # px between the disc and the face before a push starts
    corridor_tolerance: float = 3.0  # px, lateral slack of the pusher on the approach line
    push_gain: float = 1.5  # multiplies the optimal contact displacement (PD lag)
    max_push: float = 40.0  # px, cap on the commanded push depth per control step
    min_push: float = 0.5  # px, push depth when the chosen push is useful at all
    follow_step: float = 35.0  # px, tangent step of the target while going round the block
    max_pull: float = 40.0  # px, cap on the pull toward the level set while going round
    clearance: float = 1.0  # px, required gap when checking a straight repositioning path
    min_align: float = 0.1  # below this best cosine, push for the goal position alone
    squeeze_clearance: float = 2.0  # px, least block-disc gap of a way round between walls
    mass: float = 1.0  # nominal block mass the expert plans with
    inertia: float = 3000.0  # nominal inertia, mass px^2
    cog: tuple[float, float] = (0.0, 45.0)  # nominal centre of gravity, local px


def contact_candidates(scale: float = 30.0, length: float = 4.0, radius: float = 15.0):
    """Reachable contact points ``[K, 2]`` and outward normals ``[K, 2]`` in the block frame."""
    half_bar, stem_end = length * scale / 2, length * scale
    pts, nrm = [], []

    def add(points, normal):
        for p in points:
            pts.append(p)
            nrm.append(normal)

    add([(x, 0.0) for x in np.linspace(-half_bar + 8, half_bar - 8, 11)], (0.0, -1.0))
    for side in (-1.0, 1.0):
        add([(side * half_bar, y) for y in (8.0, 15.0, 22.0)], (side, 0.0))
        # Underside of the bar: the disc centre must clear the stem by its radius.
        under = np.linspace(scale / 2 + radius + 2, half_bar - 6, 3)
        add([(side * x, scale) for x in under], (0.0, 1.0))
        sides = np.linspace(scale + radius + 2, stem_end - 6, 6)
        add([(side * scale / 2, y) for y in sides], (side, 0.0))
    add([(x, stem_end) for x in np.linspace(-scale / 2 + 5, scale / 2 - 5, 5)], (0.0, 1.0))
    return np.asarray(pts, np.float32), np.asarray(nrm, np.float32)


def _wrap(angle: jax.Array) -> jax.Array:
    return (angle + jnp.pi) % (2 * jnp.pi) - jnp.pi


def expert_action(
    state_obs: jax.Array,
    env_config: PushTConfig | None = None,
    config: ExpertConfig | None = None,
) -> jax.Array:
    """The expert's pusher target ``[2]`` (px) for one ``[5]`` state observation."""
    return expert_plan(state_obs, env_config, config)[0]


def expert_plan(
    state_obs: jax.Array,
    env_config: PushTConfig | None = None,
    config: ExpertConfig | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``expert_action`` and its reasons: the chosen candidate, its score, the mode."""
    env_config = env_config or PushTConfig()
    cfg = config or ExpertConfig()
    centres, halves = geometry.tee_boxes(env_config.tee_scale, env_config.tee_length)
    radius = env_config.agent_radius
    cand_pts, cand_nrm = contact_candidates(env_config.tee_scale, env_config.tee_length, radius)
    cog_l = jnp.asarray(cfg.cog, jnp.float32)
    lo = env_config.wall_low + radius
    hi = env_config.wall_high - radius

    agent, pose = state_obs[:2], state_obs[2:5]
    goal = jnp.asarray(env_config.goal_pose, jnp.float32)
    cog = geometry.to_world(pose, cog_l)
    d_pos = geometry.to_world(goal, cog_l) - cog
    d_rot = _wrap(goal[2] - pose[2])
    big_l = cfg.rotation_length
    desired = jnp.concatenate([d_pos, (big_l * d_rot)[None]])  # [3]

    # Candidate pushes in the world frame.
    c_w = geometry.to_world(pose, jnp.asarray(cand_pts))  # [K, 2]
    n_w = geometry.rotate(pose[2], jnp.asarray(cand_nrm))  # [K, 2] outward
    f_w = -n_w
    r = c_w - cog[None]
    moment = geometry.cross2(r, f_w)  # [K]
    u = jnp.concatenate([f_w / cfg.mass, (big_l * moment / cfg.inertia)[:, None]], axis=1)
    u_norm = jnp.linalg.norm(u, axis=1)
    d_norm = jnp.linalg.norm(desired)
    align = (u @ desired) / (u_norm * jnp.maximum(d_norm, 1e-6))

    touch = c_w + radius * n_w  # disc centre touching the face
    approach = touch + cfg.approach_gap * n_w
    inside = jnp.all((approach >= lo) & (approach <= hi), axis=1)

    def block_sdf(points):
        return geometry.tee_sdf(pose, points, centres, halves)

    # Straight repositioning paths that clear the block, per candidate: [K].
    s = jnp.linspace(0.0, 1.0, 12)
    seg = agent[None, None] + s[None, :, None] * (approach - agent[None])[:, None]
    clear = jnp.all(block_sdf(seg) > radius - cfg.clearance, axis=1)

    # Around the block: along the level set sd = level of its signed distance, the way round
    # (in angle about the centre of gravity) whose path stays inside the walls.
    level = radius + cfg.approach_gap
    reach = float(
        np.max(np.linalg.norm(_all_corners(centres, halves) - np.asarray(cfg.cog), axis=1))
    )
    phi_a = _angle(agent - cog)
    phi_k = _angle(approach - cog[None])  # [K]
    short = _wrap(phi_k - phi_a)
    long = short - jnp.sign(short) * 2 * jnp.pi
    frac = jnp.linspace(0.0, 1.0, 13)

    def path_ok(sweep):  # [K] -> [K]: sampled level-set points of the arc inside the walls
        phis = phi_a + sweep[:, None] * frac[None]
        ring = cog[None, None] + (reach + level) * jnp.stack([jnp.cos(phis), jnp.sin(phis)], -1)
        sd, grad = geometry.tee_sdf_and_grad(pose, ring, centres, halves)
        # Where the disc passes with only ``squeeze_clearance`` to spare: it must fit the walls.
        tight = ring - (sd - radius - cfg.squeeze_clearance)[..., None] * grad
        return jnp.all((tight >= lo) & (tight <= hi), axis=(1, 2))

    short_ok, long_ok = path_ok(short), path_ok(long)
    sweep = jnp.where(short_ok | ~long_ok, short, long)  # [K]
    reachable = clear | short_ok | long_ok
    arc_len = jnp.abs(sweep) * (reach + level) * 0.8
    travel = jnp.where(clear, jnp.linalg.norm(approach - agent[None], axis=1), arc_len)
    feasible = inside & reachable
    # Walls can leave no feasible push that helps both offset and angle: then move the block
    # toward the goal position alone (away from the walls) and fix the angle afterwards.
    stuck = jnp.max(jnp.where(feasible, align, -1.0)) < cfg.min_align
    translate = jnp.concatenate([d_pos, jnp.zeros(1)])
    desired = jnp.where(stuck, translate, desired)
    align = (u @ desired) / (u_norm * jnp.maximum(jnp.linalg.norm(desired), 1e-6))
    score = align - cfg.travel_cost * travel / 100.0
    score = jnp.where(feasible, score, -jnp.inf)
    k = jnp.argmax(score)

    # Push along the chosen candidate: optimal step along u, as contact normal displacement.
    lam = jnp.maximum(u[k] @ desired, 0.0) / (u_norm[k] ** 2)
    k_eff = 1.0 / cfg.mass + moment[k] ** 2 / cfg.inertia
    depth = jnp.clip(cfg.push_gain * lam * k_eff, cfg.min_push, cfg.max_push)
    depth = jnp.where(align[k] > 0, depth, 0.0)
    push_target = touch[k] + depth * f_w[k]

    # Is the pusher on the approach line of the chosen face (between touching and approach)?
    rel = agent - touch[k]
    along = rel @ n_w[k]
    lateral = jnp.abs(geometry.cross2(n_w[k], rel))
    engaged = (lateral < cfg.corridor_tolerance) & (along > -3.0) & (along < cfg.approach_gap + 6.0)

    # Level-set following: tangent step in the chosen direction, pulled back onto the level.
    sd_a, grad_a = geometry.tee_sdf_and_grad(pose, agent, centres, halves)
    tangent = jnp.sign(sweep[k]) * jnp.stack([-grad_a[1], grad_a[0]])
    pull = jnp.clip(level - sd_a, -cfg.max_pull, cfg.max_pull)
    around = agent + cfg.follow_step * tangent + pull * grad_a
    back_off = agent + (level - sd_a + 4.0) * grad_a
    around = jnp.where(sd_a < radius + 2.0, back_off, around)
    move = jnp.where(clear[k], approach[k], around)
    action = jnp.where(engaged, push_target, move)
    info = {
        "candidate": k,
        "score": score[k],
        "align": align[k],
        "engaged": engaged,
        "clear": clear[k],
        "depth": depth,
        "stuck": stuck,
    }
    return jnp.clip(action, 0.0, env_config.workspace), info


def _angle(v: jax.Array) -> jax.Array:
    return jnp.arctan2(v[..., 1], v[..., 0])


def _all_corners(centres: np.ndarray, halves: np.ndarray) -> np.ndarray:
    signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32)
    return np.concatenate([c[None] + signs * h[None] for c, h in zip(centres, halves, strict=True)])


def collect_demonstrations(
    key: PRNGKey,
    num_episodes: int,
    obs: str = "state",
    *,
    env_config: PushTConfig | None = None,
    expert_config: ExpertConfig | None = None,
    parameter_set: dict | None = None,
    episode_length: int | None = None,
    action_noise: float = 0.0,
) -> dict[str, np.ndarray]:
    """Rolls the expert out in ``num_episodes`` episodes batched with ``vmap``.

    The time loop runs on the host over one jitted batched step (compiling a 300-step
    ``lax.scan`` of this body costs several times more than running it).

    Args:
      key: PRNG key; episode ``i`` starts from ``env.reset`` with the ``i``-th split key.
      num_episodes: N.
      obs: "state" or "image" (pixels are ``T * 27 KB`` per episode at 96 x 96).
      env_config: the env's config (its ``obs`` is replaced by ``obs``).
      expert_config: the expert's tuning.
      parameter_set: a ``PARAMETER_SETS`` entry to randomise each episode with, or None.
      episode_length: T, default the env's (300).
      action_noise: px, std of Gaussian noise added to the action the env executes (DART's
        noise injection, Laskey et al. 2017); the recorded action stays the expert's clean
        one, so the data shows how to recover from the states that imitation errors reach.
    Returns:
      numpy arrays: ``obs [N, T, 5]`` state (or a dict with ``"state"`` and ``"pixels"
      [N, T, H, W, 3]`` uint8), the observation before each action; ``actions [N, T, 2]`` (px);
      ``rewards [N, T]``; ``coverage [N, T]`` after each action; ``valid [N, T]`` (steps up to
      and including the success step); ``lengths [N]`` int32; ``success [N]`` bool. Steps after
      an episode's end repeat its last observation, with the pusher's position as action and
      reward 0.
    """
    cfg = dataclasses.replace(env_config or PushTConfig(), obs=obs)
    env = PushT(cfg)
    length = episode_length or cfg.episode_length
    randomize = make_randomizer(parameter_set) if parameter_set else None

    def start(key):
        k_reset, k_params = jax.random.split(key)
        params = None if randomize is None else randomize(k_params, env.default_params())
        return env.reset(k_reset, params), jnp.zeros((), bool)

    def advance(state, done, k_noise):
        obs_t = state.obs
        state_obs = obs_t["state"] if isinstance(obs_t, dict) else obs_t
        action = jnp.where(done, state_obs[:2], expert_action(state_obs, cfg, expert_config))
        if action_noise:
            action_taken = action + action_noise * jax.random.normal(k_noise, action.shape)
        else:
            action_taken = action
        new = env.step(state, action_taken)
        new = jax.tree.map(lambda a, b: jnp.where(done, a, b), state, new)
        out = {
            "obs": obs_t,
            "actions": action,
            "rewards": jnp.where(done, 0.0, new.reward),
            "coverage": new.metrics["coverage"],
            "valid": ~done,
        }
        return new, jnp.logical_or(done, new.terminated), out

    state, done = jax.jit(jax.vmap(start))(jax.random.split(key, num_episodes))
    noise_key = jax.random.fold_in(key, 1)

    @jax.jit
    def advance_all(state, done, t):
        k_noise = jax.random.split(jax.random.fold_in(noise_key, t), num_episodes)
        return jax.vmap(advance)(state, done, k_noise)

    steps = []
    for t in range(length):
        state, done, out = advance_all(state, done, t)
        steps.append(jax.device_get(out))
    traj = jax.tree.map(lambda *xs: np.stack(xs, axis=1), *steps)
    traj["lengths"] = traj["valid"].sum(axis=1).astype(np.int32)
    traj["success"] = np.any(traj["coverage"] > cfg.success_threshold, axis=1)
    return traj


__all__ = ["ExpertConfig", "collect_demonstrations", "contact_candidates", "expert_action"]
