"""Every registered env, through the same stack training uses: reset/step jit, shapes match the
spec, nothing NaN, episodes end and restart, no retracing; and every native backend likewise.

Episodes are cut to 40 steps so a long-episode env still exercises auto-reset quickly; each env's
own test file covers its dynamics in depth.
"""

import jax
import numpy as np
import pytest

from robotrl import registry
from robotrl.envs import make_training_env
from robotrl.envs.randomize import make_randomizer

EPISODE, STEPS, BATCH = 40, 50, 4
# MJX compiles for 30-60 s per task on this CPU. The four locomotion tasks are one class
# (``MJXLocomotion``) through the same wrappers, so HalfCheetah (the cheapest to compile) stands for
# them here, in the slow tier; every task's own MJX step is compiled and checked against gymnasium
# and the native backend in tests/sims/test_locomotion.py.
MJX_THROUGH_THE_STACK = "halfcheetah"
MJX_CHECKED_ELSEWHERE = {"hopper", "walker2d", "ant"}


def _param(name):
    return pytest.param(name, marks=pytest.mark.slow) if name == MJX_THROUGH_THE_STACK else name


FUNCTIONAL = sorted(
    n
    for n, entry in registry.ENVS.items()
    if not entry.host_only and n not in MJX_CHECKED_ELSEWHERE
)


@pytest.mark.parametrize("name", [_param(n) for n in FUNCTIONAL])
def test_registered_env_jits_matches_spec_and_stays_finite(name):
    cfg_cls, make, sets = registry.ENVS[name].load()
    base = make(cfg_cls())
    randomize = make_randomizer(sets["train"]) if sets else None
    env = make_training_env(base, BATCH, episode_length=EPISODE, randomize=randomize)
    spec = env.spec
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    state = reset(jax.random.PRNGKey(0))
    low, high = np.array(spec.action_low), np.array(spec.action_high)
    key, ended = jax.random.PRNGKey(1), 0
    for _ in range(STEPS):
        key, sub = jax.random.split(key)
        action = jax.random.uniform(sub, (BATCH, spec.action_dim), minval=low, maxval=high)
        state = step(state, action)
        obs = state.obs["state"] if isinstance(state.obs, dict) else state.obs
        assert obs.shape == (BATCH, *spec.obs.shape)
        assert np.all(np.isfinite(obs)) and np.all(np.isfinite(state.reward))
        ended += int(np.asarray(state.done).sum())
    assert ended >= BATCH  # every env finished (at least) one episode and went on
    assert step._cache_size() == 1 and reset._cache_size() == 1


NATIVE = sorted(n for n, entry in registry.ENVS.items() if entry.native is not None)


@pytest.mark.parametrize("name", NATIVE)
def test_native_backend_matches_spec_and_auto_resets(name):
    cfg_cls, _, sets = registry.ENVS[name].load()
    cfg = cfg_cls()
    if hasattr(cfg, "episode_length"):
        import dataclasses

        cfg = dataclasses.replace(cfg, episode_length=EPISODE)
    batch = 1 if registry.ENVS[name].host_only else BATCH  # a host-only env may be one robot
    env = registry.ENVS[name].native()(cfg, batch, sets.get("train"))
    try:
        spec = env.spec
        obs = env.reset(0)
        assert obs.shape == (batch, *spec.obs.shape)
        rng = np.random.default_rng(0)
        ended = 0
        for _ in range(STEPS):
            action = rng.uniform(spec.action_low, spec.action_high, (batch, spec.action_dim))
            out = env.step(action.astype(np.float32))
            assert out.obs.shape == obs.shape and out.final_obs.shape == obs.shape
            assert np.all(np.isfinite(out.obs)) and np.all(np.isfinite(out.reward))
            ended += int((out.terminated | out.truncated).sum())
        assert ended >= batch
    finally:
        env.close()
