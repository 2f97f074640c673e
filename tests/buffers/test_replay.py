"""Device and host replay buffers: ring semantics, sampling, windows, mixing."""

import jax
import jax.numpy as jnp
import numpy as np

from robotrl.buffers import HostReplay, replay


def row(t, num_envs=2):
    """One step of every env: x = 10 * t + env, so a sample tells where it came from."""
    x = 10.0 * t + jnp.arange(num_envs, dtype=jnp.float32)
    return {"x": x, "done": jnp.zeros(num_envs, bool)}


def test_ring_buffer_overwrites_the_oldest():
    state = replay.init(row(0), capacity=8)  # 4 rows of 2 envs
    assert state.rows == 4 and state.num_envs == 2
    add = jax.jit(replay.add)
    for t in range(6):
        state = add(state, row(t))
    assert int(state.size) == 4 and int(state.pos) == 2
    stored = sorted(np.asarray(state.data["x"]).ravel().tolist())
    assert stored == sorted([10.0 * t + e for t in range(2, 6) for e in range(2)])
    sample = jax.jit(replay.sample, static_argnums=2)(state, jax.random.PRNGKey(0), 512)
    assert set(np.asarray(sample["x"]).tolist()) == set(stored)


def test_extend_equals_repeated_add():
    a = replay.init(row(0), 10)
    b = replay.init(row(0), 10)
    for t in range(7):
        a = replay.add(a, row(t))
    items = jax.tree.map(lambda *xs: jnp.stack(xs), *[row(t) for t in range(7)])
    b = replay.extend(b, items)
    np.testing.assert_array_equal(a.data["x"], b.data["x"])
    assert int(a.pos) == int(b.pos) and int(a.size) == int(b.size)


def test_windows_are_consecutive_steps_of_one_env_and_never_cross_the_head():
    state = replay.init(row(0), capacity=16)  # 8 rows
    for t in range(11):  # wrapped: rows hold t = 3..10, head at t = 3
        state = replay.add(state, row(t))
    w = jax.jit(replay.sample_windows, static_argnums=(2, 3))(state, jax.random.PRNGKey(1), 256, 4)
    x = np.asarray(w["x"])  # [B, T]
    assert x.shape == (256, 4)
    np.testing.assert_allclose(np.diff(x, axis=1), 10.0)  # consecutive times, same env
    assert x.min() >= 30.0 and x.max() <= 101.0  # only live data, oldest first


def test_window_mask_stops_after_the_first_episode_end():
    term = jnp.array([[False, True, False, False], [False, False, False, False]])
    trunc = jnp.array([[False, False, False, True], [False, False, True, False]])
    mask = replay.window_mask(term, trunc)
    np.testing.assert_array_equal(mask, [[True, True, False, False], [True, True, True, False]])


def test_mixed_sampling_takes_the_offline_fraction():
    offline = replay.add(replay.init({"src": jnp.zeros(1)}, 4), {"src": jnp.zeros(1)})
    online = replay.add(replay.init({"src": jnp.ones(1)}, 4), {"src": jnp.ones(1)})
    batch = replay.sample_mixed(jax.random.PRNGKey(0), offline, online, 64, 0.25)
    assert batch["src"].shape == (64,)
    assert int((batch["src"] == 0).sum()) == 16
    only_online = replay.sample_mixed(jax.random.PRNGKey(0), offline, online, 64, 0.0)
    assert bool((only_online["src"] == 1).all())


def test_host_buffer_has_the_same_semantics():
    buf = HostReplay(jax.device_get(row(0)), capacity=8, seed=0)
    for t in range(6):
        buf.add(jax.device_get(row(t)))
    assert len(buf) == 8
    stored = sorted(buf.data["x"].ravel().tolist())
    assert stored == sorted([10.0 * t + e for t in range(2, 6) for e in range(2)])
    w = buf.sample_windows(128, 3)["x"]
    np.testing.assert_allclose(np.diff(w, axis=1), 10.0)
    assert w.min() >= 20.0
    restored = HostReplay(jax.device_get(row(0)), capacity=8)
    restored.load_state_dict(buf.state_dict())
    np.testing.assert_array_equal(restored.data["x"], buf.data["x"])
    assert (restored.pos, restored.size) == (buf.pos, buf.size)
