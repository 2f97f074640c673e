"""The generated C on an emulated Cortex-M4F (STM32F405 under qemu-system-arm): self-test,
outputs against numpy, the NaN guard on the device, footprint and instruction count.

These need ``firmware_export/install_toolchain.sh``'s packages; without them they fail with a
one-line message naming that script (the ``toolchain`` fixture), never skip.
"""

from __future__ import annotations

import numpy as np
import pytest

from firmware_export import (
    BuildError,
    act_int8,
    check_toolchain,
    fitting_footprint,
    footprint,
    run_on_cortex_m4,
)
from firmware_export.cortex_m4 import ToolchainMissing
from tests.firmware_export.conftest import l2f_bundle, raw_obs, synthetic_bundle

needs_toolchain = pytest.mark.usefixtures("toolchain")  # fails (not skips) when missing

TOL = 1e-5  # head units, as on the host
RLTOOLS_FLOAT32_BYTES = 13_828 * 4  # [146, 64, 64, 4]: 13,828 float32 parameters (~55 KB)


@needs_toolchain
@pytest.mark.parametrize("quantize", ["float32", "int8"])
@pytest.mark.parametrize(
    "variant",
    ["td3-tanh-64x64-normaliser", "ppo-beta", "sac-relu-layernorm", "synthetic-relative-chunk"],
)
def test_cortex_m4_matches_numpy(variant, quantize, all_bundles, tmp_path):
    bundle = all_bundles[variant]
    obs = raw_obs(256, 6, bundle.obs_dim)
    obs[0, 3], obs[1, 0] = np.nan, np.inf
    run = run_on_cortex_m4(bundle, obs, tmp_path, quantize=quantize)
    result = run.result
    assert run.returncode == 0 and result.self_test_failures == 0
    assert result.struct_mismatches == 0
    assert list(result.status[:2]) == [1, 1] and (result.status[2:] == 0).all()
    np.testing.assert_array_equal(result.actions[:2], np.stack([bundle.safe_action] * 2))
    expected = bundle.act(obs[2:]) if quantize == "float32" else act_int8(bundle, obs[2:])
    error = np.abs(result.actions[2:] - expected) / bundle.action_scale
    assert error.max() <= TOL
    print(f"{variant} {quantize}: {run.instructions_per_step:,.0f} instructions/step (QEMU)")
    assert run.instructions_per_step > 1000


@needs_toolchain
def test_l2f_actor_footprint_and_instruction_count(tmp_path):
    """The [146, 64, 64, 4] actor: float32 about the size of its parameters, int8 under a third
    of RLtools' float32 figure, static RAM = the two scratch buffers."""
    bundle = l2f_bundle()
    f32 = footprint(bundle, tmp_path / "f32")
    i8 = footprint(bundle, tmp_path / "i8", quantize="int8")
    print(f"float32 {f32}\nint8 {i8}")
    # Parameters are the same bytes as RLtools'; code, head and guards add under 2 KB.
    assert f32["object_no_self_test"]["flash"] <= RLTOOLS_FLOAT32_BYTES + 2048
    assert i8["object_no_self_test"]["flash"] <= RLTOOLS_FLOAT32_BYTES / 3
    assert i8["linked"]["flash"] <= RLTOOLS_FLOAT32_BYTES / 3
    assert f32["object"]["ram"] == i8["object"]["ram"] <= 2 * 146 * 4 + 64
    obs = np.random.default_rng(0).normal(size=(64, 146)).astype(np.float32)
    run = run_on_cortex_m4(bundle, obs, tmp_path / "run")
    assert run.result.self_test_failures == 0
    assert np.abs(run.result.actions - bundle.act(obs)).max() <= TOL
    print(f"l2f float32: {run.instructions_per_step:,.0f} instructions/step, program {run.program}")


@needs_toolchain
def test_fitting_footprint_falls_back_to_int8_past_the_flash(tmp_path):
    """A policy of 282k parameters (1.13 MB in float32) overflows the STM32F405's 1 MB of
    flash: int8 (a quarter of that) fits; the small l2f actor stays float32."""
    big = synthetic_bundle(activations=("silu", "silu"), hidden=(600, 460), layer_norm=False)
    quantize, size = fitting_footprint(big, tmp_path / "big")
    assert quantize == "int8" and size["linked"]["flash"] < 1024 * 1024
    with pytest.raises(BuildError, match="overflowed"):
        footprint(big, tmp_path / "f32")
    assert fitting_footprint(l2f_bundle(), tmp_path / "l2f")[0] == "float32"


def test_missing_toolchain_fails_with_one_line_naming_the_script(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolchainMissing, match=r"install_toolchain\.sh") as err:
        check_toolchain()
    assert "\n" not in str(err.value)
