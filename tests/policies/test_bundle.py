"""The policy bundle: numpy forward equals JAX, round trips, and damaged files fail clearly."""

import dataclasses
import json
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from policies.bundle import BUNDLE_VERSION, BundleError, PolicyBundle
from robotrl.algos import ppo, sac, td3
from robotrl.envs import RunningStats
from robotrl.export import bundle_from_state
from tests.algos.test_algorithms import SPEC

VARIANTS = {
    "sac-relu-ln": (sac, sac.SACConfig(actor_hidden=(32, 32), actor_layer_norm=True)),
    "sac-gelu": (sac, sac.SACConfig(actor_hidden=(32, 16), activation="gelu")),
    "td3-tanh": (td3, td3.TD3Config(actor_hidden=(64, 64), activation="tanh")),
    "td3-elu-ln": (td3, td3.TD3Config(actor_hidden=(24,), activation="elu", actor_layer_norm=True)),
    "ppo-normal-silu": (
        ppo,
        ppo.PPOConfig(actor_hidden=(32, 32), activation="silu", init_log_std=0.5),
    ),
    "ppo-beta": (ppo, ppo.PPOConfig(actor_hidden=(32, 32), distribution="beta")),
}


def perturbed_state(module, cfg, seed=0):
    """A freshly initialised state with every parameter nudged, so heads see large outputs."""
    algo = module.make(cfg, SPEC)
    state = algo.init(jax.random.PRNGKey(seed))
    leaves, tree = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    noisy = [
        x + 0.1 * jax.random.normal(k, x.shape) if jnp.issubdtype(x.dtype, jnp.floating) else x
        for x, k in zip(leaves, keys, strict=True)
    ]
    return algo, jax.tree.unflatten(tree, noisy)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_numpy_forward_equals_the_jax_policy(name):
    algo, state = perturbed_state(*VARIANTS[name])
    obs = np.random.default_rng(0).normal(size=(10_000, SPEC.obs_dim)).astype(np.float32) * 2
    bundle = bundle_from_state(algo, state, SPEC, obs[:16])
    policy, params = algo.make_policy(state, True)
    expected, _, _ = jax.jit(policy.step)(params, (), obs, jax.random.PRNGKey(0))
    # Within 1e-6 in [-1, 1] action units (the env scales them by up to 2 here).
    unit_error = np.abs(bundle.act(obs) - np.asarray(expected)) / bundle.action_scale
    assert unit_error.max() <= 1e-6, unit_error.max()
    assert bundle.self_test(atol=2e-6) <= 2e-6


def test_normaliser_is_part_of_the_policy():
    algo, state = perturbed_state(*VARIANTS["td3-tanh"])
    rng = np.random.default_rng(1)
    stats = RunningStats.create(5).update(jnp.asarray(rng.normal(3.0, 2.0, (500, 5)), jnp.float32))
    raw = rng.normal(3.0, 2.0, (64, 5)).astype(np.float32)
    bundle = bundle_from_state(algo, state, SPEC, raw, obs_stats=stats)
    policy, params = algo.make_policy(state, True)
    expected, _, _ = policy.step(params, (), stats.normalize(jnp.asarray(raw)), None)
    np.testing.assert_allclose(bundle.act(raw), expected, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    algo, state = perturbed_state(*VARIANTS["sac-relu-ln"])
    obs = np.random.default_rng(2).normal(size=(8, 5)).astype(np.float32)
    bundle = bundle_from_state(algo, state, SPEC, obs, source={"run": "r", "checkpoint_step": 5})
    path = bundle.save(tmp_path / "p.rlb")
    loaded = PolicyBundle.load(path)
    np.testing.assert_array_equal(loaded.act(obs), bundle.act(obs))
    assert loaded.source["checkpoint_step"] == 5 and loaded.ctrl_dt == SPEC.ctrl_dt
    assert loaded.self_test() <= 1e-6


def _rewrite(path, change):
    """Rewrites a bundle's npz members through ``change(dict) -> dict`` (no checksum update)."""
    with np.load(path) as data:
        contents = {k: data[k] for k in data.files}
    contents = change(contents)
    with open(path, "wb") as f:
        np.savez(f, **contents)


@pytest.fixture
def saved(tmp_path):
    algo, state = perturbed_state(*VARIANTS["td3-tanh"])
    obs = np.random.default_rng(3).normal(size=(4, 5)).astype(np.float32)
    return bundle_from_state(algo, state, SPEC, obs).save(tmp_path / "p.rlb")


def test_modified_weights_fail_the_checksum(saved):
    def change(c):
        c["param/pi.0.w"] = c["param/pi.0.w"] + 1e-3
        return c

    _rewrite(saved, change)
    with pytest.raises(BundleError, match="checksum"):
        PolicyBundle.load(saved)


def test_other_version_fails_clearly(saved):
    def change(c):
        meta = json.loads(c["__meta__"].tobytes())
        meta["version"] = BUNDLE_VERSION + 1
        c["__meta__"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
        return c

    _rewrite(saved, change)
    with pytest.raises(BundleError, match="version"):
        PolicyBundle.load(saved)


def test_truncated_or_missing_file_fails_clearly(saved, tmp_path):
    saved.write_bytes(saved.read_bytes()[:500])
    with pytest.raises(BundleError, match="not a readable policy bundle"):
        PolicyBundle.load(saved)
    with pytest.raises(BundleError, match="does not exist"):
        PolicyBundle.load(tmp_path / "nope.rlb")
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as z:
        z.writestr("x.npy", b"")
    with pytest.raises(BundleError):
        PolicyBundle.load(tmp_path / "other.npz")


def test_wrong_shapes_are_refused(tmp_path):
    algo, state = perturbed_state(*VARIANTS["td3-tanh"])
    obs = np.zeros((2, 5), np.float32)
    bundle = bundle_from_state(algo, state, SPEC, obs)
    bad = dataclasses.replace(
        bundle, params={**bundle.params, "pi.1.w": bundle.params["pi.1.w"][:, :10]}
    )
    with pytest.raises(BundleError, match="layer"):
        bad.save(tmp_path / "bad.rlb")
    with pytest.raises(BundleError, match="observation has 4 values"):
        bundle.act(np.zeros((1, 4), np.float32))
    wrong_head = dataclasses.replace(bundle, spec={**bundle.spec, "head": "tanh_mean"})
    with pytest.raises(BundleError, match="head"):
        wrong_head.validate()
    for extra, match in (
        ({"action_reference": [0, 5]}, "action_reference"),  # obs has 5 values: 0..4
        ({"action_reference": [0]}, "action_reference"),  # one per action value
        ({"chunk": {"obs_history": 2, "action_steps": 1}}, "chunk"),  # 5 frames don't split
        ({"program": "unet"}, "program"),
    ):
        with pytest.raises(BundleError, match=match):
            dataclasses.replace(bundle, spec={**bundle.spec, **extra}).validate()


def test_loading_and_acting_never_imports_jax(saved):
    code = (
        f"import sys; from policies.bundle import PolicyBundle; "
        f"b = PolicyBundle.load({str(saved)!r}); b.self_test(); "
        f"assert not any(m == 'jax' or m.startswith('jax.') for m in sys.modules), 'jax'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
