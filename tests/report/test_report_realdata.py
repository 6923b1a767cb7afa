"""Evaluation report on a real noisy / 400-frame-average pair (W2S, 8-bit display copies
stretched independently, so only the fitted display and normalised metrics are fair)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fluorecon.io import read_image
from fluorecon.methods import create
from fluorecon.report.evaluation import evaluation_report
from fluorecon.report.html import external_references


@pytest.mark.realdata
def test_w2s_report_fits_contrast_and_scores_denoising(shared_data):
    folder = shared_data / "denoise_w2s_fmd_8bit" / "w2s"
    noisy, meta = read_image(folder / "input_avg1_020_1.tif")
    target, _ = read_image(folder / "target_avg400_020_1.tif")
    crop = (slice(176, 336), slice(176, 336))
    x = np.asarray(noisy, np.float32)[crop]
    r = np.asarray(target, np.float32)[crop]
    y = create("gaussian").predict(x, meta.axes)
    page = evaluation_report(x, y, axes=meta.axes, reference=r, output_name="gaussian")
    assert external_references(page) == []
    block = page.split("id='metrics-against-the-reference'", 1)[1].split("<h2", 1)[0]
    cells = [re.findall(r"<td>(.*?)</td>", t) for t in re.findall(r"<tr[^>]*>(.*?)</tr>",
                                                                   block.split("<tbody>")[1])]
    rows = {c[0]: float(c[4]) for c in cells}
    # a self-calibrated Gaussian filter must beat the raw single shot on normalised PSNR
    assert rows["gaussian"] > rows["input"] + 3.0, rows
    # the method noise of a smoothing filter keeps the input's units: alpha close to 1
    alpha = float(re.search(r"method noise = input - \(([-\d.e]+) x gaussian", page).group(1))
    assert 0.8 < alpha < 1.25
