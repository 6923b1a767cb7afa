"""Evaluation report: matching contrast, metrics, reference-free estimates, line profiles."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fluorecon.core.errors import AxesError, ConfigError
from fluorecon.metrics import evaluate
from fluorecon.report.evaluation import (
    TrustMaps,
    auto_profile_line,
    evaluation_report,
    line_profile,
    noise_rows,
)
from fluorecon.report.figures import display_limits, plane_at
from fluorecon.report.html import external_references
from fluorecon.simulate.pairs import simulate_pair


@pytest.mark.parametrize("angle", [0.0, 35.0, 90.0, 120.0])
def test_auto_line_crosses_the_brightest_ridge_perpendicularly(make_ridge, angle):
    rng = np.random.default_rng(1)
    img = make_ridge((64, 80), angle, centre=(30.0, 41.0))
    img = img + 0.3 * make_ridge((64, 80), angle + 60, centre=(10.0, 10.0))
    img = img + rng.normal(0, 0.02, img.shape).astype(np.float32)
    (y0, x0), (y1, x1) = auto_profile_line(img, length=20)
    d = np.array([y1 - y0, x1 - x0]) / math.hypot(y1 - y0, x1 - x0)
    along = np.array([math.sin(math.radians(angle)), math.cos(math.radians(angle))])
    assert abs(float(d @ along)) < 0.1  # perpendicular to the ridge
    mid = ((y0 + y1) / 2, (x0 + x1) / 2)
    # the line's centre lies on the bright ridge, near its brightest point
    assert math.hypot(mid[0] - 30.0, mid[1] - 41.0) < 3.0
    assert 19 <= math.hypot(y1 - y0, x1 - x0) <= 20.5


def test_auto_line_stays_inside_the_image_near_a_border(make_ridge):
    img = make_ridge((40, 40), 0.0, centre=(3.0, 20.0))
    (y0, x0), (y1, x1) = auto_profile_line(img, length=30)
    for y, x in ((y0, x0), (y1, x1)):
        assert 0 <= y <= 39 and 0 <= x <= 39


def test_line_profile_samples_exact_values_and_validates():
    img = np.tile(np.arange(10, dtype=np.float32), (5, 1))
    prof = line_profile({"a": img}, (2, 0), (2, 9))
    np.testing.assert_allclose(prof.values["a"], np.arange(10), atol=1e-6)
    with pytest.raises(ConfigError, match="inside"):
        line_profile({"a": img}, (2, 0), (2, 10))
    with pytest.raises(ConfigError, match="one pixel"):
        line_profile({"a": img}, (2, 1), (2, 1.5))


def test_noise_rows_measure_known_gaussian_noise():
    rng = np.random.default_rng(0)
    flat = np.full((128, 128), 50.0, np.float32) + rng.normal(0, 2.0, (128, 128)).astype(
        np.float32)
    (row,) = noise_rows({"x": flat}, axes="YX")
    assert row[0] == "x"
    assert abs(row[3] - 2.0) < 0.3  # std at the median
    assert abs(row[4] - 25.0) < 4.0


def _page_numbers(page: str, section: str) -> list[list[str]]:
    block = page.split(f"id='{section}'", 1)[1].split("<h2", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", block.split("<tbody>", 1)[1], flags=re.S)
    return [re.findall(r"<td>(.*?)</td>", r) for r in rows]


@pytest.mark.parametrize("shape", [(64, 64), (16, 48, 48)])
def test_report_with_reference_has_matching_contrast_and_true_metrics(shape):
    from fluorecon.methods import create

    pair = simulate_pair("denoise", shape, photons=20, seed=2)
    axes = "YX" if len(shape) == 2 else "ZYX"
    out = create("gaussian", sigma=1.0).predict(pair.input, axes)
    page = evaluation_report(pair.input, out, axes=axes, reference=pair.target,
                             output_name="gauss", source={"input": "sim"})
    assert external_references(page) == []
    assert page.count("<img src='data:image/png;base64,") >= 3
    lo, hi = display_limits(plane_at(pair.target, axes))
    assert f"one display range [{lo:.4g}, {hi:.4g}] for all panels" in page
    assert "percentiles of the reference" in page and "alpha" in page
    rows = _page_numbers(page, "metrics-against-the-reference")
    scores = {r[0]: [float(v) for v in r[1:]] for r in rows}
    for name, img in (("input", pair.input), ("gauss", out)):
        ref = evaluate(img, pair.target, axes=axes)
        assert scores[name][0] == pytest.approx(ref["psnr"], abs=1e-3)
        assert scores[name][4] == pytest.approx(ref["ssim_normalized"], abs=1e-3)
    # the smoothed output is closer to the truth than the noisy input (normalised PSNR)
    assert scores["gauss"][3] > scores["input"][3] + 2
    assert "<tr class=\"best\"><td>gauss</td>" in page
    for sid in ("before-and-after", "noise-and-resolution-no-reference-needed",
                "line-profile", "differences"):
        assert f"id='{sid}'" in page
    if len(shape) == 3:
        assert "Z slice 8 of 16" in page


def test_report_without_reference_uses_input_contrast_and_no_metrics():
    pair = simulate_pair("denoise", (48, 48), photons=30, seed=3)
    out = pair.input * 0.5
    page = evaluation_report(pair.input, out, axes="YX", pixel_size=0.1)
    assert "metrics-against-the-reference" not in page
    lo, hi = display_limits(pair.input)
    assert f"[{lo:.4g}, {hi:.4g}]" in page and "percentiles of the input" in page
    assert "alpha" not in page  # nothing fitted without a reference
    assert "FRC 1/7 (µm)" in page


def test_report_upsampled_output_and_trust_maps():
    rng = np.random.default_rng(4)
    small = rng.random((24, 24)).astype(np.float32)
    big = np.kron(small, np.ones((2, 2), np.float32))
    maps = TrustMaps(std=np.full(big.shape, 0.1, np.float32),
                     residual=rng.normal(size=big.shape).astype(np.float32),
                     flagged=np.zeros(big.shape, bool), description="test maps")
    page = evaluation_report(small, big, axes="YX", reference=big, trust=maps,
                             warnings=["MAY HALLUCINATE: test"])
    assert "input (interpolated)" in page and "coarser grid" in page
    assert "id='trust-maps'" in page and "test maps" in page
    assert "<p class='warning'>MAY HALLUCINATE: test</p>" in page


def test_report_rejects_bad_shapes_and_lines():
    a = np.zeros((32, 32), np.float32)
    with pytest.raises(AxesError, match="same shape"):
        evaluation_report(a, a, axes="YX", reference=np.zeros((30, 32), np.float32))
    with pytest.raises(ConfigError, match="4 numbers"):
        evaluation_report(a, a + 1, axes="YX", line=(1, 2, 3))
    with pytest.raises(AxesError):
        evaluation_report(np.zeros((2, 32, 32), np.float32), np.zeros((3, 32, 32), np.float32),
                          axes="CYX")
