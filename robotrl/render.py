"""Videos and frame strips of an env (uniform random actions) or of a trained run (its
deterministic policy), on a machine without a display:
``robotrl render ENV|RUN_DIR --out video.mp4`` (or ``.gif``, or ``.png`` for a strip of frames).

Functional envs draw themselves (``env.render(state) -> [H, W, 3] uint8``); gymnasium envs render
with ``render_mode="rgb_array"``. ``.mp4`` goes through the ffmpeg shipped with imageio-ffmpeg,
``.gif`` and ``.png`` through Pillow.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from robotrl import registry
from robotrl.config import ConfigError

FORMATS = (".mp4", ".gif", ".png")
# act(obs, carry, key) -> (action, carry) for one unbatched observation.
Actor = Callable[[Any, Any, jax.Array], tuple[np.ndarray, Any]]


def write_frames(
    frames: list[np.ndarray], out: str | Path, fps: float, strip_frames: int = 8
) -> Path:
    """Writes ``frames`` as an mp4, a gif, or a png strip of ``strip_frames`` evenly spaced."""
    out = Path(out)
    if out.suffix not in FORMATS:
        raise ConfigError(f"--out must end in one of {FORMATS}, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".mp4":
        import imageio.v2 as imageio

        # Even sizes for the yuv420p encoder that every player reads.
        h, w = (frames[0].shape[0] // 2) * 2, (frames[0].shape[1] // 2) * 2
        with warnings.catch_warnings():
            # ffmpeg is a subprocess: JAX warns about any fork, but this one execs at once.
            warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
            with imageio.get_writer(
                out, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1
            ) as writer:
                for frame in frames:
                    writer.append_data(np.ascontiguousarray(frame[:h, :w]))
        return out
    from PIL import Image

    if out.suffix == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(
            out, save_all=True, append_images=images[1:], duration=max(20, int(1000 / fps)), loop=0
        )
    else:
        picks = np.linspace(0, len(frames) - 1, min(strip_frames, len(frames))).astype(int)
        Image.fromarray(np.concatenate([frames[i] for i in picks], axis=1)).save(out)
    return out


def run_actor(run_dir: str | Path) -> tuple[Any, Actor]:
    """The config of a run and its deterministic policy (first seed, latest checkpoint)."""
    from robotrl import experiment
    from robotrl.runs import CheckpointStore, RunDir
    from robotrl.train.scan_loop import select_seed

    run = RunDir.open(run_dir)
    cfg = experiment.parse_config(run.config())
    exp = experiment.Experiment(cfg)
    session = exp.session()
    store = CheckpointStore(run.checkpoints, read_only=True)
    try:
        tree, _ = store.restore(session.abstract_state())
    finally:
        store.close()
    session.load_state(tree)
    algo_state = session.algo_state if exp.is_host else select_seed(session.state, 0).algo
    policy, params = exp.algo.make_policy(algo_state, True)
    step = jax.jit(policy.step)

    def act(obs, carry, key):
        batched = jax.tree.map(lambda o: np.asarray(o)[None], obs)
        carry = policy.init_carry((1,)) if carry is None else carry
        action, carry, _ = step(params, carry, batched, key)
        return np.asarray(action)[0], carry

    return cfg, act


def random_actor(low: np.ndarray, high: np.ndarray) -> Actor:
    def act(obs, carry, key):
        return np.asarray(jax.random.uniform(key, low.shape, minval=low, maxval=high)), carry

    return act


def functional_frames(
    env_cfg: Any, act: Actor | None, steps: int | None, seed: int
) -> tuple[list[np.ndarray], float]:
    from robotrl import experiment
    from robotrl.envs import DomainRandomization, EpisodeLimit

    env, randomize = experiment.make_functional_env(env_cfg)
    spec = env.spec
    act = act or random_actor(np.asarray(spec.action_low), np.asarray(spec.action_high))
    wrapped = env if randomize is None else DomainRandomization(env, randomize)
    wrapped = EpisodeLimit(wrapped, steps or spec.episode_length)
    reset, step = jax.jit(wrapped.reset), jax.jit(wrapped.step)
    key = jax.random.PRNGKey(seed)
    state, carry = reset(key), None
    frames = [env.render(state)]
    while not bool(state.done):
        key, sub = jax.random.split(key)
        action, carry = act(state.obs, carry, sub)
        state = step(state, action)
        frames.append(env.render(state))
    return frames, spec.ctrl_dt


def gym_frames(
    env_cfg: Any, act: Actor | None, steps: int | None, seed: int
) -> tuple[list[np.ndarray], float]:
    import gymnasium as gym

    env = gym.make(env_cfg.name[4:], render_mode="rgb_array", **env_cfg.options)
    try:
        act = act or random_actor(env.action_space.low, env.action_space.high)
        obs, _ = env.reset(seed=seed)
        try:
            first = env.render()
        except gym.error.DependencyNotInstalled as err:
            raise ConfigError(f"{env_cfg.name} cannot render here: {err}") from None
        frames, carry, key = [first], None, jax.random.PRNGKey(seed)
        for _ in range(steps or env.spec.max_episode_steps or 1000):
            key, sub = jax.random.split(key)
            action, carry = act(np.asarray(obs, np.float32), carry, sub)
            obs, _, terminated, truncated, _ = env.step(action)
            frames.append(env.render())
            if terminated or truncated:
                break
        return frames, float(getattr(env.unwrapped, "dt", 0.05))
    finally:
        env.close()


def dmc_frames(
    env_cfg: Any, act: Actor | None, steps: int | None, seed: int
) -> tuple[list[np.ndarray], float]:
    from robotrl.envs.host import DMControlEnv

    domain, _, task = env_cfg.name[4:].partition("-")
    host = DMControlEnv(domain, task, 1, **env_cfg.options)
    act = act or random_actor(np.asarray(host.spec.action_low), np.asarray(host.spec.action_high))
    obs = host.reset(seed)[0]
    physics = host.envs[0].physics
    frames, carry, key = [physics.render(240, 320, camera_id=0)], None, jax.random.PRNGKey(seed)
    for _ in range(steps or host.spec.episode_length):
        key, sub = jax.random.split(key)
        action, carry = act(obs, carry, sub)
        out = host.step(np.asarray(action)[None])
        frames.append(physics.render(240, 320, camera_id=0))
        obs = out.obs[0]
        if out.terminated[0] or out.truncated[0]:
            break
    host.close()
    return frames, host.spec.ctrl_dt


def render(
    target: str, out: str | Path, steps: int | None = None, seed: int = 0, fps: float | None = None
) -> dict[str, Any]:
    """Renders one episode of ``target``: a run directory, or a registered env name."""
    from robotrl import experiment

    os.environ.setdefault("MUJOCO_GL", "egl")
    if Path(out).suffix not in FORMATS:
        raise ConfigError(f"--out must end in one of {FORMATS}, got {Path(out).name!r}")
    if (Path(target) / "config.yaml").is_file():
        cfg, act = run_actor(target)
        env_cfg, source = cfg.env, f"run {target} (deterministic policy)"
    elif target in registry.ENVS or registry.is_host_env(target):
        env_cfg, act, source = experiment.EnvConfig(name=target), None, f"env {target} (random)"
    else:
        raise ConfigError(
            f"{target!r} is neither a run directory nor a registered env "
            f"({', '.join(sorted(registry.ENVS))}, gym/<id>)"
        )
    if env_cfg.name.startswith("gym/"):
        make = gym_frames
    elif env_cfg.name.startswith("dmc/"):
        make = dmc_frames
    else:
        make = functional_frames
    frames, dt = make(env_cfg, act, steps, seed)
    path = write_frames(frames, out, fps or min(50.0, 1.0 / max(dt, 1e-3)))
    return {"out": str(path), "frames": len(frames), "source": source}
