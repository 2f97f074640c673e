"""The RC-car racing env: contract (jit, shapes, finiteness, determinism, randomisation, no
retracing), vehicle physics (top speed, kinematic and understeering circles, steering rate),
track logic (off-track termination, laps, no credit for driving backwards, rays) and a
pure-pursuit lap on every shipped track."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robotrl.envs import make_training_env
from robotrl.envs.randomize import make_randomizer
from sims.rccar import (
    HELDOUT_TRACKS,
    PARAMETER_SETS,
    TRAIN_TRACKS,
    RCCar,
    RCCarConfig,
    pure_pursuit_action,
)
from sims.rccar import dynamics as dyn

ALL_TRACKS = TRAIN_TRACKS + HELDOUT_TRACKS
randomize_train = make_randomizer(PARAMETER_SETS["train"])


@functools.cache
def ray_env() -> RCCar:
    """Every shipped track, rays on: the env most tests share (one compile each)."""
    return RCCar(RCCarConfig(tracks=ALL_TRACKS, use_rays=True))


@functools.cache
def jitted(env: RCCar):
    return jax.jit(env.step), jax.jit(functools.partial(pure_pursuit_action, env))


def obs_index(env: RCCar, name: str) -> slice:
    return env.spec.obs_slices()[name]


def test_reset_and_step_jit_and_match_the_spec():
    for env in (RCCar(), ray_env()):
        spec = env.spec
        state = jax.jit(env.reset)(jax.random.PRNGKey(0))
        assert state.obs.shape == spec.obs.shape and state.obs.dtype == jnp.float32
        assert sum(f.size for f in spec.obs_layout) == spec.obs_dim
        nxt = jitted(env)[0](state, jnp.array([0.3, 0.5]))
        assert nxt.obs.shape == spec.obs.shape
        assert set(nxt.metrics) == set(state.metrics) == {
            "laps", "lap_time", "progress", "speed", "checkpoints", "off_track"
        }  # fmt: skip
        assert nxt.info.keys() == state.info.keys()
        assert nxt.reward.shape == () and nxt.terminated.dtype == jnp.bool_
        assert set(env.default_params()) == set(PARAMETER_SETS["train"])
        assert set(PARAMETER_SETS["heldout"]) == set(PARAMETER_SETS["train"])
    assert ray_env().spec.obs_dim == RCCar().spec.obs_dim + 9
    with pytest.raises(ValueError, match="unknown track"):
        RCCarConfig(tracks=("nurburgring",))
    with pytest.raises(ValueError, match="reward"):
        RCCarConfig(reward="sum")


@functools.cache
def random_rollout_fn():
    """1,000 random steps of 64 randomised envs -> per-step obs, final obs, reward, done, params."""
    env = make_training_env(ray_env(), 64, randomize=randomize_train)

    @jax.jit
    def run(key):
        k_reset, k_act = jax.random.split(key)

        def body(state, k):
            action = jax.random.uniform(k, (64, 2), minval=-1.2, maxval=1.2)  # beyond: clipped
            new = env.step(state, action)
            return new, (state.obs, new.info["final_obs"], new.reward, new.done, state.params)

        _, out = jax.lax.scan(body, env.reset(k_reset), jax.random.split(k_act, 1000))
        return out

    return lambda seed: jax.tree.map(np.asarray, run(jax.random.PRNGKey(seed)))


@functools.cache
def random_rollout(seed: int):
    return random_rollout_fn()(seed)


def test_random_steps_stay_finite_and_are_deterministic():
    obs, final_obs, reward, done, _ = random_rollout(0)
    assert np.all(np.isfinite(obs)) and np.all(np.isfinite(final_obs))
    assert np.all(np.isfinite(reward))
    low, high = ray_env().spec.reward_range
    assert reward.min() >= low - 1e-6 and reward.max() <= high + 1e-6
    assert done.sum() > 10  # random driving leaves the track: episodes end and restart
    again = random_rollout_fn()(0)  # same key: the same trajectories, bit for bit
    np.testing.assert_array_equal(again[0], obs)
    np.testing.assert_array_equal(again[2], reward)


def test_steering_rate_limit_is_respected():
    env = ray_env()
    obs, final_obs, _, _, params = random_rollout(0)
    steer = obs[..., obs_index(env, "steering_angle")][..., 0]  # [T, B], before each step
    after = final_obs[..., obs_index(env, "steering_angle")][..., 0]  # after each step
    limit = params["steer_rate"] * env.config.ctrl_dt
    change = np.abs(after - steer)
    assert np.all(change <= limit + 1e-5)
    assert np.mean(change >= limit - 1e-4) > 0.2  # random commands often saturate the rate
    assert np.max(np.abs(steer)) <= env.config.vehicle.max_steer + 1e-6
    # From rest, a full-left command moves the wheels exactly rate * ctrl_dt in one step.
    state = env.reset_to(jax.random.PRNGKey(0), 0, 4.0, speed=1.0)
    nxt = jitted(env)[0](state, jnp.array([1.0, 0.0]))
    assert float(nxt.physics.car.delta) == pytest.approx(3.2 * 0.1, rel=1e-5)


def test_randomisation_changes_the_dynamics_and_step_is_traced_once():
    env = ray_env()
    step = jax.jit(env.step)
    state = env.reset_to(jax.random.PRNGKey(0), 0, 4.0, speed=3.0)
    action = jnp.array([0.5, 1.0])
    a = step(state.replace(params=randomize_train(jax.random.PRNGKey(1), state.params)), action)
    b = step(state.replace(params=randomize_train(jax.random.PRNGKey(2), state.params)), action)
    assert not np.allclose(np.asarray(a.obs), np.asarray(b.obs))
    for _ in range(3):
        a = step(a, action)
    assert step._cache_size() == 1


def test_latency_delays_the_applied_action():
    env = ray_env()
    step = jitted(env)[0]
    state = env.reset_to(jax.random.PRNGKey(0), 0, 4.0, speed=1.0)
    for latency, first_move in ((0, 1), (2, 3)):
        s = state.replace(params={**state.params, "latency": jnp.float32(latency)})
        moved = []
        for _ in range(4):
            s = step(s, jnp.array([1.0, 0.0]))
            moved.append(abs(float(s.physics.car.delta)) > 1e-6)
        assert moved.index(True) + 1 == first_move


# ---------------------------------------------------------------------------------------------
# Vehicle physics.


def test_straight_line_acceleration_reaches_top_speed_on_the_centreline():
    env = RCCar(RCCarConfig(tracks=("speedway",)))
    step = jax.jit(env.step)
    state = env.reset_to(jax.random.PRNGKey(0), 0, 2.0)
    for _ in range(60):  # 6 s at full throttle, zero steering: about 40 m of the 60 m straight
        state = step(state, jnp.array([0.0, 1.0]))
        assert not bool(state.terminated)
    assert float(state.metrics["speed"]) > 7.5
    assert abs(float(state.physics.offset)) < 1e-3
    assert abs(float(state.physics.heading_error)) < 1e-4
    # Top speed: where the motor force meets drag and rolling resistance, ~8.36 m/s.
    p, vc = env.default_params(), env.config.vehicle
    car = dyn.Car(*(jnp.zeros(()),) * 7)
    car = jax.jit(lambda c: dyn.simulate(c, 0.0, 1.0, p, vc, 0.01, 3000))(car)
    g, m = dyn.GRAVITY, float(p["mass"])
    coeffs = [float(p["drag"]), float(p["motor_gain"]) / vc.motor_vmax,
              float(p["rolling_resistance"]) * m * g - float(p["motor_gain"])]  # fmt: skip
    v_top = max(np.roots(coeffs).real)
    assert float(car.vx) == pytest.approx(v_top, rel=1e-3)
    assert 5.0 < v_top < 10.0


def steady_circle(throttle: float, steer: float):
    """Speed and path radius (m) at the centre of gravity after 30 s at constant commands."""
    env = RCCar()
    p, vc = env.default_params(), env.config.vehicle
    run = jax.jit(
        lambda s, t: dyn.simulate(dyn.Car(*(jnp.zeros(()),) * 7), s, t, p, vc, 0.01, 3000)
    )
    car = run(steer * vc.max_steer, throttle)
    speed = float(jnp.hypot(car.vx, car.vy))
    return speed, speed / abs(float(car.r)), vc, p


def test_constant_steering_circle_is_kinematic_at_low_speed_and_understeers_at_speed():
    steer = 0.6
    speed, radius, vc, p = steady_circle(0.1, steer)
    delta = steer * vc.max_steer
    lr = vc.wheelbase - vc.cg_to_front
    r_axle = vc.wheelbase / np.tan(delta)  # kinematic radius of the rear axle
    assert 0.3 < speed < 1.0
    assert radius == pytest.approx(r_axle, rel=0.03)
    assert radius == pytest.approx(np.hypot(lr, r_axle), rel=0.005)  # at the centre of gravity

    speed, radius_fast, *_ = steady_circle(0.4, steer)
    assert speed > 2.0
    # Linear understeer: L / R_axle = tan(delta) - K a_y / g with K = 1/c_f - 1/c_r > 0 (equal
    # axle loads); the Pacejka curve gives a little more understeer than linear.
    k = 1 / float(p["tire_stiffness_front"]) - 1 / float(p["tire_stiffness_rear"])
    assert k > 0
    a_y = speed**2 / radius_fast
    r_linear = np.hypot(lr, vc.wheelbase / (np.tan(delta) - k * a_y / dyn.GRAVITY))
    assert radius_fast > 1.05 * radius
    assert r_linear * 0.99 < radius_fast < r_linear * 1.05


# ---------------------------------------------------------------------------------------------
# Track logic.


def test_driving_off_the_track_terminates_with_the_penalty():
    for reward, penalty in (("multiplicative", 0.05), ("summed", 10.0)):
        env = RCCar(RCCarConfig(tracks=("oval",), reward=reward))
        step = jax.jit(env.step)
        state = env.reset_to(jax.random.PRNGKey(0), 0, 2.0, speed=2.0)
        steps = 0
        while not bool(state.terminated) and steps < 30:
            state = step(state, jnp.array([1.0, 0.5]))  # full left into the infield
            steps += 1
        assert bool(state.terminated) and steps < 20
        assert float(state.metrics["off_track"]) == 1.0
        half_width, car_half = 0.6, 0.5 * env.config.vehicle.car_width
        assert abs(float(state.physics.offset)) > half_width - car_half
        assert float(state.reward) < -0.5 * penalty


def lap_rollout(env: RCCar, steps: int, controller, heading: float = 0.0, param_set=None):
    """Every track of ``env`` from arc length 0, driven by ``controller(state) -> action``, with
    default params or params drawn from ``param_set``; returns per-step metrics, rewards,
    flags and times, ``[T, tracks]``."""

    @jax.jit
    def run(track):
        state = env.reset_to(jax.random.PRNGKey(0), track, 0.0, heading=heading)
        if param_set is not None:
            key = jax.random.fold_in(jax.random.PRNGKey(1), track)
            state = state.replace(params=make_randomizer(param_set)(key, state.params))

        def body(s, _):
            s = env.step(s, controller(s))
            return s, (s.metrics, s.reward, s.terminated, s.physics.time)

        return jax.lax.scan(body, state, None, length=steps)[1]

    out = jax.vmap(run)(jnp.arange(len(env.config.tracks)))
    return jax.tree.map(lambda x: np.swapaxes(np.asarray(x), 0, 1), out)


def test_pure_pursuit_laps_every_track_with_monotone_progress_and_a_lap_time():
    env = ray_env()
    metrics, reward, terminated, time = lap_rollout(
        env, 220, functools.partial(pure_pursuit_action, env)
    )
    assert not terminated.any()
    total = metrics["laps"] + metrics["progress"]  # [T, tracks]
    assert np.all(np.diff(total, axis=0) >= -1e-6)
    for k, name in enumerate(env.config.tracks):
        first = int(np.argmax(metrics["laps"][:, k] >= 1))
        assert metrics["laps"][first, k] == 1, name
        lap_time = metrics["lap_time"][first, k]
        # The lap ended within the step that completed it (time is interpolated inside it).
        assert time[first, k] - 0.1 <= lap_time <= time[first, k] + 1e-4, name
        assert metrics["checkpoints"][first, k] == round(env.track_geometry[k].length / 2.0)
        # CaRL reward: the route-completion increments of a clean lap add up to one lap.
        assert reward[: first + 1, k].sum() == pytest.approx(1.0, abs=0.02), name
    assert set(HELDOUT_TRACKS) <= set(env.config.tracks)
    # A heavier, slipperier, slower-steering car with two steps of latency: still laps.
    metrics, _, terminated, _ = lap_rollout(
        env, 220, functools.partial(pure_pursuit_action, env), param_set=PARAMETER_SETS["heldout"]
    )
    assert not terminated.any() and np.all(metrics["laps"][-1] >= 1)


def reverse_pursuit(env: RCCar, state):
    """Follows the centreline against the lap direction (the car starts turned around)."""
    tr, ph = env.tracks, state.physics
    car, t = ph.car, ph.track
    behind = jnp.mod(ph.index - jnp.round(0.8 / tr.spacing[t]).astype(jnp.int32), tr.num_points[t])
    rel = tr.points[t, behind] - jnp.stack([car.x, car.y])
    bearing = jnp.arctan2(rel[1], rel[0]) - car.psi
    alpha = jnp.arctan2(jnp.sin(bearing), jnp.cos(bearing))
    steer = jnp.arctan(2 * 0.26 * jnp.sin(alpha) / 0.8) / env.config.vehicle.max_steer
    return jnp.clip(jnp.stack([steer, 0.25]), -1.0, 1.0)


def test_driving_backwards_earns_no_laps_no_progress_and_no_reward():
    for reward_kind in ("multiplicative", "summed"):
        env = RCCar(RCCarConfig(tracks=("oval", "hook"), reward=reward_kind))
        metrics, reward, terminated, _ = lap_rollout(
            env, 400, functools.partial(reverse_pursuit, env), heading=np.pi
        )
        assert not terminated.any()
        for k in range(2):
            assert metrics["laps"][-1, k] == 0 and metrics["checkpoints"][-1, k] == 0
            assert metrics["progress"][:, k].max() < 0.02
            if reward_kind == "multiplicative":
                assert reward[:, k].max() < 0.01 and reward[:, k].sum() < 0.02
            else:
                assert reward[:, k].sum() < -20.0  # signed progress: backwards costs
    # The reverse run covered more than a lap of the oval (31.7 m) without earning one.
    env = RCCar(RCCarConfig(tracks=("oval",)))
    metrics, *_ = lap_rollout(env, 400, functools.partial(reverse_pursuit, env), heading=np.pi)
    assert metrics["speed"][50:].mean() * 0.1 * 350 > 31.7


def test_lane_factor_halves_the_multiplicative_reward():
    env = ray_env()
    step = jitted(env)[0]
    rewards = []
    for offset in (0.0, 0.45):  # 0.75 of the 0.6 m half-width: beyond lane_threshold 0.7
        state = env.reset_to(jax.random.PRNGKey(0), 0, 2.0, offset=offset, speed=2.0)
        rewards.append(float(step(state, jnp.array([0.0, 0.3])).reward))
    assert rewards[0] > 0
    assert rewards[1] == pytest.approx(0.5 * rewards[0], rel=1e-4)


def test_speed_and_action_change_factors_scale_the_multiplicative_reward():
    limited = RCCar(
        RCCarConfig(
            tracks=("oval",), speed_limit=1.0, overspeed_tolerance=2.0, max_action_change=0.5
        )
    )
    state = limited.reset_to(jax.random.PRNGKey(0), 0, 2.0, speed=2.0)
    plain = ray_env().reset_to(jax.random.PRNGKey(0), 0, 2.0, speed=2.0)
    for action, jump in ((jnp.array([0.0, 0.3]), 1.0), (jnp.array([0.0, 1.0]), 0.5)):
        a, b = jax.jit(limited.step)(state, action), jitted(ray_env())[0](plain, action)
        speed_factor = 1.0 - (float(a.metrics["speed"]) - 1.0) / 2.0
        assert 0.0 < speed_factor < 1.0
        assert float(a.reward) == pytest.approx(float(b.reward) * speed_factor * jump, rel=1e-4)


def test_rays_hit_the_boundary_at_the_analytic_distance():
    env = ray_env()
    # The middle of the oval's first straight (8 m long, 1.2 m wide), facing along it.
    state = env.reset_to(jax.random.PRNGKey(0), 0, 4.0)
    rays = np.asarray(env.rays(state.physics))
    angles = np.linspace(-np.pi / 2, np.pi / 2, 9)
    with np.errstate(divide="ignore"):
        expected = np.minimum(0.6 / np.abs(np.sin(angles)), 3.0)  # side walls, or max range
    np.testing.assert_allclose(rays, expected, rtol=1e-4, atol=1e-4)
    assert rays[0] == pytest.approx(0.6) and rays[-1] == pytest.approx(0.6)
    np.testing.assert_allclose(state.obs[obs_index(env, "rays")], rays / 3.0, rtol=1e-5)
    # Offset 0.3 m to the left: the left wall is 0.3 m away, the right one 0.9 m.
    state = env.reset_to(jax.random.PRNGKey(0), 0, 4.0, offset=0.3)
    rays = np.asarray(env.rays(state.physics))
    assert rays[-1] == pytest.approx(0.3, abs=1e-4) and rays[0] == pytest.approx(0.9, abs=1e-4)


def test_render_draws_the_track_and_the_car():
    env = ray_env()
    state = env.reset_to(jax.random.PRNGKey(0), 2, 5.0)
    image = env.render(state)
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    colours = {tuple(c) for c in image.reshape(-1, 3)[::7]}
    assert len(colours) > 4  # grass, road, edges, checkpoints, car
