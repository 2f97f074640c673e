"""Generated C: strict compile, ASan/UBSan, equality with the numpy forward, the NaN guard, the
self-test, int8 against its numpy reference, and the file's shape (structs, defines, no libc)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest

from firmware_export import CExportError, CPolicy, act_int8, quantize_weight, run_sanitized
from firmware_export.build import STRICT_FLAGS, compile_c
from firmware_export.c_export import c_float, write_c
from tests.firmware_export.conftest import SYNTHETIC, VARIANTS, raw_obs, synthetic_bundle

pytestmark = pytest.mark.usefixtures("host_compiler")

ALL = sorted(VARIANTS) + sorted(SYNTHETIC)
TOL = 1e-5  # in [-1, 1] head units: |c - numpy| / action_scale
INT8_BOUND = 0.05  # int8 vs float32, head units (measured: 0.005-0.03 on these nets)
OK, ERR_OBS, ERR_ACTION = 0, 1, 2


@pytest.fixture(scope="module")
def compiled(all_bundles, tmp_path_factory):
    """``compiled(variant, quantize) -> CPolicy``, each built once per module."""
    cache = {}

    def get(variant: str, quantize: str = "float32") -> CPolicy:
        if (variant, quantize) not in cache:
            work = tmp_path_factory.mktemp(f"{variant}-{quantize}")
            cache[variant, quantize] = CPolicy.build(all_bundles[variant], work, quantize=quantize)
        return cache[variant, quantize]

    return get


def unit_error(a, b, bundle) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / bundle.action_scale))


@pytest.mark.parametrize("variant", ALL)
def test_float32_equals_the_numpy_forward(variant, all_bundles, compiled):
    bundle, policy = all_bundles[variant], compiled(variant)
    obs = raw_obs(10_000, 1, bundle.obs_dim)
    actions = policy.act(obs)
    assert (policy.step_status == OK).all()
    assert unit_error(actions, bundle.act(obs), bundle) <= TOL
    assert policy.self_test() == 0


@pytest.mark.parametrize("variant", ALL)
def test_int8_equals_its_numpy_reference_and_stays_near_float32(variant, all_bundles, compiled):
    bundle, policy = all_bundles[variant], compiled(variant, "int8")
    obs = raw_obs(10_000, 2, bundle.obs_dim)
    actions = policy.act(obs)
    assert unit_error(actions, act_int8(bundle, obs), bundle) <= TOL
    drift = unit_error(actions, bundle.act(obs), bundle)
    print(f"{variant}: int8 vs float32 max error {drift:.4f} (head units)")
    assert drift <= INT8_BOUND
    assert policy.self_test() == 0  # goldens from the int8 reference at the float32 tolerance


@pytest.mark.parametrize("quantize", ["float32", "int8"])
@pytest.mark.parametrize("variant", ALL)
def test_large_finite_inputs_never_give_nonfinite_actions(variant, quantize, all_bundles, compiled):
    bundle, policy = all_bundles[variant], compiled(variant, quantize)
    rng = np.random.default_rng(3)
    magnitudes = np.array([1e3, 1e6, 1e12, 1e30, np.finfo(np.float32).max], np.float32)
    signs = rng.choice([-1.0, 1.0], (500, bundle.obs_dim))
    obs = (signs * rng.choice(magnitudes, (500, bundle.obs_dim))).astype(np.float32)
    actions = policy.act(obs)
    assert np.isfinite(actions).all()
    assert set(np.unique(policy.step_status)) <= {OK, ERR_ACTION}
    fallback = policy.step_status == ERR_ACTION
    np.testing.assert_array_equal(
        actions[fallback], np.broadcast_to(bundle.safe_action, (fallback.sum(), bundle.action_dim))
    )


@pytest.mark.parametrize("variant", ["td3-tanh-64x64-normaliser", "ppo-beta"])
def test_nonfinite_input_gives_status_and_safe_action(variant, all_bundles, compiled):
    bundle, policy = all_bundles[variant], compiled(variant)
    obs = np.repeat(raw_obs(1, 4, bundle.obs_dim), 3 * bundle.obs_dim, axis=0)
    for i in range(bundle.obs_dim):  # NaN, +Inf, -Inf in every position
        obs[3 * i, i], obs[3 * i + 1, i], obs[3 * i + 2, i] = np.nan, np.inf, -np.inf
    actions = policy.act(obs)
    assert (policy.step_status == ERR_OBS).all()
    np.testing.assert_array_equal(actions, np.broadcast_to(bundle.safe_action, actions.shape))


@pytest.mark.parametrize("quantize", ["float32", "int8"])
@pytest.mark.parametrize(
    "variant", ["td3-tanh-64x64-normaliser", "sac-relu-layernorm", "ppo-beta", *SYNTHETIC]
)
def test_sanitizers_find_nothing(variant, quantize, all_bundles, compiled, tmp_path):
    bundle = all_bundles[variant]
    obs = raw_obs(200, 5, bundle.obs_dim)
    obs[0, 0], obs[1, -1], obs[2] = np.nan, -np.inf, 3e38
    result = run_sanitized(bundle, obs, tmp_path, quantize=quantize)  # raises on a finding
    assert result.self_test_failures == 0 and result.struct_mismatches == 0
    assert list(result.status[:2]) == [ERR_OBS, ERR_OBS]
    policy = compiled(variant, quantize)
    expected = policy.act(obs)  # -O2 shared library vs the -O1 sanitized program
    np.testing.assert_array_equal(result.status, policy.step_status)
    assert unit_error(result.actions, expected, bundle) <= 1e-6


def test_self_test_catches_wrong_goldens(all_bundles, tmp_path):
    bundle = all_bundles["td3-tanh-64x64-normaliser"]
    wrong = dataclasses.replace(bundle, golden_actions=bundle.golden_actions.copy())
    wrong.golden_actions[::2, 0] += 1e-3 * (1 + bundle.action_scale[0])
    policy = CPolicy.build(wrong, tmp_path)
    assert policy.self_test() == (len(bundle.golden_obs) + 1) // 2


def test_header_has_named_structs_units_and_provenance(all_bundles, tmp_path):
    bundle = all_bundles["td3-tanh-64x64-normaliser"]
    header = write_c(bundle, tmp_path)["header"].read_text()
    for line in (
        "float position_error[3]; /* [3] m, world: position minus target */",
        "float battery; /* [1] V: pack voltage */",
        "float thrust; /* [1] N, body: collective thrust */",
        "#define POLICY_OBS_DIM 19",
        "#define POLICY_ACTION_DIM 4",
        "#define POLICY_CTRL_DT 0.01f",
        '#define POLICY_SOURCE_RUN "runs/td3-tanh-64x64-normaliser"',
        "#define POLICY_SOURCE_CHECKPOINT_STEP 12345L",
        "#define POLICY_OBS_BATTERY_OFFSET 18",
        "int policy_step(const policy_obs_t *obs, policy_action_t *action);",
        "int policy_step_flat(const float *obs, float *action);",
        "int policy_self_test(void);",
    ):
        assert line in header, line
    assert re.search(r'#define POLICY_BUNDLE_SHA256 "[0-9a-f]{64}"', header)

    odd = write_c(synthetic_bundle(), tmp_path / "odd")["header"].read_text()
    assert "float base_pos[3]; /* [3] m, world: a * / b ? ?= */" in odd
    assert "float int_field;" in odd and "float f_2nd[4];" in odd


@pytest.mark.parametrize("quantize", ["float32", "int8"])
def test_generated_c_allocates_nothing_and_uses_only_math_h(all_bundles, tmp_path, quantize):
    files = write_c(all_bundles["sac-relu-layernorm"], tmp_path, quantize=quantize)
    source = files["source"].read_text()
    includes = re.findall(r"#include\s+(\S+)", source + files["header"].read_text())
    assert set(includes) <= {"<math.h>", "<stdint.h>", '"policy.h"'}
    for word in ("malloc", "calloc", "free(", "printf", "double"):
        assert word not in source
    if quantize == "int8":
        assert "static const int8_t l0_q[64][19]" in source
        assert "POLICY_INT8_GOLDEN_ERROR" in files["header"].read_text()
    else:
        assert "static const float l0_w[64][19]" in source


def test_two_policies_link_into_one_program(all_bundles, tmp_path):
    """``name`` prefixes every public symbol, so firmware can hold several policies."""
    a = write_c(all_bundles["td3-tanh-64x64-normaliser"], tmp_path, name="walk")
    b = write_c(all_bundles["ppo-beta"], tmp_path, name="climb", quantize="int8")
    main = tmp_path / "main.c"
    main.write_text(
        '#include "walk.h"\n#include "climb.h"\n'
        "int main(void) { return walk_self_test() + climb_self_test(); }\n"
    )
    exe = compile_c([a["source"], b["source"], main], tmp_path / "both", [*STRICT_FLAGS])
    assert subprocess.run([str(exe)]).returncode == 0


def test_refuses_what_it_cannot_export(all_bundles, tmp_path):
    bundle = all_bundles["td3-tanh-64x64-normaliser"]
    with pytest.raises(CExportError, match="quantize"):
        write_c(bundle, tmp_path, quantize="int4")
    with pytest.raises(CExportError, match="C identifier"):
        write_c(bundle, tmp_path, name="2fast")
    with pytest.raises(CExportError, match="carry"):
        write_c(
            dataclasses.replace(bundle, spec={**bundle.spec, "carry": [{"name": "h"}]}), tmp_path
        )
    with pytest.raises(CExportError, match="golden"):
        write_c(dataclasses.replace(bundle, golden_obs=None, golden_actions=None), tmp_path)
    params = {**bundle.params, "pi.0.b": np.full_like(bundle.params["pi.0.b"], np.nan)}
    with pytest.raises(CExportError, match="NaN"):
        write_c(dataclasses.replace(bundle, params=params), tmp_path)


def test_quantize_weight_is_per_channel_symmetric():
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(40, 6)) * np.array([1e-3, 0.1, 1, 10, 100, 0])).astype(np.float32)
    q, scale = quantize_weight(w)
    assert q.dtype == np.int8 and scale.shape == (6,)
    assert np.abs(q).max() <= 127 and (np.abs(q).max(0)[:5] == 127).all()
    assert (q[:, 5] == 0).all()  # an all-zero channel stays zero
    assert (np.abs(q * scale - w) <= scale / 2 + 1e-7 * np.abs(w)).all()


def test_float_literals_round_trip():
    values = np.array([0.1, -0.0, 1.0, 1e-38, 3.4028235e38, 1 / 3, 1e-45], np.float32)
    for v in values:
        text = c_float(v)
        assert np.float32(float(text.rstrip("f"))).tobytes() == v.tobytes(), text
    assert c_float(np.nan) == "NAN" and c_float(-np.inf) == "-INFINITY"


def test_exporting_never_imports_jax(tmp_path, all_bundles):
    path = all_bundles["sac-relu-layernorm"].save(tmp_path / "p.rlb")
    code = (
        "import sys; from policies.bundle import PolicyBundle; import firmware_export as fx; "
        f"b = PolicyBundle.load({str(path)!r}); "
        f"fx.write_c(b, {str(tmp_path)!r}, quantize='int8'); "
        f"p = fx.CPolicy.build(b, {str(tmp_path / 'lib')!r}); assert p.self_test() == 0; "
        "assert not any(m == 'jax' or m.startswith('jax.') for m in sys.modules), 'jax'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rebuilding_in_one_directory_loads_the_new_library(all_bundles, tmp_path):
    bundle = all_bundles["sac-relu-layernorm"]
    obs = raw_obs(64, 8, bundle.obs_dim)
    first = CPolicy.build(bundle, tmp_path).act(obs)
    second = CPolicy.build(bundle, tmp_path, quantize="int8").act(obs)
    assert unit_error(first, bundle.act(obs), bundle) <= TOL
    assert unit_error(second, act_int8(bundle, obs), bundle) <= TOL
