"""The safety layer without ROS: fall-backs and their counters, clipping, the rate limit, the
latch, and the observation layout's parity with the env that trained the policy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deploy.observation import Layout, LayoutError, labelled
from deploy.policy import DeployError, load_policy
from deploy.safety import Guard, SafetyConfig
from tests.firmware_export.conftest import make_bundle, raw_obs


@pytest.fixture(scope="module")
def bundle():
    return make_bundle("td3-tanh-64x64-normaliser")


def test_every_fault_gives_the_safe_action_and_is_counted(bundle):
    guard = Guard(bundle, SafetyConfig(watchdog_s=0.1))
    obs = raw_obs(1, 0)[0]
    act = lambda o: bundle.act(o[None])[0]
    action, reason = guard.step(act, obs, 0.01, 0.01)
    assert reason == "ok"
    np.testing.assert_allclose(action, bundle.act(obs[None])[0], atol=1e-6)
    nan = obs.copy()
    nan[3] = np.nan
    far = obs.copy()
    far[0] = bundle.obs_mean[0] + 50 * bundle.obs_std[0]
    cases = [(None, 0.0, "stale"), (obs, 0.5, "stale"), (nan, 0.0, "nonfinite_obs")]
    cases += [(far, 0.0, "out_of_range_obs")]
    for o, age, why in cases:
        action, reason = guard.step(act, o, age, 0.01)
        assert reason == why
        np.testing.assert_array_equal(action, bundle.safe_action)
    broken = lambda o: np.full(bundle.action_dim, np.inf, np.float32)
    assert guard.step(broken, obs, 0.0, 0.01)[1] == "nonfinite_action"
    assert guard.faults == {
        "stale": 2,
        "nonfinite_obs": 1,
        "out_of_range_obs": 1,
        "nonfinite_action": 1,
    }


def test_estop_latches_until_reset(bundle):
    guard = Guard(bundle)
    obs = raw_obs(1, 1)[0]
    act = lambda o: bundle.act(o[None])[0]
    guard.estop()
    for _ in range(3):
        assert guard.step(act, obs, 0.0, 0.01)[1] == "estop"
    guard.reset()
    assert guard.step(act, obs, 0.0, 0.01)[1] == "ok"


def test_actions_are_clipped_to_the_range_and_rate_limited(bundle):
    guard = Guard(bundle, SafetyConfig(max_action_rate=1.0))  # full range in 1 s
    obs = raw_obs(1, 2)[0]
    high = bundle.action_offset + np.abs(bundle.action_scale)
    first, _ = guard.step(lambda o: high + 5.0, obs, 0.0, 0.01)
    np.testing.assert_allclose(first, high)  # clipped, not rate-limited (no previous)
    low = bundle.action_offset - np.abs(bundle.action_scale)
    second, _ = guard.step(lambda o: low, obs, 0.0, 0.01)
    # 1% of the range (2 * scale) per 10 ms step
    np.testing.assert_allclose(second, high - 0.01 * 2 * np.abs(bundle.action_scale), rtol=1e-5)
    # Stopping is never slowed down.
    safe, _ = guard.step(lambda o: low, None, 0.0, 0.01)
    np.testing.assert_array_equal(safe, bundle.safe_action)


def test_observation_layout_matches_the_env_that_trained_the_policy():
    """A publisher labels its message with the env's layout; the node assembles the bundle's
    vector by name, whatever the field order, and refuses a message that does not fit."""
    from sims.quadrotor.env import Quadrotor

    env = Quadrotor()
    spec = env.spec
    bundle_layout = [{"name": f.name, "size": f.size} for f in spec.obs_layout]
    obs = np.arange(spec.obs_dim, dtype=np.float32)
    dims, data = labelled(spec.obs_layout, obs)
    layout = Layout(bundle_layout)
    np.testing.assert_array_equal(layout.assemble(dims, data), obs)
    # Reversed field order on the wire: the same vector.
    order = list(reversed(range(len(dims))))
    chunks = np.split(obs, np.cumsum([s for _, s in dims])[:-1])
    wire = np.concatenate([chunks[i] for i in order])
    np.testing.assert_array_equal(layout.assemble([dims[i] for i in order], wire), obs)
    with pytest.raises(LayoutError, match="not in the layout"):
        layout.assemble([("nonsense", 1), *dims[1:]], data)
    with pytest.raises(LayoutError, match="lacks"):
        layout.assemble(dims[1:], data[dims[0][1] :])
    with pytest.raises(LayoutError, match="needs"):
        layout.assemble([], data[:-1])


def test_a_bundle_that_fails_its_golden_pairs_is_refused(bundle, tmp_path):
    wrong = dataclasses.replace(bundle, golden_actions=bundle.golden_actions + 0.1)
    path = wrong.save(tmp_path / "wrong.rlb")
    with pytest.raises(DeployError, match="golden pairs differ"):
        load_policy(path)
    with pytest.raises(DeployError, match="does not exist"):
        load_policy(tmp_path / "missing.rlb")
    (tmp_path / "junk.rlb").write_bytes(b"not a bundle")
    with pytest.raises(DeployError, match="not a readable policy bundle"):
        load_policy(tmp_path / "junk.rlb")
    ok = load_policy(bundle.save(tmp_path / "ok.rlb"), backend="c", work_dir=tmp_path / "c")
    assert ok.backend == "c" and ok.golden_error <= 1e-5


def test_bridge_episodes_are_the_in_process_flights():
    """The bridge's simulation (one episode at a time, as a robot) starts from the initial
    states of ``closed_loop.fly`` and judges episodes the same way: a deterministic policy
    stepped through it gives fly's returns, lengths and successes."""
    from deploy.sim_bridge import SimEpisodes, load_env
    from firmware_export.closed_loop import fly

    env = load_env("quadrotor", [])
    spec = env.spec
    safe = np.asarray(spec.safe_action, np.float32)
    act = lambda obs: safe + 0.05 * np.sin(np.asarray(obs)[..., :4] * 3.0)
    flight = fly(env, act, episodes=3, seed=4)
    sim = SimEpisodes(env, episodes=3, seed=4)
    while not sim.finished:
        sim.step(act(sim.observation()))
    np.testing.assert_allclose([r["return"] for r in sim.results], flight.returns, rtol=1e-4)
    np.testing.assert_array_equal([r["length"] for r in sim.results], flight.lengths)
    np.testing.assert_array_equal([r["success"] for r in sim.results], flight.success)


def test_chunking_bundle_runs_one_tick_at_a_time(chunk_bundle):
    """The student bundle (2 frames in, 2 actions out) through ``load_policy``: per-tick layouts
    are a frame's and an action's, the history starts as the first frame repeated, the policy
    runs every 2 ticks, the guard's limits are the latest frame's and one action's."""
    from deploy.safety import Limits

    bundle, path = chunk_bundle
    policy = load_policy(path)
    assert [f["name"] for f in policy.obs_layout] == ["agent_pos", "block_pos", "block_angle"]
    assert [f["name"] for f in policy.action_layout] == ["target_pos"]
    frames = np.random.default_rng(1).uniform(0, 512, (5, 5)).astype(np.float32)
    got = np.stack([policy.act(f) for f in frames])
    histories = [(0, 0), (0, 1), (2, 3)]  # the frames each decision saw (ticks 0, 2, 4)
    first = bundle.act(np.concatenate([frames[histories[0][0]], frames[histories[0][1]]]))
    np.testing.assert_allclose(got[:2], first.reshape(2, 2), rtol=1e-6, atol=1e-4)
    second = bundle.act(np.concatenate([frames[1], frames[2]]))
    np.testing.assert_allclose(got[2:4], second.reshape(2, 2), rtol=1e-6, atol=1e-4)
    third = bundle.act(np.concatenate([frames[3], frames[4]]))
    np.testing.assert_allclose(got[4], third.reshape(2, 2)[0], rtol=1e-6, atol=1e-4)
    limits = Limits.of(bundle)
    assert limits.safe.shape == (2,) and limits.obs_mean.shape == (5,)
    np.testing.assert_array_equal(limits.reference, [0, 1])  # the pusher in the latest frame
    # Relative actions: the range is centred on the pusher where it is now.
    np.testing.assert_allclose(limits.centre(frames[0]), limits.offset + frames[0][:2])
    policy.reset()
    np.testing.assert_allclose(
        policy.act(frames[3]),
        bundle.act(np.concatenate([frames[3], frames[3]]))[:2],
        rtol=1e-6,
        atol=1e-4,
    )


def test_chunking_bundles_fly_push_t_tick_by_tick_each_with_its_own_history(chunk_bundle):
    """``ChunkRunner`` on frames ``[3, O]``: 3 robots in step, each with its own history (3
    runners fed one robot's frames each give the same actions), then the student flown on
    Push-T by ``fly``, which judges success with the env's own rule."""
    import jax

    from deploy.policy import ChunkRunner
    from firmware_export.closed_loop import fly
    from robotrl.envs import make_eval_env
    from sims.pusht.env import PushT, PushTConfig

    bundle, _ = chunk_bundle
    frames = np.random.default_rng(2).uniform(0, 512, (5, 3, 5)).astype(np.float32)
    together = ChunkRunner(bundle, bundle.act)
    got = np.stack([together(f) for f in frames])  # [ticks, robots, A]
    for robot in range(3):
        alone = ChunkRunner(bundle, bundle.act)
        want = np.stack([alone(f) for f in frames[:, robot]])
        # one batched forward against three of one row: float32 rounding apart
        np.testing.assert_allclose(got[:, robot], want, rtol=1e-6, atol=1e-5)
    assert not np.allclose(got[:, 0], got[:, 1])  # the robots saw different frames

    env = PushT(PushTConfig(reward="success", episode_length=40))
    flight = fly(env, ChunkRunner(bundle, bundle.act), episodes=4)
    assert flight.actions.shape == (40, 4, 2) and flight.success_rate is not None
    # Each episode's first decision saw its reset frame twice (the history starts full).
    reset = make_eval_env(env, 4).reset(jax.random.split(jax.random.PRNGKey(0))[0])
    frame = np.asarray(reset.obs, np.float32)
    first = bundle.act(np.concatenate([frame, frame], axis=1)).reshape(4, 2, 2)
    low, high = env.spec.action_low, env.spec.action_high
    np.testing.assert_allclose(
        flight.actions[:2].swapaxes(0, 1), np.clip(first, low, high), atol=1e-5
    )
