"""ONNX export: onnxruntime reproduces PyTorch within 1e-4 on sizes other than the export
example (dynamic axes), and the sidecar's affine maps reproduce fluorecon's prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from fluorecon.core.errors import OutputExistsError  # noqa: E402
from fluorecon.methods.learned.onnx_export import export_onnx, run_onnx  # noqa: E402


@pytest.mark.parametrize("fixture", ["care2d", "n2v3d"])
def test_onnx_matches_torch_and_fluorecon(fixture, request, tmp_path):
    method = request.getfixturevalue(fixture)
    mc = method.model_config
    res = export_onnx(method, tmp_path / "model", opset=18)
    assert res.onnx_path.name == "model.onnx" and res.max_abs_diff <= 1e-4
    meta = json.loads(res.sidecar_path.read_text())
    assert meta["onnx_file"] == "model.onnx" and meta["halo"] == method.receptive_field
    # dynamic batch and spatial axes: another batch size and non-cubic sizes
    div = mc.unet.divisible_by
    shape = (3, 1) + tuple(div * k for k in ((6, 10) if mc.unet.ndim == 2 else (4, 6, 5)))
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    with torch.no_grad():
        ref = method.net.eval()(torch.from_numpy(x)).numpy()
    out = run_onnx(res.onnx_path, x)
    assert out.shape == ref.shape
    assert np.max(np.abs(out - ref)) <= 1e-4
    # sidecar normalisation + ONNX == fluorecon's own prediction (target units)
    raw = (x[0, 0] * 80.0 + 60.0).astype(np.float32)
    pre, post = meta["preprocessing"], meta["postprocessing"]
    xn = raw * np.float32(pre["gain"][0]) + np.float32(pre["offset"][0])
    y = run_onnx(res.onnx_path, xn[None, None])[0, 0]
    y = y * np.float32(post["gain"][0]) + np.float32(post["offset"][0])
    sp = mc.axes
    expect = method.predict_block(raw, sp)
    np.testing.assert_allclose(y, expect, rtol=0, atol=1e-4 * float(np.abs(expect).max()))


def test_onnx_refuses_existing_output(care2d, tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(OutputExistsError):
        export_onnx(care2d, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == b"x"
