"""Every algorithm x every critic head: init + update on a fake batch."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robotrl.algos import arsq, cql, iql, sac, td3
from robotrl.nets import ValueHeadConfig
from robotrl.types import ArraySpec, EnvSpec, Transition

SPEC = EnvSpec(
    name="fake",
    obs=ArraySpec((5,)),
    action_low=(-2.0, -1.0),
    action_high=(2.0, 3.0),
    ctrl_dt=0.05,
    episode_length=100,
    reward_range=(-1.0, 1.0),
)
PRIV_SPEC = dataclasses.replace(SPEC, privileged_obs=ArraySpec((9,)))
SMALL = dict(actor_hidden=(16, 16), critic_hidden=(16, 16), batch_size=8)
CONFIGS = {
    "sac": (sac.SACConfig, sac.make),
    "td3": (td3.TD3Config, td3.make),
    "iql": (iql.IQLConfig, iql.make),
    "cql": (cql.CQLConfig, cql.make),
    "arsq": (arsq.ARSQConfig, arsq.make),
}
# ARSQ's Q is a value plus summed soft advantages (scalars): it has no classification head, no
# actor (its policy is the Q network's) and no privileged critic (the policy reads the Q net).
SCALAR_Q = {"arsq"}


def make_algo(name, head, spec=SPEC, **kw):
    config_cls, make = CONFIGS[name]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    small = {k: v for k, v in SMALL.items() if k in fields}
    if "critic" in fields:
        kw["critic"] = head
    return make(config_cls(**small, **kw), spec)


ALGOS = {name: (lambda head, _n=name, **kw: make_algo(_n, head, **kw)) for name in CONFIGS}
EXPECTED = {
    "sac": {"critic_loss", "actor_loss", "q_mean", "target_mean", "entropy", "temperature"},
    "td3": {"critic_loss", "actor_loss", "q_mean", "target_mean"},
    "iql": {
        "critic_loss",
        "actor_loss",
        "q_mean",
        "target_mean",
        "value_loss",
        "v_mean",
        "advantage_mean",
        "weight_mean",
        "td_error",
    },
    "cql": {
        "critic_loss",
        "actor_loss",
        "q_mean",
        "target_mean",
        "entropy",
        "temperature",
        "cql_penalty",
        "calql_floored",
    },
    "arsq": {"critic_loss", "q_mean", "target_mean", "entropy"},
}
HEADS = ["mse", "hl_gauss", "two_hot"]


def fake_batch(n, spec=SPEC, seed=0):
    rng = np.random.default_rng(seed)
    obs = lambda: rng.normal(size=(n, spec.obs_dim)).astype(np.float32)
    if spec.privileged_obs is not None:
        priv = lambda: rng.normal(size=(n, spec.critic_obs_dim)).astype(np.float32)
        o, no = (
            {"state": obs(), "privileged_state": priv()},
            {"state": obs(), "privileged_state": priv()},
        )
    else:
        o, no = obs(), obs()
    low, high = np.array(spec.action_low), np.array(spec.action_high)
    return jax.tree.map(
        jnp.asarray,
        Transition(
            obs=o,
            action=rng.uniform(low, high, (n, spec.action_dim)).astype(np.float32),
            reward=rng.normal(size=n).astype(np.float32),
            terminated=rng.random(n) < 0.1,
            truncated=rng.random(n) < 0.1,
            next_obs=no,
        ),
    )


@pytest.mark.parametrize(
    ("name", "head"),
    [(n, h) for n in sorted(ALGOS) for h in HEADS if n not in SCALAR_Q or h == "mse"],
)
def test_update_is_finite_keeps_structure_and_changes_params(name, head):
    algo = ALGOS[name](ValueHeadConfig(kind=head, num_bins=21), utd=2)
    state = algo.init(jax.random.PRNGKey(0))
    update = jax.jit(algo.update)
    batch = fake_batch(2 * algo.config.batch_size)
    new, metrics = update(state, batch, jax.random.PRNGKey(1))
    assert set(metrics) == EXPECTED[name]
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
    assert jax.tree.structure(new) == jax.tree.structure(state)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(new))
    for part in ("critic_params", "actor_params")[: 1 if name in SCALAR_Q else 2]:
        changed = jax.tree.map(
            lambda a, b: not np.allclose(a, b), getattr(state, part), getattr(new, part)
        )
        assert any(jax.tree.leaves(changed)), f"{part} did not change"
    # The second call compiles nothing.
    new, _ = update(new, fake_batch(2 * algo.config.batch_size, seed=1), jax.random.PRNGKey(2))
    assert update._cache_size() == 1


@pytest.mark.parametrize("name", sorted(ALGOS))
def test_policies_act_inside_the_env_bounds(name):
    algo = ALGOS[name](ValueHeadConfig())
    state = algo.init(jax.random.PRNGKey(0))
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(64, 5)) * 10, jnp.float32)
    for deterministic in (True, False):
        policy, params = algo.make_policy(state, deterministic)
        action, carry, _ = policy.step(params, policy.init_carry((64,)), obs, jax.random.PRNGKey(3))
        assert action.shape == (64, 2) and carry == ()
        action = np.asarray(action)
        assert np.all(action >= np.array(SPEC.action_low) - 1e-6)
        assert np.all(action <= np.array(SPEC.action_high) + 1e-6)


@pytest.mark.parametrize("name", sorted(set(ALGOS) - SCALAR_Q))
def test_privileged_critic_reads_the_privileged_observation(name):
    algo = ALGOS[name](ValueHeadConfig(), privileged_critic=True, spec=PRIV_SPEC)
    state = algo.init(jax.random.PRNGKey(0))
    kernel = jax.tree.leaves(state.critic_params)[1]  # first Dense kernel [N, O + A, H]
    assert kernel.shape[1] == 9 + 2
    _, metrics = jax.jit(algo.update)(state, fake_batch(8, PRIV_SPEC), jax.random.PRNGKey(1))
    assert np.isfinite(float(metrics["critic_loss"]))


def test_sac_redq_ensemble_and_subset_min():
    algo = ALGOS["sac"](
        ValueHeadConfig(),
        num_critics=10,
        num_min=2,
        critic_layer_norm=True,
        actor_layer_norm=True,
        actor_q_reduction="mean",
    )
    state = algo.init(jax.random.PRNGKey(0))
    assert all(x.shape[0] == 10 for x in jax.tree.leaves(state.critic_params))
    _, metrics = jax.jit(algo.update)(state, fake_batch(8), jax.random.PRNGKey(1))
    assert np.isfinite(float(metrics["critic_loss"]))


def test_sac_soft_target_matches_a_plain_computation():
    """y = r + gamma (1 - terminated) (min of a critic subset - alpha log pi), by hand."""
    cfg = sac.SACConfig(**SMALL, num_critics=2, num_min=2, init_temperature=0.5)
    nets = sac.make_nets(cfg, SPEC)
    state = sac.init_state(jax.random.PRNGKey(0), cfg, SPEC, nets)
    batch = fake_batch(8)
    key = jax.random.PRNGKey(5)
    target = sac.soft_target(state, batch, key, cfg, nets)
    k_act, _ = jax.random.split(key)
    mean, log_std = nets.actor.apply(state.actor_params, batch.next_obs)
    from robotrl.nets import tanh_gaussian_sample

    a, logp = tanh_gaussian_sample(mean, log_std, k_act)
    q = np.asarray(nets.critic.apply(state.target_critic_params, batch.next_obs, a))[..., 0]
    r, term = np.asarray(batch.reward), np.asarray(batch.terminated)
    ref = [
        r[i] + (0 if term[i] else 0.99 * (min(q[0, i], q[1, i]) - 0.5 * float(logp[i])))
        for i in range(8)
    ]
    np.testing.assert_allclose(target, ref, rtol=1e-5, atol=1e-5)


def test_td3_actor_updates_every_policy_delay_steps():
    algo = ALGOS["td3"](ValueHeadConfig(), policy_delay=2)
    state = algo.init(jax.random.PRNGKey(0))
    update = jax.jit(algo.update)
    s1, _ = update(state, fake_batch(8), jax.random.PRNGKey(1))  # critic step 1: no actor step
    assert jax.tree.all(jax.tree.map(np.array_equal, s1.actor_params, state.actor_params))
    s2, _ = update(s1, fake_batch(8, seed=1), jax.random.PRNGKey(2))  # step 2: actor step
    assert not jax.tree.all(jax.tree.map(np.array_equal, s2.actor_params, s1.actor_params))


def test_bad_algorithm_configs_fail_clearly():
    with pytest.raises(ValueError, match="num_min"):
        sac.SACConfig(num_critics=2, num_min=3)
    with pytest.raises(ValueError, match="actor_q_reduction"):
        sac.SACConfig(actor_q_reduction="max")
