"""Classical methods on real data from ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import pytest

from fluorecon.io import read_image
from fluorecon.methods import create
from fluorecon.metrics import evaluate

pytestmark = pytest.mark.realdata


def test_rl_improves_flowdec_bars(shared_data):
    """Hollow-bars benchmark (synthetic object, shipped PSF): RL sharpens towards the truth."""
    folder = shared_data / "flowdec_widefield_decon" / "bars-25pct"
    data, meta = read_image(folder / "data.tif")
    psf, _ = read_image(folder / "kernel.tif")
    truth, _ = read_image(folder / "actual.tif")
    before = evaluate(data, truth)
    result = create("rl", psf=psf, iterations=30).predict(data, meta.axes)
    after = evaluate(result, truth)
    assert after["psnr_normalized"] > before["psnr_normalized"] + 0.4
    assert after["ssim_normalized"] > before["ssim_normalized"] + 0.2


def test_tv_denoises_real_w2s_pair(shared_data):
    """A real single widefield shot against its 400-frame average (W2S)."""
    folder = shared_data / "denoise_w2s_fmd_8bit" / "w2s"
    noisy, meta = read_image(folder / "input_avg1_044_0.tif")
    target, _ = read_image(folder / "target_avg400_044_0.tif")
    method = create("tv")
    restored = method.predict(noisy, meta.axes)
    before = evaluate(noisy, target)["psnr_normalized"]
    after = evaluate(restored, target)["psnr_normalized"]
    assert after > before + 8.0
    assert method.calibration_ is not None
