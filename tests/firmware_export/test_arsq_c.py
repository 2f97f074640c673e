"""ARSQ's decision loop in C: bit-equal to the numpy bundle (float32 and int8), the NaN guard,
ASan/UBSan, the emulated Cortex-M4, and a trained run exported end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware_export import CPolicy, act_int8, run_on_cortex_m4, run_sanitized
from firmware_export.onnx_export import build_model
from policies.arsq import decide
from robotrl.algos import arsq
from robotrl.export import bundle_from_state
from tests.firmware_export.conftest import SPEC, perturbed_state, raw_obs

pytestmark = pytest.mark.usefixtures("host_compiler")

MARGIN = 1e-4  # a bin choice can only differ where two bin scores are this close
VARIANTS = {
    "arsq": arsq.ARSQConfig(critic_hidden=(32, 32), critic_layer_norm=True),
    "factorized": arsq.ARSQConfig(critic_hidden=(32, 32), factorized=True),
}


@pytest.fixture(scope="module")
def bundles():
    out = {}
    for name, cfg in VARIANTS.items():
        algo, state = perturbed_state(arsq, cfg, SPEC)
        out[name] = bundle_from_state(algo, state, SPEC, raw_obs(16, 3), source={"run": name})
    return out


@pytest.mark.parametrize("quantize", ["float32", "int8"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_c_equals_the_numpy_loop(name, quantize, bundles, tmp_path):
    bundle = bundles[name]
    policy = CPolicy.build(bundle, tmp_path, quantize=quantize)
    assert policy.self_test() == 0
    obs = raw_obs(2000, 1)
    expected = bundle.act(obs) if quantize == "float32" else act_int8(bundle, obs)
    actions = policy.act(obs)
    assert (policy.step_status == 0).all()
    # The same float32 operations in the same order: equal to the bit, except possibly where
    # two bin scores tie within float rounding (none did here).
    _, gap = decide(bundle.spec, bundle.params, bundle.normalize(obs), SPEC.action_dim, True)
    clear = gap > MARGIN
    assert clear.mean() > 0.98
    np.testing.assert_array_equal(actions[clear], expected[clear])


def test_nan_guard_and_sanitizers(bundles, tmp_path):
    bundle = bundles["arsq"]
    obs = raw_obs(32, 6)
    obs[0, 3], obs[1, 0] = np.nan, np.inf
    result = run_sanitized(bundle, obs, tmp_path)
    assert result.self_test_failures == 0 and result.struct_mismatches == 0
    assert list(result.status[:2]) == [1, 1] and (result.status[2:] == 0).all()
    np.testing.assert_array_equal(result.actions[:2], np.stack([bundle.safe_action] * 2))
    np.testing.assert_array_equal(result.actions[2:], bundle.act(obs[2:]))


def test_cortex_m4_runs_the_loop_bit_for_bit(bundles, tmp_path, toolchain):
    bundle = bundles["arsq"]
    obs = raw_obs(64, 7)
    obs[0, 2] = np.nan
    run = run_on_cortex_m4(bundle, obs, tmp_path)
    assert run.returncode == 0 and run.result.self_test_failures == 0
    assert run.result.status[0] == 1 and (run.result.status[1:] == 0).all()
    np.testing.assert_array_equal(run.result.actions[1:], bundle.act(obs[1:]))
    # 3 levels x 4 dims = 12 evaluations of a 30 -> 32 -> 32 -> 5 net per step.
    print(f"arsq on the Cortex-M4: {run.instructions_per_step:,.0f} instructions/step")


def test_header_names_the_loop_and_onnx_refuses(bundles, tmp_path):
    bundle = bundles["factorized"]
    policy = CPolicy.build(bundle, tmp_path)
    header = (tmp_path / "policy.h").read_text()
    assert "arsq factorised 3 levels x 5 bins over 4 dims, 19 obs: 30 -> dense 32" in header
    assert "#define POLICY_ACTION_DIM 4" in header and "policy_obs_t" in header
    assert policy.self_test() == 0
    with pytest.raises(ValueError, match=r"arsq.*no ONNX export"):
        build_model(bundle)


def test_a_trained_bandit_run_exports_to_c(tmp_path):
    """``robotrl export RUN --format c`` on a (short) ARSQ run of the bandit."""
    from benchmarks.arsq_bandit import write_dataset
    from policies.bundle import PolicyBundle
    from robotrl import experiment
    from robotrl.config import ConfigError
    from robotrl.export import export_run

    dataset = write_dataset(tmp_path / "demos", count=2000)
    cfg = experiment.load_config(
        "configs/arsq_bandit2d.yaml",
        [f"train.dataset={dataset}", "train.total_steps=300", "train.log_every=300"],
    )
    run, _ = experiment.train(cfg, out=tmp_path / "run")
    written = export_run(run.path, "c")["files"]
    header = Path(written["header"]).read_text()
    assert "arsq auto-regressive 3 levels x 5 bins" in header
    bundle = PolicyBundle.load(written["bundle"])
    assert bundle.program == "arsq" and bundle.source["algo"] == "arsq"
    policy = CPolicy.build(bundle, tmp_path / "c")
    obs = np.ones((1, 1), np.float32)
    np.testing.assert_array_equal(policy.act(obs), bundle.act(obs))
    assert policy.self_test() == 0
    with pytest.raises(ConfigError, match="use --format c"):  # one line for the CLI
        export_run(run.path, "onnx")
