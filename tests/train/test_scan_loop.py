"""The scan loop: accounting, vmapped seeds, exact resume, non-finite stops, checkpoints."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robotrl.algos import sac
from robotrl.envs import make_eval_env, make_training_env
from robotrl.runs import CheckpointError, CheckpointStore
from robotrl.train.config import TrainConfig
from robotrl.train.scan_loop import ScanSession, select_seed
from robotrl.train.session import NonFiniteError, run_training
from sims.pendulum import Pendulum, PendulumConfig

SMALL = sac.SACConfig(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=32)


def session(cfg: TrainConfig, env=None, algo_cfg=SMALL, seed=0) -> ScanSession:
    env = env or Pendulum(PendulumConfig(episode_length=50))
    algo = sac.make(algo_cfg, make_training_env(env, 1).spec)
    return ScanSession(
        make_training_env(env, cfg.num_envs), make_eval_env(env, cfg.eval_episodes), algo, cfg, seed
    )


BASE = TrainConfig(
    total_steps=400,
    num_envs=2,
    learning_starts=100,
    buffer_size=1000,
    log_every=100,
    eval_every=200,
    eval_episodes=3,
    checkpoint_every=200,
)


def test_chunk_accounting_and_metrics():
    s = session(BASE)
    first = s.run_chunk()
    assert s.env_steps() == 100
    assert np.isnan(first.metrics["train/critic_loss"]).all()  # learning has not started
    second = s.run_chunk()
    assert np.isfinite(second.metrics["train/critic_loss"]).all()
    # 2 envs x 100 steps of 50-step episodes -> 4 episodes by step 200, each a 50-step return.
    total = first.metrics["train/episodes"] + second.metrics["train/episodes"]
    assert total.tolist() == [4.0]
    assert -16.3 * 50 <= float(second.metrics["train/episode_return"][0]) <= 0
    assert int(np.asarray(s.state.buffer.size)) == 100  # rows of 2 envs
    result = s.evaluate()
    assert result.returns.shape == (1, 3) and np.all(result.returns <= 0)
    assert result.metrics["torque_abs"].shape == (1, 3)  # the env's metrics at the last step


def test_vmapped_seeds_match_single_seed_runs():
    one = session(dataclasses.replace(BASE, num_seeds=1))
    many = session(dataclasses.replace(BASE, num_seeds=3))
    for _ in range(3):
        r1, r3 = one.run_chunk(), many.run_chunk()
    np.testing.assert_allclose(
        r3.metrics["train/critic_loss"][0], r1.metrics["train/critic_loss"][0], rtol=1e-3
    )
    leaf = lambda s: np.asarray(jax.tree.leaves(s.state.algo.actor_params)[0])
    np.testing.assert_allclose(leaf(many)[0], leaf(one)[0], rtol=1e-3, atol=1e-5)
    assert not np.allclose(leaf(many)[0], leaf(many)[1])  # seeds differ from each other


def test_resume_from_a_checkpoint_continues_exactly(tmp_path):
    straight = session(BASE)
    for _ in range(4):
        straight.run_chunk()
    first = session(BASE)
    first.run_chunk(), first.run_chunk()
    store = CheckpointStore(tmp_path / "ckpt")
    store.save(first.env_steps(), first.checkpoint_state(), {"env_steps": first.env_steps()})
    resumed = session(BASE)
    tree, meta = store.restore(resumed.abstract_state())
    resumed.load_state(tree)
    assert meta["env_steps"] == resumed.env_steps() == 200
    resumed.run_chunk(), resumed.run_chunk()
    jax.tree.map(np.testing.assert_array_equal, straight.state.algo, resumed.state.algo)


def test_checkpoint_round_trip_gives_the_same_deterministic_action(tmp_path):
    s = session(BASE)
    s.run_chunk(), s.run_chunk()
    store = CheckpointStore(tmp_path / "ckpt")
    store.save(200, s.checkpoint_state(), {"env_steps": 200})
    other = session(BASE, seed=7)
    tree, _ = CheckpointStore(tmp_path / "ckpt").restore(other.abstract_state())
    other.load_state(tree)
    algo = sac.make(SMALL, Pendulum().spec)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(16, 3)), jnp.float32)
    act = lambda st: algo.make_policy(jax.tree.map(lambda x: x[0], st.algo), True)
    (pa, params_a), (pb, params_b) = act(s.state), act(other.state)
    a, _, _ = pa.step(params_a, (), obs, jax.random.PRNGKey(0))
    b, _, _ = pb.step(params_b, (), obs, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(a, b)


def test_truncated_checkpoint_fails_with_a_clear_error(tmp_path):
    s = session(BASE)
    s.run_chunk()
    store = CheckpointStore(tmp_path / "ckpt")
    store.save(100, s.checkpoint_state(), {"env_steps": 100})
    files = sorted(
        (p for p in (tmp_path / "ckpt").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    biggest = files[-1]
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 3])
    with pytest.raises(CheckpointError, match="unreadable"):
        CheckpointStore(tmp_path / "ckpt").restore(s.abstract_state())


class NaNAfter:
    """A pendulum whose sensor starts returning NaN after ``n`` steps of an episode: the fault a
    broken simulator or sensor produces, which no real config of the pendulum can."""

    def __init__(self, n):
        self.base, self.n = Pendulum(PendulumConfig(episode_length=200)), n
        self.spec = self.base.spec

    def default_params(self):
        return self.base.default_params()

    def reset(self, key, params=None):
        s = self.base.reset(key, params)
        return s.replace(info={**s.info, "t": jnp.zeros((), jnp.int32)})

    def step(self, state, action):
        s = self.base.step(state, action)
        t = state.info["t"] + 1
        obs = jnp.where(t >= self.n, jnp.nan, s.obs)
        return s.replace(obs=obs, info={**s.info, "t": t})


def test_nan_observation_stops_training_naming_the_step(tmp_path):
    cfg = dataclasses.replace(BASE, num_envs=1)
    s = session(cfg, env=NaNAfter(130))
    store = CheckpointStore(tmp_path / "ckpt")
    with pytest.raises(NonFiniteError) as err:
        run_training(s, dataclasses.replace(cfg, checkpoint_every=100), checkpointer=store)
    assert err.value.name == "env/obs" and err.value.step == 130
    assert store.steps() == [100]  # the last good checkpoint, nothing after it


def test_diverging_loss_stops_training_naming_the_metric():
    algo_cfg = dataclasses.replace(SMALL, critic_lr=1e30, actor_lr=1e30)
    s = session(BASE, algo_cfg=algo_cfg)
    with pytest.raises(NonFiniteError) as err:
        run_training(s, BASE)
    assert err.value.name.startswith("train/")
    assert 100 < err.value.step <= 400


def test_on_policy_updates_once_per_rollout_on_the_rollout_in_order():
    from robotrl.algos import ppo

    env = Pendulum(PendulumConfig(episode_length=50))
    algo = ppo.make(
        ppo.PPOConfig(
            actor_hidden=(16,), critic_hidden=(16,), rollout_length=10, minibatch_size=20, epochs=1
        ),
        env.spec,
    )
    cfg = TrainConfig(total_steps=400, num_envs=4, log_every=80, eval_episodes=2)
    s = ScanSession(make_training_env(env, 4), make_eval_env(env, 2), algo, cfg, 0)
    assert int(np.asarray(s.state.buffer.size)) == 0
    assert select_seed(s.state, 0).buffer.rows == 10
    result = s.run_chunk()  # 20 iterations of 4 envs = 2 rollouts of 10 steps
    assert int(np.asarray(s.state.algo.step)[0]) == 2
    assert np.isfinite(result.metrics["train/policy_loss"]).all()
    assert int(np.asarray(s.state.buffer.pos)) == 0  # the buffer holds exactly one rollout
    with pytest.raises(ValueError, match="multiple of rollout_length"):
        ScanSession(
            make_training_env(env, 4),
            make_eval_env(env, 2),
            algo,
            dataclasses.replace(cfg, log_every=100),
            0,
        )


def test_host_loop_runs_on_policy_algorithms():
    from robotrl.algos import ppo
    from robotrl.envs.host import GymnasiumEnv
    from robotrl.train.host_loop import HostSession

    make = lambda n: GymnasiumEnv("Pendulum-v1", n)
    env = make(2)
    algo = ppo.make(
        ppo.PPOConfig(
            actor_hidden=(16,), critic_hidden=(16,), rollout_length=25, minibatch_size=25, epochs=1
        ),
        env.spec,
    )
    cfg = TrainConfig(total_steps=100, num_envs=2, log_every=100, eval_episodes=2)
    s = HostSession(env, make, algo, cfg, 0)
    result = s.run_chunk()
    assert int(np.asarray(s.algo_state.step)) == 2
    assert np.isfinite(result.metrics["train/value_loss"]).all()


class StagedPendulum(Pendulum):
    """A pendulum with a reward curriculum: stage k (every 40 env steps) pays k per step."""

    @property
    def relabel_reward(self):
        return lambda batch, env_steps: jnp.broadcast_to(
            (env_steps // 40).astype(batch.reward.dtype), batch.reward.shape
        )


@pytest.mark.parametrize("on_policy", [False, True])
def test_learner_sees_rewards_relabelled_for_the_curriculum_stage(on_policy):
    """An env's ``relabel_reward`` replaces the stored rewards of every batch the algorithm
    updates on (L2F's curriculum), on- and off-policy; the env's own rewards are untouched."""
    from robotrl.algos import ppo
    from robotrl.types import Algorithm

    env = StagedPendulum(PendulumConfig(episode_length=50))
    inner = (
        ppo.make(
            ppo.PPOConfig(
                actor_hidden=(8,), critic_hidden=(8,), rollout_length=5, minibatch_size=20
            ),
            env.spec,
        )
        if on_policy
        else sac.make(SMALL, env.spec)
    )

    def update(state, batch, key):
        state, metrics = inner.update(state, batch, key)
        return state, {**metrics, "seen_reward": batch.reward.mean()}

    algo = Algorithm(inner.config, inner.init, update, inner.make_policy, inner.rollout_length)
    cfg = TrainConfig(total_steps=200, num_envs=4, learning_starts=20, log_every=200, eval_every=0)
    s = ScanSession(make_training_env(env, 4), make_eval_env(env, 2), algo, cfg, 0)
    result = s.run_chunk()
    # Updates after env step n (every 4 env steps): off-policy once learning started (n > 20),
    # on-policy after each 5-step rollout (n = 20, 40, ...); the chunk metric is their mean.
    update_steps = range(20, 201, 20) if on_policy else range(24, 201, 4)
    expected = np.mean([n // 40 for n in update_steps])
    assert float(result.metrics["train/seen_reward"][0]) == pytest.approx(expected)
    # Episode returns are the env's own (negative) rewards.
    assert float(result.metrics["train/episode_return"][0]) < 0.0


def test_zero_size_arrays_survive_a_checkpoint(tmp_path):
    """MJX states hold zero-size arrays (``act`` of a model without actuator state), which
    orbax refuses to write; the store keeps stand-ins and restores the right shapes."""
    tree = {"qpos": np.arange(6.0).reshape(2, 3), "act": np.zeros((2, 0), np.float32)}
    store = CheckpointStore(tmp_path / "ckpt")
    store.save(7, tree, {"env_steps": 7})
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
    restored, meta = store.restore(abstract)
    store.close()
    assert meta["env_steps"] == 7
    np.testing.assert_array_equal(restored["qpos"], tree["qpos"])
    assert restored["act"].shape == (2, 0) and restored["act"].dtype == np.float32
