"""TD targets and polyak averaging against plain references."""

import jax.numpy as jnp
import numpy as np

from robotrl.algos.common import minibatches, polyak, td_target


def test_td_target_bootstraps_truncated_but_not_terminated():
    reward = jnp.array([1.0, 1.0, 1.0])
    terminated = jnp.array([False, True, False])
    # The third transition is truncated (time limit): it must still bootstrap.
    next_value = jnp.array([10.0, 10.0, 10.0])
    out = td_target(reward, terminated, next_value, 0.9)
    ref = [1.0 + 0.9 * 10.0, 1.0, 1.0 + 0.9 * 10.0]
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_td_target_plain_loop_reference():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=64).astype(np.float32), rng.normal(size=64).astype(np.float32)
    term = rng.random(64) < 0.3
    out = td_target(jnp.asarray(r), jnp.asarray(term), jnp.asarray(v), 0.97)
    ref = [r[i] + (0.0 if term[i] else 0.97 * v[i]) for i in range(64)]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_polyak_moves_tau_of_the_way():
    target = {"w": jnp.array([0.0, 10.0]), "b": jnp.array(4.0)}
    online = {"w": jnp.array([1.0, 0.0]), "b": jnp.array(0.0)}
    out = polyak(target, online, 0.1)
    np.testing.assert_allclose(out["w"], [0.1, 9.0], rtol=1e-6)
    np.testing.assert_allclose(out["b"], 3.6, rtol=1e-6)
    np.testing.assert_allclose(polyak(target, online, 1.0)["w"], online["w"])


def test_minibatches_split_in_order():
    batch = {"x": jnp.arange(12.0).reshape(12, 1)}
    mb = minibatches(batch, 3)
    assert mb["x"].shape == (3, 4, 1)
    np.testing.assert_allclose(mb["x"][1, :, 0], [4, 5, 6, 7])
