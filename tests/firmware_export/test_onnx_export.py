"""ONNX export: onnxruntime's output equals the numpy forward; metadata carries the layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from firmware_export import write_onnx
from tests.firmware_export.conftest import SYNTHETIC, VARIANTS, raw_obs

try:
    import onnx
    import onnxruntime
except ImportError:  # fail, don't skip: the export is part of the package
    onnx = onnxruntime = None


@pytest.fixture(autouse=True)
def _needs_onnx():
    if onnxruntime is None:
        pytest.fail("ONNX tests need onnx and onnxruntime: pip install onnx onnxruntime")


@pytest.mark.parametrize("variant", sorted(VARIANTS) + sorted(SYNTHETIC))
def test_onnxruntime_equals_the_numpy_forward(variant, all_bundles, tmp_path):
    bundle = all_bundles[variant]
    path = write_onnx(bundle, tmp_path / "policy.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    obs = raw_obs(10_000, 7, bundle.obs_dim)
    (actions,) = session.run(["action"], {"obs": obs})
    assert actions.shape == (10_000, bundle.action_dim) and actions.dtype == np.float32
    error = np.abs(actions - bundle.act(obs)) / bundle.action_scale
    assert error.max() <= 1e-5
    (single,) = session.run(["action"], {"obs": bundle.golden_obs[:1]})
    np.testing.assert_allclose(single, bundle.golden_actions[:1], atol=1e-5)


def test_metadata_carries_layouts_and_provenance(all_bundles, tmp_path):
    bundle = all_bundles["td3-tanh-64x64-normaliser"]
    model = onnx.load(str(write_onnx(bundle, tmp_path / "p.onnx")))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["obs_layout"])[0]["name"] == "position_error"
    assert json.loads(meta["action_layout"])[0]["units"] == "N"
    assert float(meta["ctrl_dt"]) == bundle.ctrl_dt
    assert json.loads(meta["source"])["checkpoint_step"] == 12_345
    assert json.loads(meta["safe_action"]) == bundle.safe_action.tolist()
    assert len(meta["bundle_sha256"]) == 64
    assert model.opset_import[0].version == 17
