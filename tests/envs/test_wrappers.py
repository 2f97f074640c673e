"""Episode semantics of the wrapper stack: limits, auto-reset, action repeat, randomisation,
normalisation, batching, and no retracing."""

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.envs import (
    ActionRepeat,
    AutoReset,
    DomainRandomization,
    EpisodeLimit,
    ObsNormalization,
    RunningStats,
    VmapWrapper,
    make_eval_env,
    make_training_env,
)
from robotrl.envs.randomize import Range, make_randomizer
from sims.pendulum import PARAMETER_SETS, Pendulum, PendulumConfig

randomize_mass_length = make_randomizer(PARAMETER_SETS["train"])


def rollout(env, state, steps, action):
    step = jax.jit(env.step)
    states = []
    for _ in range(steps):
        state = step(state, action)
        states.append(state)
    return states


def test_episode_limit_truncates_and_never_terminates():
    env = EpisodeLimit(Pendulum(), 5)
    states = rollout(env, env.reset(jax.random.PRNGKey(0)), 5, jnp.zeros(1))
    assert [bool(s.truncated) for s in states] == [False] * 4 + [True]
    assert not any(bool(s.terminated) for s in states)
    assert env.spec.episode_length == 5


def test_auto_reset_keeps_final_obs_and_runs_the_next_episode_in_full():
    env = AutoReset(EpisodeLimit(Pendulum(), 4))
    states = rollout(env, env.reset(jax.random.PRNGKey(0)), 12, jnp.ones(1))
    flags = [bool(s.truncated) for s in states]
    # Every episode lasts 4 steps: the truncation flag does not stick after a reset.
    assert flags == [False, False, False, True] * 3
    end = states[3]
    assert int(end.info["steps"]) == 0  # counter restarted
    # final_obs is the true last observation (from the pre-reset physics), obs the fresh one.
    prev = states[2]
    th, thdot = np.asarray(prev.physics)
    u = 1.0
    new_thdot = np.clip(thdot + (3 * 10 / 2 * np.sin(th) + 3.0 * u) * 0.05, -8, 8)
    new_th = th + new_thdot * 0.05
    np.testing.assert_allclose(
        end.info["final_obs"], [np.cos(new_th), np.sin(new_th), new_thdot], rtol=1e-5, atol=1e-5
    )
    assert not np.allclose(end.obs, end.info["final_obs"])
    # Non-final steps: final_obs == obs.
    np.testing.assert_allclose(states[1].info["final_obs"], states[1].obs)


def test_action_repeat_sums_rewards_and_scales_time():
    base = EpisodeLimit(Pendulum(), 200)
    env = ActionRepeat(base, 3)
    assert env.spec.ctrl_dt == 3 * base.spec.ctrl_dt
    assert env.spec.episode_length == base.spec.episode_length // 3
    s0 = base.reset(jax.random.PRNGKey(1))
    states = rollout(base, s0, 3, jnp.array([0.5]))
    repeated = jax.jit(env.step)(s0, jnp.array([0.5]))
    np.testing.assert_allclose(repeated.reward, sum(float(s.reward) for s in states), rtol=1e-5)
    np.testing.assert_allclose(repeated.obs, states[-1].obs, rtol=1e-5)


def test_action_repeat_stops_at_the_episode_end():
    env = ActionRepeat(EpisodeLimit(Pendulum(), 4), 3)
    s = env.reset(jax.random.PRNGKey(0))
    s = jax.jit(env.step)(s, jnp.zeros(1))  # sub-steps 1..3
    s = jax.jit(env.step)(s, jnp.zeros(1))  # sub-step 4 ends the episode; 5, 6 discarded
    assert bool(s.truncated) and int(s.info["steps"]) == 4


def test_domain_randomization_draws_params_per_episode():
    env = VmapWrapper(DomainRandomization(Pendulum(), randomize_mass_length), 16)
    s = env.reset(jax.random.PRNGKey(0))
    mass = np.asarray(s.params["mass"])
    assert mass.std() > 0.01 and np.all((mass >= 0.8) & (mass <= 1.2))
    # Params change the dynamics: the same action from the same state differs across envs.
    train = make_training_env(Pendulum(), 4, episode_length=3, randomize=randomize_mass_length)
    st = train.reset(jax.random.PRNGKey(0))
    before = np.asarray(st.params["length"]).copy()
    for _ in range(3):
        st = jax.jit(train.step)(st, jnp.zeros((4, 1)))
    assert not np.allclose(before, st.params["length"])  # a new episode, new parameters


def test_vmap_batches_and_eval_env_does_not_reset():
    env = make_training_env(Pendulum(), 8)
    s = env.reset(jax.random.PRNGKey(0))
    assert s.obs.shape == (8, 3) and s.reward.shape == (8,)
    ev = make_eval_env(Pendulum(), 3, episode_length=2)
    s = ev.reset(jax.random.PRNGKey(0))
    for _ in range(3):
        s = jax.jit(ev.step)(s, jnp.zeros((3, 1)))
    assert "final_obs" not in s.info


def test_running_stats_match_numpy():
    rng = np.random.default_rng(0)
    data = [rng.normal(3.0, 2.0, size=(16, 4)).astype(np.float32) for _ in range(10)]
    stats = RunningStats.create(4)
    for x in data:
        stats = stats.update(jnp.asarray(x))
    allx = np.concatenate(data)
    np.testing.assert_allclose(stats.mean, allx.mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats.var, allx.var(0), rtol=1e-3)
    assert float(stats.count) == 160


def test_obs_normalization_normalizes_obs_and_final_obs():
    env = ObsNormalization(make_training_env(Pendulum(PendulumConfig(episode_length=5)), 32))
    s = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    for _ in range(20):
        s = step(s, jnp.zeros((32, 1)))
    stats = s.info["obs_stats"]
    np.testing.assert_allclose(s.obs, stats.normalize(s.info["raw_obs"]), rtol=1e-5, atol=1e-5)
    assert abs(float(s.obs.mean())) < 1.5
    frozen = ObsNormalization(make_eval_env(Pendulum(), 4), update=False)
    fs = frozen.reset(jax.random.PRNGKey(1), stats=stats)
    fs = jax.jit(frozen.step)(fs, jnp.zeros((4, 1)))
    np.testing.assert_allclose(fs.info["obs_stats"].mean, stats.mean)


def test_reset_and_step_trace_once():
    traces = {"reset": 0, "step": 0}
    base = Pendulum()

    class Counting:
        spec = base.spec
        default_params = base.default_params

        def reset(self, key, params=None):
            traces["reset"] += 1
            return base.reset(key, params)

        def step(self, state, action):
            traces["step"] += 1
            return base.step(state, action)

    env = make_training_env(Counting(), 4)
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    s = reset(jax.random.PRNGKey(0))
    for _ in range(5):
        s = step(s, jnp.zeros((4, 1)))
    # AutoReset calls reset inside step once per trace; nothing retraces on later calls.
    assert traces == {"reset": 2, "step": 1}


def test_randomizer_modes_and_errors():
    params = {"mass": jnp.ones(3), "offset": jnp.zeros(()), "delay": jnp.zeros(())}
    draw = make_randomizer(
        {
            "mass": Range(0.5, 2.0),
            "offset": Range(-1.0, 1.0, "offset"),
            "delay": Range(2.0, 3.0, "value"),
        }
    )
    out = jax.jit(draw)(jax.random.PRNGKey(0), params)
    assert out["mass"].shape == (3,) and len(set(np.asarray(out["mass"]).tolist())) == 3
    assert np.all((out["mass"] >= 0.5) & (out["mass"] <= 2.0))
    assert -1 <= float(out["offset"]) <= 1 and 2 <= float(out["delay"]) <= 3
    import pytest

    with pytest.raises(KeyError, match="not in the env's params"):
        make_randomizer({"inertia": Range(0.9, 1.1)})(jax.random.PRNGKey(0), params)
    with pytest.raises(ValueError, match="mode"):
        Range(0.0, 1.0, "multiply")


def test_heldout_set_lies_outside_the_training_set():
    train = make_training_env(Pendulum(), 64, randomize=make_randomizer(PARAMETER_SETS["train"]))
    held = make_training_env(Pendulum(), 64, randomize=make_randomizer(PARAMETER_SETS["heldout"]))
    m_train = np.asarray(train.reset(jax.random.PRNGKey(0)).params["mass"])
    m_held = np.asarray(held.reset(jax.random.PRNGKey(0)).params["mass"])
    assert m_train.max() <= 1.2 < m_held.min()
