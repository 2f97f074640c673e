"""CQL / Cal-QL: the conservative penalty against a plain reference, the Cal-QL floor, and
that the penalty pushes down values away from the data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robotrl.algos import cql
from robotrl.types import Transition
from sims.pendulum import Pendulum


def reference_penalty(q_data, q_random, q_policy, logp, action_dim, temperature, floor=None):
    """CQL(H) written out with numpy loops, one critic and one state at a time."""
    n_critics, _, batch = q_random.shape
    out = np.zeros(n_critics)
    for i in range(n_critics):
        per_state = []
        for b in range(batch):
            terms = [q - action_dim * math.log(0.5) for q in q_random[i, :, b]]
            for j in range(q_policy.shape[1]):
                q = q_policy[i, j, b] if floor is None else max(q_policy[i, j, b], floor[b])
                terms.append(q - logp[j, b])
            terms = np.array(terms) / temperature
            lse = temperature * (terms.max() + math.log(np.exp(terms - terms.max()).sum()))
            per_state.append(lse - q_data[i, b])
        out[i] = np.mean(per_state)
    return out


@pytest.mark.parametrize("calql", [False, True])
def test_penalty_matches_the_reference(calql):
    rng = np.random.default_rng(0)
    n, m, b, a = 2, 6, 5, 3
    q_data = rng.normal(size=(n, b))
    q_random = rng.normal(size=(n, 4, b))
    q_policy = rng.normal(size=(n, m, b))
    logp = rng.normal(size=(m, b))
    floor = rng.normal(size=b) if calql else None
    got, floored = cql.conservative_penalty(
        jnp.asarray(q_data),
        jnp.asarray(q_random),
        jnp.asarray(q_policy),
        jnp.asarray(logp),
        a,
        0.7,
        None if floor is None else jnp.asarray(floor),
    )
    want = reference_penalty(q_data, q_random, q_policy, logp, a, 0.7, floor)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if calql:
        assert float(floored) == pytest.approx(np.mean(q_policy < floor))


def test_calql_floor_is_active_where_the_mc_return_exceeds_the_policy_value():
    """With Monte-Carlo returns far above the policy-action values, Cal-QL's penalty is larger
    than CQL's (its pushed-down values are floored up to the returns) and every value is
    floored; with returns far below, the floor never binds and the two agree."""
    q_data = jnp.zeros((2, 3))
    q_random = jnp.zeros((2, 1, 3))
    q_policy = jnp.full((2, 2, 3), -5.0)
    logp = jnp.zeros((2, 3))
    plain, _ = cql.conservative_penalty(q_data, q_random, q_policy, logp, 1, 1.0)
    high, share_high = cql.conservative_penalty(
        q_data, q_random, q_policy, logp, 1, 1.0, jnp.full(3, 10.0)
    )
    low, share_low = cql.conservative_penalty(
        q_data, q_random, q_policy, logp, 1, 1.0, jnp.full(3, -100.0)
    )
    assert float(share_high) == 1.0 and float(share_low) == 0.0
    assert np.all(np.asarray(high) > np.asarray(plain) + 5)
    np.testing.assert_allclose(low, plain)


def test_cql_pushes_values_away_from_the_data_down():
    """A few hundred CQL steps on a fixed batch: Q at uniform random actions ends below Q at the
    dataset actions (and below where plain SAC leaves it)."""
    env = Pendulum()
    spec = env.spec
    key = jax.random.PRNGKey(0)
    b = 64
    ks = jax.random.split(key, 4)
    obs = jax.random.normal(ks[0], (b, 3))
    batch = Transition(
        obs=obs,
        action=jnp.zeros((b, 1)),
        reward=-jnp.ones(b),
        terminated=jnp.zeros(b, bool),
        truncated=jnp.zeros(b, bool),
        next_obs=obs,
        extras={"mc_return": jnp.full(b, -50.0)},
    )

    def gap(cql_alpha):
        cfg = cql.CQLConfig(
            actor_hidden=(32, 32),
            critic_hidden=(32, 32),
            batch_size=b,
            cql_alpha=cql_alpha,
            calql=True,
        )
        algo = cql.make(cfg, spec)
        state = algo.init(ks[1])
        update = jax.jit(algo.update)
        for i in range(300):
            state, metrics = update(state, batch, jax.random.fold_in(ks[2], i))
        from robotrl.algos.sac import critic_values, make_nets

        nets = make_nets(cfg, spec)
        rand = jax.random.uniform(ks[3], (b, 1), minval=-1, maxval=1)
        q_rand = critic_values(nets, state.critic_params, obs, rand).mean()
        q_data = critic_values(nets, state.critic_params, obs, jnp.zeros((b, 1))).mean()
        return float(q_data - q_rand), metrics

    gap_cql, metrics = gap(5.0)
    gap_sac, _ = gap(0.0)
    assert np.isfinite(float(metrics["cql_penalty"]))
    assert gap_cql > 0.5 and gap_cql > gap_sac + 0.5, (gap_cql, gap_sac)
