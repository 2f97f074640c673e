"""The Crazyflie quadrotor: env contract (jit, shapes, determinism, randomisation, no retracing),
physics checks (hover, free fall, yaw sign, motor lag, stability), the reward function against
the env's rewards, and the tasks' references."""

import json
import math
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robotrl.envs import make_training_env
from robotrl.envs.randomize import make_randomizer
from robotrl.types import Transition
from sims.quadrotor import (
    PARAMETER_SETS,
    Quadrotor,
    QuadrotorConfig,
    RewardWeights,
    curriculum_step,
    curriculum_weights,
    reward,
)

L2F_RECORDING = Path(__file__).parent / "data" / "l2f_one_step.json"

# Tests run short rollouts: compile with LLVM's optimisations off (3x faster compiles).
FAST = {"xla_backend_optimization_level": 0}


def jit(fn):
    return jax.jit(fn, compiler_options=FAST)


QUIET = dict(
    noise_position=0.0,
    noise_orientation=0.0,
    noise_linear_velocity=0.0,
    noise_angular_velocity=0.0,
    disturbance_force_std=0.0,
    disturbance_torque_std=0.0,
)
LEVEL = [1.0, 0.0, 0.0, 0.0]


def quiet_env(**kw) -> Quadrotor:
    return Quadrotor(QuadrotorConfig(**{**QUIET, **kw}))


QUIET_ENV = quiet_env()


@jit
def quiet_rollout(state, actions):
    """100 steps of the noise- and disturbance-free hover env (one compile for every physics
    test)."""
    return rollout(QUIET_ENV, state, actions)


@jit
def quiet_start(rpm):
    """Level, at rest at the origin, rotors at ``rpm``."""
    return QUIET_ENV.reset_to(
        jax.random.PRNGKey(0),
        position=jnp.zeros(3),
        quaternion=jnp.array(LEVEL),
        velocity=jnp.zeros(3),
        angular_velocity=jnp.zeros(3),
        rpm=jnp.full(4, rpm),
    )


def rollout(env, state, actions):
    """Steps ``state`` through ``actions [T, 4]`` in a scan; returns the stacked states."""

    def body(s, a):
        s = env.step(s, a)
        return s, s

    return jax.lax.scan(body, state, actions)[1]


ENV = Quadrotor(QuadrotorConfig(action_history=3))
ACTIONS = jax.random.uniform(jax.random.PRNGKey(3), (60, 4), minval=-1.0, maxval=1.0)


@jit
def episode(key):
    """``ENV`` reset with ``key`` and stepped through ``ACTIONS``: (first state, states)."""
    state = ENV.reset(key)
    return state, rollout(ENV, state, ACTIONS)


def assert_obs_match_spec(env, obs, batch=()):
    spec = env.spec
    assert obs["state"].shape == (*batch, *spec.obs.shape)
    assert obs["privileged_state"].shape == (*batch, *spec.privileged_obs.shape)
    assert obs["state"].dtype == jnp.float32
    assert sum(f.size for f in env.privileged_layout) == spec.critic_obs_dim


def test_reset_step_jit_and_obs_match_spec():
    spec = ENV.spec
    state = jit(ENV.reset)(jax.random.PRNGKey(0))
    step = jit(ENV.step)
    for _ in range(3):
        state = step(state, jnp.full(4, 0.3))
        assert_obs_match_spec(ENV, state.obs)
        assert state.reward.shape == () and state.reward.dtype == jnp.float32
    assert [f.name for f in spec.obs_layout] == [
        "position_error",
        "rotation_matrix",
        "linear_velocity",
        "angular_velocity",
        "action_history",
    ]
    assert spec.obs_layout[-1].size == 12 and spec.critic_obs_dim == 28
    # The actor's last 12 entries are the last three actions, oldest first.
    np.testing.assert_allclose(state.obs["state"][-12:], np.full(12, 0.3), atol=1e-6)
    assert set(state.metrics) == {"position_error", "tilt", "rpm_mean"}
    assert step._cache_size() == 1


@pytest.mark.parametrize(("task", "sets"), [("hover", "train"), ("figure_eight", "heldout")])
def test_no_nan_over_1000_random_steps_at_batch_64(task, sets):
    base = Quadrotor(QuadrotorConfig(task=task, action_history=2))
    env = make_training_env(base, 64, randomize=make_randomizer(PARAMETER_SETS[sets]))

    @jit
    def run(key):
        state = env.reset(key)

        def body(s, k):
            s = env.step(s, jax.random.uniform(k, (64, 4), minval=-1.0, maxval=1.0))
            finite = jnp.all(jnp.isfinite(s.obs["state"])) & jnp.all(jnp.isfinite(s.reward))
            finite &= jnp.all(jnp.isfinite(s.obs["privileged_state"]))
            return s, (finite, s.done.sum())

        return state, jax.lax.scan(body, state, jax.random.split(key, 1000))[1]

    state, (finite, done) = run(jax.random.PRNGKey(1))
    assert_obs_match_spec(base, state.obs, (64,))
    assert bool(jnp.all(finite))
    assert int(done.sum()) > 0  # random actions crash: episodes end and restart


def test_same_key_same_trajectory_and_randomisation_changes_dynamics():
    (_, a), (_, b) = episode(jax.random.PRNGKey(7)), episode(jax.random.PRNGKey(7))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    _, c = episode(jax.random.PRNGKey(8))
    assert not np.allclose(a.obs["state"], c.obs["state"])

    state, _ = episode(jax.random.PRNGKey(0))
    randomize = jit(make_randomizer(PARAMETER_SETS["train"]))
    other = state.replace(params=randomize(jax.random.PRNGKey(5), state.params))
    step = jit(ENV.step)
    action = jnp.array([0.5, -0.2, 0.1, 0.4])
    one, two = step(state, action), step(other, action)
    assert not np.allclose(one.physics.vector("velocity"), two.physics.vector("velocity"))
    assert not np.allclose(
        one.physics.vector("angular_velocity"), two.physics.vector("angular_velocity")
    )
    # Parameters given to reset shape the first observation (the privileged disturbance).
    doubled = {**state.params, "disturbance_force_std": 2 * state.params["disturbance_force_std"]}
    again = jit(ENV.reset)(jax.random.PRNGKey(0), doubled)
    np.testing.assert_allclose(
        again.obs["privileged_state"][18:21], 2 * state.obs["privileged_state"][18:21], rtol=1e-6
    )


def hover_action(delta=(0.0, 0.0, 0.0, 0.0)) -> jax.Array:
    c = QUIET_ENV.config
    return jnp.broadcast_to(2 * c.hover_rpm / c.max_rpm - 1 + jnp.asarray(delta), (100, 4))


def test_hover_rpm_holds_position():
    c = QUIET_ENV.config
    assert abs(c.hover_rpm - 14475.8) < 0.1  # sqrt(m g / (4 k_f))
    states = quiet_rollout(quiet_start(c.hover_rpm), hover_action())
    drift = np.abs(np.asarray(states.physics.vector("position"))).max()
    assert drift < 1e-4, drift  # 1 s at the hover rpm
    assert np.abs(np.asarray(states.physics.vector("angular_velocity"))).max() < 1e-5
    assert not bool(states.terminated.any())
    np.testing.assert_allclose(states.metrics["rpm_mean"], c.hover_rpm, rtol=1e-5)


def test_free_fall_with_zero_rpm():
    states = quiet_rollout(quiet_start(0.0), -jnp.ones((100, 4)))
    states = jax.tree.map(lambda x: x[:50], states)
    t = 0.01 * np.arange(1, 51)
    pos = np.asarray(states.physics.vector("position"))
    np.testing.assert_allclose(pos[:, 2], -0.5 * 9.81 * t**2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pos[:, :2], 0.0, atol=1e-7)
    np.testing.assert_allclose(
        np.asarray(states.physics.vector("velocity"))[:, 2], -9.81 * t, rtol=1e-5
    )
    # |z| passes the 0.6 m termination box after sqrt(1.2 / g) = 0.35 s.
    first = int(np.argmax(np.asarray(states.terminated)))
    assert first == int(np.ceil(math.sqrt(1.2 / 9.81) / 0.01)) - 1


def test_yaw_torque_sign_of_the_two_rotor_pairs():
    start = quiet_start(QUIET_ENV.config.hover_rpm)

    def rates(delta):  # body rates after 0.1 s with rotor commands hover + delta
        return np.asarray(
            quiet_rollout(start, hover_action(delta)).physics.vector("angular_velocity")
        )[9]

    d = 0.1
    cw, ccw = rates([-d, d, -d, d]), rates([d, -d, d, -d])
    # Rotors 1 and 3 spin clockwise: their reaction torque yaws the body counter-clockwise (+z).
    assert cw[2] > 0.01 and ccw[2] < -0.01
    np.testing.assert_allclose(cw[:2], 0.0, atol=1e-5)
    np.testing.assert_allclose(ccw[2], -cw[2], rtol=0.05)
    # Roll/pitch follow the layout: left rotors (2, 3) up rolls +x, back rotors (1, 2) up +y.
    assert rates([-d, -d, d, d])[0] > 0.1 and rates([-d, d, d, -d])[1] > 0.1


def test_motor_lag_reaches_63_percent_after_one_time_constant():
    c = QUIET_ENV.config
    states = quiet_rollout(quiet_start(0.0), jnp.ones((100, 4)))
    rpm = np.asarray(states.physics.vector("rpm"))[:30, 0] / c.max_rpm
    steps = round(c.motor_time_constant / c.ctrl_dt)  # 15
    np.testing.assert_allclose(rpm[steps - 1], 1 - math.exp(-1), atol=1e-4)
    np.testing.assert_allclose(rpm, 1 - np.exp(-0.01 * np.arange(1, 31) / 0.15), atol=1e-4)


def test_random_actions_stay_finite_and_normalised_over_500_steps():
    env = Quadrotor(QuadrotorConfig(task="waypoint", termination_position=100.0))
    keys = jax.random.split(jax.random.PRNGKey(0), 32)

    @jit
    def run(keys):
        actions = jax.random.uniform(keys[0], (500, 32, 4), minval=-1.0, maxval=1.0)
        step = jax.vmap(env.step)
        return jax.lax.scan(lambda s, a: (step(s, a),) * 2, jax.vmap(env.reset)(keys), actions)[1]

    states = run(keys)
    assert_obs_match_spec(env, states.obs, (500, 32))
    quat = np.asarray(states.physics.vector("quaternion"))
    np.testing.assert_allclose(np.linalg.norm(quat, axis=-1), 1.0, atol=1e-5)
    omega = np.asarray(states.physics.vector("angular_velocity"))
    assert np.all(np.isfinite(omega)) and np.abs(omega).max() <= env.config.max_angular_velocity
    assert np.all(np.isfinite(np.asarray(states.physics.vector("velocity"))))
    rot = np.asarray(states.obs["privileged_state"])[-1, :, 3:12].reshape(-1, 3, 3)
    np.testing.assert_allclose(
        rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-5
    )


def test_reward_function_recomputes_the_env_rewards():
    state, states = episode(jax.random.PRNGKey(4))
    actions = ACTIONS
    before = jax.tree.map(
        lambda first, rest: jnp.concatenate([first[None], rest[:-1]]), state.obs, states.obs
    )
    w = ENV.config.reward
    rewards = jit(reward)  # weights are a pytree: a curriculum can trace them
    recomputed = rewards(before["privileged_state"], actions, w, states.terminated)
    np.testing.assert_allclose(recomputed, states.reward, rtol=1e-5, atol=1e-6)
    assert bool(states.terminated.any())  # random actions crash within 0.6 s
    assert np.all(np.asarray(states.reward)[np.asarray(states.terminated)] == 0.0)
    # Curriculum: new weights, the same stored transitions, different rewards.
    harder = curriculum_step(w)
    assert float(harder.position) == pytest.approx(6.0)
    assert float(harder.action) == pytest.approx(0.014)
    harder_rewards = rewards(before["privileged_state"], actions, harder, states.terminated)
    assert not np.allclose(harder_rewards, recomputed)
    # A hover at the target with the hover command earns the full constant.
    perfect = np.zeros((1, 28), np.float32)
    perfect[0, [3, 7, 11]] = 1.0  # identity rotation matrix
    level = rewards(perfect, np.full((1, 4), w.action_baseline, np.float32), w, np.zeros(1, bool))
    assert float(level[0]) == pytest.approx(w.constant)
    assert RewardWeights().scale == 0.5


def test_norm_reward_form_is_rltools_squared_function():
    """``form="norm"``: |e_p|, 2 acos(1 - |q_z|), |e_v|, |w| and the throttle-unit action term."""
    w = RewardWeights(
        scale=0.1,
        constant=1.0,
        position=10.0,
        orientation=2.5,
        linear_velocity=0.05,
        angular_velocity=0.5,
        action=0.1,
        form="norm",
    )
    yaw = 0.3
    c, s = math.cos(yaw), math.sin(yaw)
    state = np.zeros((1, 28), np.float32)
    state[0, 0:3] = (0.3, 0.4, 0.0)  # |e_p| = 0.5 m
    state[0, 3:12] = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)  # yaw rotation, row-major
    state[0, 12:15] = (0.0, 0.6, 0.8)  # |e_v| = 1 m/s
    state[0, 15:18] = (2.0, 0.0, 0.0)  # |w| = 2 rad/s
    action = np.full((1, 4), w.action_baseline + 0.2, np.float32)  # 0.1 throttle each
    cost = (
        10.0 * 0.5
        + 2.5 * 2.0 * math.acos(1.0 - math.sin(yaw / 2))
        + 0.05 * 1.0
        + 0.5 * 2.0
        + 0.1 * 4 * 0.1**2
    )
    got = float(jit(reward)(state, action, w, np.zeros(1, bool))[0])
    assert got == pytest.approx(1.0 - 0.1 * cost, rel=1e-5)
    level = np.zeros((1, 28), np.float32)
    level[0, [3, 7, 11]] = 1.0
    hover = np.full((1, 4), w.action_baseline, np.float32)
    assert float(jit(reward)(level, hover, w, np.zeros(1, bool))[0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="reward form"):
        RewardWeights(form="cubic")


def test_curriculum_weights_and_relabel_hook():
    w = RewardWeights()
    assert float(curriculum_weights(w, 0).position) == w.position
    for name in ("position", "linear_velocity", "action"):
        one, two = curriculum_step(w), curriculum_step(curriculum_step(w))
        assert float(getattr(curriculum_weights(w, 1), name)) == pytest.approx(getattr(one, name))
        assert float(getattr(curriculum_weights(w, 2), name)) == pytest.approx(getattr(two, name))
    capped = curriculum_weights(w, 100)
    assert (float(capped.position), float(capped.linear_velocity), float(capped.action)) == (
        pytest.approx(40.0),
        pytest.approx(1.0),
        pytest.approx(1.0),
    )
    assert Quadrotor().relabel_reward is None  # no curriculum by default
    env = Quadrotor(QuadrotorConfig(curriculum_interval=1000))
    state, states = episode(jax.random.PRNGKey(4))
    before = jax.tree.map(
        lambda first, rest: jnp.concatenate([first[None], rest[:-1]]), state.obs, states.obs
    )
    batch = Transition(
        obs=before,
        action=ACTIONS,
        reward=states.reward,
        terminated=states.terminated,
        truncated=states.truncated,
        next_obs=states.obs,
    )
    relabel = jit(env.relabel_reward)
    np.testing.assert_allclose(relabel(batch, 999), states.reward, rtol=1e-5, atol=1e-6)
    stage2 = reward(before["privileged_state"], ACTIONS, curriculum_weights(w, 2), batch.terminated)
    np.testing.assert_allclose(relabel(batch, 2500), stage2, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="curriculum_interval"):
        QuadrotorConfig(curriculum_interval=-1)


def test_reset_distribution_follows_l2f():
    env = Quadrotor()
    states = jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 4000))
    ph = states.physics
    q = np.asarray(ph.vector("quaternion"))
    angle = 2 * np.arccos(np.clip(np.abs(q[:, 0]), 0, 1))
    assert angle.max() <= math.pi / 2 + 1e-4
    guided = np.all(np.asarray(ph.vector("position")) == 0, axis=1)
    assert 0.07 < guided.mean() < 0.13
    assert np.all(angle[guided] < 1e-6)
    # Uniform rotations restricted to <= 90 deg: P(angle <= 45 deg) = (pi/4 - sin(pi/4)) /
    # (pi/2 - 1) = 0.137 among the unguided starts.
    share = (angle[~guided] <= math.pi / 4).mean()
    assert abs(share - 0.1372) < 0.02, share
    pos = np.asarray(ph.vector("position"))
    assert np.abs(pos).max() <= 0.2 and np.abs(np.asarray(ph.vector("velocity"))).max() <= 1.0
    np.testing.assert_allclose(np.asarray(ph.vector("rpm")), env.config.max_rpm / 2)
    force = np.asarray(states.obs["privileged_state"])[:, 18:21] * env.config.mass
    assert abs(force.std() - env.config.disturbance_force_std) < 0.1 * force.std()


def test_termination_outside_the_box_and_the_observation_is_relative():
    start = quiet_start(QUIET_ENV.config.hover_rpm)
    ph = start.physics.replace(
        position=(jnp.float32(0.595), *start.physics.position[1:]),
        velocity=(jnp.float32(1.0), *start.physics.velocity[1:]),
    )
    state = start.replace(physics=ph)
    nxt = jax.tree.map(lambda x: x[0], quiet_rollout(state, hover_action()))
    assert bool(nxt.terminated) and float(nxt.reward) == 0.0
    np.testing.assert_allclose(nxt.obs["state"][0], nxt.physics.position[0], atol=1e-6)
    assert float(nxt.metrics["position_error"]) > 0.6


FIGURE_EIGHT = Quadrotor(
    QuadrotorConfig(task="figure_eight", figure_eight_random_phase=False, **QUIET)
)


@jit
def figure_eight_run(key):
    state = FIGURE_EIGHT.reset(key)
    return state, rollout(FIGURE_EIGHT, state, jnp.zeros((250, 4)))


def test_figure_eight_reference_and_its_velocity():
    c = FIGURE_EIGHT.config
    _, states = figure_eight_run(jax.random.PRNGKey(0))
    assert_obs_match_spec(FIGURE_EIGHT, states.obs, (250,))
    assert FIGURE_EIGHT.spec.obs_layout[4].name == "reference_velocity"
    t = 0.01 * np.arange(1, 251)
    phi = 2 * math.pi * t / c.figure_eight_period
    target = np.asarray(states.physics.vector("target"))
    a = c.figure_eight_size
    np.testing.assert_allclose(target[:, 0], a * np.sin(phi), atol=2e-5)
    np.testing.assert_allclose(target[:, 1], a * np.sin(phi) * np.cos(phi), atol=2e-5)
    ref_velocity = np.asarray(states.obs["state"])[:, 18:21]
    np.testing.assert_allclose(ref_velocity[1:-1], (target[2:] - target[:-2]) / 0.02, atol=2e-3)
    error = np.asarray(states.obs["state"])[:, :3]
    np.testing.assert_allclose(
        error, np.asarray(states.physics.vector("position")) - target, atol=1e-6
    )


def test_waypoints_switch_on_schedule_and_stay_in_the_cube():
    env = Quadrotor(QuadrotorConfig(task="waypoint", waypoint_interval=10, **QUIET))
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    run = jit(jax.vmap(lambda k: rollout(env, env.reset(k), jnp.zeros((30, 4)))))
    states = run(keys)
    assert_obs_match_spec(env, states.obs, (8, 30))
    target = np.asarray(states.physics.vector("target"))  # [8, 30, 3]
    changed = np.any(target[:, 1:] != target[:, :-1], axis=(0, 2))
    assert list(np.flatnonzero(changed) + 1) == [9, 19, 29]  # steps 10, 20, 30
    assert np.abs(target).max() <= env.config.waypoint_range


def test_render_draws_both_views():
    state, _ = figure_eight_run(jax.random.PRNGKey(0))
    img = FIGURE_EIGHT.render(state)
    size = FIGURE_EIGHT.config.render_size
    assert img.shape == (size, 2 * size, 3) and img.dtype == np.uint8
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 5


def test_bad_task_is_rejected():
    with pytest.raises(ValueError, match="task must be one of"):
        QuadrotorConfig(task="loop")


def test_one_step_matches_l2f():
    """Dynamics parity with the L2F simulator (RLtools' ``l2f``): one step from 64 random states
    against l2f's own results, recorded from ``l2f.step`` in the peer venv
    (``tests/sims/data/l2f_one_step.json``, rewritten by ``python -m tests.sims.record_l2f``).
    Where the peer venv has l2f, the recording is also checked against a live l2f run."""
    from benchmarks.quadrotor_vs_l2f import compare, l2f_next_states, parity_cases

    recorded = json.loads(L2F_RECORDING.read_text())
    cases, ours = parity_cases()  # robotrl's next states
    flat = lambda cs: [np.concatenate([c[k] for k in sorted(c)]) for c in cs]
    # The same starting states and actions as the recording.
    np.testing.assert_allclose(flat(cases["cases"]), flat(recorded["cases"]["cases"]), rtol=1e-6)
    errors = compare(ours, recorded["next_states"])  # max |robotrl - l2f|
    assert errors["n_cases"] == 64
    assert errors["position"] < 1e-6 and errors["quaternion"] < 1e-6
    assert errors["velocity"] < 1e-5 and errors["angular_velocity"] < 1e-4
    assert errors["rpm"] < 1e-6  # as a fraction of max_rpm
    peer = Path(__file__).resolve().parents[2] / ".bench-venv" / "bin" / "python"
    if peer.exists() and subprocess.run([peer, "-c", "import l2f"]).returncode == 0:
        live = compare(ours, l2f_next_states(str(peer), cases))
        assert live == pytest.approx(errors, abs=1e-9)
