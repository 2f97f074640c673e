"""Sequence RL: the GRU's sequence, temporal recall, open-loop acting, every critic head."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robotrl.algos import srl
from robotrl.nets import ValueHeadConfig
from robotrl.types import Transition
from tests.algos.test_algorithms import SPEC  # the fake 5-obs, 2-action spec

J = 4


def make(**kw):
    cfg = srl.SRLConfig(
        actor_hidden=(16,),
        critic_hidden=(16, 16),
        model_hidden=(16,),
        gru_hidden=8,
        batch_size=8,
        sequence_length=J,
        **kw,
    )
    return cfg, srl.make(cfg, SPEC), srl.make_nets(cfg, SPEC)


def batch(n=8, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    return Transition(
        obs=jax.random.normal(k[0], (n, 5)),
        action=jax.random.uniform(k[1], (n, 2), minval=-1.0, maxval=1.0),
        reward=jax.random.normal(k[2], (n,)),
        terminated=jnp.zeros(n, bool),
        truncated=jnp.zeros(n, bool),
        next_obs=jax.random.normal(k[3], (n, 5)),
        extras=(),
    )


@pytest.mark.parametrize("kind", ["mse", "hl_gauss", "two_hot"])
def test_update_with_every_critic_head(kind):
    _, algo, _ = make(critic=ValueHeadConfig(kind=kind), utd=2)
    state = algo.init(jax.random.PRNGKey(0))
    b = jax.tree.map(lambda x: jnp.concatenate([x, x]), batch())
    new, metrics = jax.jit(algo.update)(state, b, jax.random.PRNGKey(1))
    assert {"critic_loss", "model_loss", "actor_loss", "q_first", "q_last"} <= set(metrics)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    changed = lambda a, b: not np.allclose(jax.tree.leaves(a)[0], jax.tree.leaves(b)[0])
    assert changed(new.actor_params, state.actor_params)
    assert changed(new.model_params, state.model_params)
    assert int(new.step) == 1


def test_sequence_starts_with_the_first_primitive_and_feeds_actions_back():
    _, algo, nets = make()
    params = algo.init(jax.random.PRNGKey(0)).actor_params
    obs = jax.random.normal(jax.random.PRNGKey(2), (3, 5))
    actor = nets.sac.actor
    mean, _ = actor.apply(params, obs)
    actions, logp = actor.apply(params, obs, None, method=srl.SequenceActor.sequence)
    assert actions.shape == (3, J, 2) and logp.shape == (3, J)
    np.testing.assert_allclose(actions[:, 0], jnp.tanh(mean), atol=1e-6)
    assert not np.allclose(actions[:, 1], actions[:, 0])  # later primitives differ
    sampled, logp = actor.apply(
        params, obs, jax.random.PRNGKey(3), method=srl.SequenceActor.sequence
    )
    assert np.all(np.abs(sampled) <= 1) and np.all(np.isfinite(logp))


def test_recall_predicts_the_states_the_sequence_passes_through():
    _, algo, nets = make()
    state = algo.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(4), (2, 5))
    actions = jax.random.uniform(jax.random.PRNGKey(5), (2, J, 2), minval=-1, maxval=1)
    states = srl.recall_states(nets, state.model_params, obs, actions, recall=True)
    expected = [obs]
    for j in range(J - 1):
        x = jnp.concatenate([expected[-1], actions[:, j]], axis=-1)
        expected.append(expected[-1] + nets.model.apply(state.model_params, x))
    np.testing.assert_allclose(states, jnp.stack(expected, axis=1), rtol=1e-5, atol=1e-6)
    flat = srl.recall_states(nets, state.model_params, obs, actions, recall=False)
    np.testing.assert_allclose(flat, jnp.broadcast_to(obs[:, None], flat.shape))


def test_actor_loss_scores_every_primitive_at_its_recalled_state():
    cfg, algo, nets = make(num_critics=2, actor_q_reduction="min")
    state = algo.init(jax.random.PRNGKey(0))
    b, key = batch(), jax.random.PRNGKey(6)
    loss, (_, logp) = srl.actor_loss(state.actor_params, state, b, key, cfg, nets)
    # The same loss written out: sample the sequence, recall the states, min over critics.
    actions, logp_ref = nets.sac.actor.apply(
        state.actor_params, b.obs, key, method=srl.SequenceActor.sequence
    )
    states = srl.recall_states(nets, state.model_params, b.obs, actions, True)
    q = np.stack(
        [
            np.asarray(
                srl.sac.critic_values(nets.sac, state.critic_params, states[:, j], actions[:, j])
            ).min(axis=0)
            for j in range(J)
        ],
        axis=1,
    )
    ref = (np.exp(float(state.log_temp)) * np.asarray(logp_ref) - q).mean()
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    np.testing.assert_allclose(logp, logp_ref, rtol=1e-6)


def test_policy_plays_its_plan_open_loop_and_replans_every_j_steps():
    _, algo, nets = make()
    state = algo.init(jax.random.PRNGKey(0))
    policy, params = algo.make_policy(state, True)
    obs = jax.random.normal(jax.random.PRNGKey(7), (2 * J, 1, 5))  # a new obs every step
    carry = policy.init_carry((1,))
    actions = []
    for t in range(2 * J):
        action, carry, _ = policy.step(params, carry, obs[t], jax.random.PRNGKey(t))
        actions.append(action[0])
    plan0, _ = nets.sac.actor.apply(params, obs[0], None, method=srl.SequenceActor.sequence)
    plan1, _ = nets.sac.actor.apply(params, obs[J], None, method=srl.SequenceActor.sequence)
    expected = nets.sac.scaler.to_env(jnp.concatenate([plan0[0], plan1[0]]))
    np.testing.assert_allclose(np.stack(actions), expected, rtol=1e-5, atol=1e-6)


def test_privileged_critic_is_refused():
    with pytest.raises(ValueError, match="privileged_critic"):
        srl.SRLConfig(privileged_critic=True)
