"""ARSQ's ``arsq`` bundle program: the numpy loop equals the JAX policy, survives save/load,
runs without jax, and malformed programs fail with one line."""

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from policies.arsq import decide
from policies.bundle import BundleError, PolicyBundle
from robotrl.algos import arsq
from robotrl.envs import RunningStats
from robotrl.export import bundle_from_state
from tests.firmware_export.conftest import SPEC, perturbed_state, raw_obs

CONFIGS = {
    "arsq-ln": arsq.ARSQConfig(critic_hidden=(32, 32), critic_layer_norm=True),
    "factorized-tanh": arsq.ARSQConfig(critic_hidden=(32,), activation="tanh", factorized=True),
    "arsq-2x7": arsq.ARSQConfig(critic_hidden=(16, 16), levels=2, bins=7),
}
MARGIN = 1e-4  # a bin choice can only differ where two bin scores are this close


def make(name, normalise=False):
    algo, state = perturbed_state(arsq, CONFIGS[name], SPEC)
    stats = None
    if normalise:
        stats = RunningStats.create(SPEC.obs_dim).update(jnp.asarray(raw_obs(500, 11)))
    return algo, state, stats, bundle_from_state(algo, state, SPEC, raw_obs(16, 3), stats)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_numpy_loop_equals_the_jax_policy(name):
    algo, state, stats, bundle = make(name, normalise=name == "arsq-ln")
    assert bundle.program == "arsq" and bundle.spec["head"] == "clip"
    obs = raw_obs(2000, 4)
    policy, params = algo.make_policy(state, True)
    seen = obs if stats is None else np.asarray(stats.normalize(jnp.asarray(obs), 10.0))
    expected = np.asarray(jax.jit(policy.step)(params, (), seen, jax.random.PRNGKey(0))[0])
    _, gap = decide(bundle.spec, bundle.params, bundle.normalize(obs), SPEC.action_dim, True)
    clear = gap > MARGIN
    assert clear.mean() > 0.98, clear.mean()
    error = np.abs(bundle.act(obs) - expected) / bundle.action_scale
    assert error[clear].max() <= 1e-6, error[clear].max()
    assert bundle.self_test() <= 1e-6


def test_save_load_round_trip_and_no_jax(tmp_path):
    _, _, _, bundle = make("arsq-ln", normalise=True)
    path = bundle.save(tmp_path / "arsq.rlb")
    loaded = PolicyBundle.load(path)
    obs = raw_obs(64, 5)
    np.testing.assert_array_equal(loaded.act(obs), bundle.act(obs))
    assert loaded.spec["arsq"] == {"levels": 3, "bins": 5, "factorized": False}
    code = (
        f"import sys; from policies.bundle import PolicyBundle; "
        f"b = PolicyBundle.load({str(path)!r}); b.self_test(); "
        f"assert not any(m == 'jax' or m.startswith('jax.') for m in sys.modules), 'jax'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_malformed_arsq_programs_are_refused():
    _, _, _, bundle = make("arsq-2x7")
    no_sizes = {k: v for k, v in bundle.spec.items() if k != "arsq"}
    with pytest.raises(BundleError, match="arsq program without its sizes"):
        dataclasses.replace(bundle, spec=no_sizes).validate()
    wrong_bins = {**bundle.spec, "arsq": {**bundle.spec["arsq"], "bins": 5}}
    with pytest.raises(BundleError, match="outputs 7 scores for 5 bins"):
        dataclasses.replace(bundle, spec=wrong_bins).validate()
    more_levels = {**bundle.spec, "arsq": {**bundle.spec["arsq"], "levels": 3}}
    with pytest.raises(BundleError, match="layer 0 expects"):
        dataclasses.replace(bundle, spec=more_levels).validate()
