"""The dynamics ensemble used by AM-Q."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.algos.dynamics import Dynamics, DynamicsConfig


def test_ensemble_learns_linear_dynamics_and_picks_elites(key):
    k1, k2, k3 = jax.random.split(key, 3)
    s = jax.random.normal(k1, (2048, 3))
    a = jax.random.uniform(k2, (2048, 2), minval=-1, maxval=1)
    nxt = s + 0.5 * jnp.concatenate([a, a[:, :1]], axis=1)
    cfg = DynamicsConfig(num_members=4, num_elites=3, hidden=(64, 64), batch_size=128)
    dyn = Dynamics(cfg, 3, 2)
    state = dyn.init(k3, s, a, nxt)
    state, _ = jax.jit(dyn.train, static_argnums=3)(state, (s, a, nxt), key, 1500)
    state = dyn.select_elites(state, s[:256], a[:256], nxt[:256])
    assert state.elites.shape == (3,) and len(set(np.asarray(state.elites).tolist())) == 3
    pred = dyn.predict(state, s[:256], a[:256], jax.random.PRNGKey(5))
    err = float(jnp.sqrt(jnp.mean((pred - nxt[:256]) ** 2)))
    spread = float(jnp.std(nxt[:256] - s[:256]))
    assert err < 0.25 * spread, (err, spread)
