"""PSNR / SSIM / NRMSE, plain and CARE-normalised, and evaluate()."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from fluorecon.core.errors import AxesError, DataError
from fluorecon.metrics import (
    EVALUATE_KEYS,
    evaluate,
    normalized_nrmse,
    normalized_psnr,
    normalized_ssim,
    nrmse,
    psnr,
    ssim,
)

SHAPES = {"2d": (48, 52), "3d": (14, 24, 28)}


def _pair(shape, rng, noise=0.1):
    from scipy.ndimage import gaussian_filter

    ref = gaussian_filter(rng.random(shape), 1.5)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    pred = ref + noise * rng.standard_normal(shape)
    return pred.astype(np.float32), ref.astype(np.float32)


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_identical_images(dim, rng):
    _, ref = _pair(SHAPES[dim], rng)
    assert psnr(ref, ref) == math.inf
    assert nrmse(ref, ref) == 0.0
    assert ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)
    scores = evaluate(ref.copy(), ref)
    assert scores["ssim_normalized"] == pytest.approx(1.0, abs=1e-9)
    assert scores["nrmse_normalized"] < 1e-6


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_plain_metrics_match_skimage(dim, rng):
    pred, ref = _pair(SHAPES[dim], rng)
    pred64, ref64 = pred.astype(np.float64), ref.astype(np.float64)
    for rng_ in (None, 2.5):
        L = float(ref64.max() - ref64.min()) if rng_ is None else rng_
        assert psnr(pred, ref, data_range=rng_) == pytest.approx(
            peak_signal_noise_ratio(ref64, pred64, data_range=L), rel=1e-9)
        assert ssim(pred, ref, data_range=rng_) == pytest.approx(
            structural_similarity(ref64, pred64, data_range=L, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False), rel=1e-9)
    assert nrmse(pred, ref) == pytest.approx(
        normalized_root_mse(ref64, pred64, normalization="min-max"), rel=1e-9)
    # PSNR and NRMSE share the data range
    assert psnr(pred, ref) == pytest.approx(-20 * math.log10(nrmse(pred, ref)), rel=1e-12)


def test_ssim_uses_wang_settings_not_skimage_defaults(rng):
    pred, ref = _pair((40, 40), rng, noise=0.3)
    default = structural_similarity(ref.astype(float), pred.astype(float), data_range=1.0)
    assert abs(ssim(pred, ref, data_range=1.0) - default) > 1e-3


def test_default_data_range_is_reference_range_not_dtype(rng):
    pred, ref = _pair((32, 32), rng)
    ref16 = np.rint(ref * 3000 + 100).astype(np.uint16)  # 12-bit data in uint16
    pred16 = np.clip(np.rint(pred * 3000 + 100), 0, None).astype(np.uint16)
    expected = peak_signal_noise_ratio(ref16.astype(float), pred16.astype(float),
                                       data_range=float(ref16.max() - ref16.min()))
    assert psnr(pred16, ref16) == pytest.approx(expected, rel=1e-9)
    assert psnr(pred16, ref16) < peak_signal_noise_ratio(ref16, pred16) - 20  # dtype range


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_metrics_order_by_noise(dim, rng):
    _, ref = _pair(SHAPES[dim], rng)
    scores = [evaluate(ref + s * rng.standard_normal(ref.shape).astype(np.float32), ref)
              for s in (0.02, 0.1, 0.3)]
    for key in ("psnr", "ssim", "psnr_normalized", "ssim_normalized"):
        assert scores[0][key] > scores[1][key] > scores[2][key], key
    for key in ("nrmse", "nrmse_normalized"):
        assert scores[0][key] < scores[1][key] < scores[2][key], key


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("a,b", [(5.0, 100.0), (0.01, -3.0), (-2.0, 0.5)])
def test_normalized_metrics_invariant_to_affine_prediction(dim, a, b, rng):
    pred, ref = _pair(SHAPES[dim], rng)
    moved = (a * pred.astype(np.float64) + b).astype(np.float32)
    assert normalized_psnr(moved, ref) == pytest.approx(normalized_psnr(pred, ref), abs=1e-3)
    assert normalized_ssim(moved, ref) == pytest.approx(normalized_ssim(pred, ref), abs=1e-5)
    assert normalized_nrmse(moved, ref) == pytest.approx(normalized_nrmse(pred, ref), rel=1e-4)
    if a > 0:  # the plain metrics are not invariant
        assert abs(psnr(moved, ref) - psnr(pred, ref)) > 1.0


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_normalized_metrics_follow_care_evaluation(dim, rng):
    pred, ref = _pair(SHAPES[dim], rng)
    pred = 40.0 * pred + 7.0
    # CARE's evaluation: gt normalised at 0.1/99.9, prediction least-squares scaled, both
    # mean-subtracted; PSNR with data_range=1 and NRMSE = RMSE
    ref64 = ref.astype(np.float64)
    lo, hi = np.percentile(ref64, [0.1, 99.9])
    gt = (ref64 - lo) / (hi - lo + 1e-20)
    x = pred.astype(np.float64) - pred.mean()
    gt = gt - gt.mean()
    scale = np.sum(x * gt) / np.sum(x * x)
    rmse = np.sqrt(np.mean((scale * x - gt) ** 2))
    assert normalized_nrmse(pred, ref) == pytest.approx(rmse, rel=1e-4)
    assert normalized_psnr(pred, ref) == pytest.approx(
        peak_signal_noise_ratio(gt, scale * x, data_range=1.0), abs=1e-3)


def test_evaluate_keys_values_and_json(rng):
    pred, ref = _pair((40, 44), rng)
    scores = evaluate(pred, ref)
    assert tuple(scores) == EVALUATE_KEYS == ("psnr", "ssim", "nrmse", "psnr_normalized",
                                              "ssim_normalized", "nrmse_normalized")
    assert all(type(v) is float for v in scores.values())
    assert scores["psnr"] == psnr(pred, ref)
    assert scores["ssim"] == ssim(pred, ref)
    assert scores["nrmse"] == nrmse(pred, ref)
    assert scores["psnr_normalized"] == normalized_psnr(pred, ref)
    assert scores["ssim_normalized"] == normalized_ssim(pred, ref)
    assert scores["nrmse_normalized"] == normalized_nrmse(pred, ref)
    json.dumps(scores)


def test_axes_loop_over_channels(rng):
    pairs = [_pair((32, 36), rng, noise=s) for s in (0.05, 0.2)]
    pred = np.stack([p for p, _ in pairs])
    ref = np.stack([r for _, r in pairs])
    ref[1] = ref[1] * 500 + 20
    pred[1] = pred[1] * 500 + 20
    L = float(ref.max() - ref.min())
    assert ssim(pred, ref, axes="CYX") == pytest.approx(
        np.mean([ssim(pred[c], ref[c], data_range=L) for c in range(2)]), rel=1e-12)
    scores = evaluate(pred, ref, axes="CYX")
    assert scores["ssim_normalized"] == pytest.approx(
        np.mean([normalized_ssim(pred[c], ref[c]) for c in range(2)]), rel=1e-6)
    with pytest.raises(AxesError):
        evaluate(pred[None], ref[None])  # 4D needs axes


def test_input_validation(rng):
    pred, ref = _pair((32, 32), rng)
    with pytest.raises(DataError, match="equal shapes") as info:
        evaluate(pred[:, :31], ref)
    assert "\n" not in str(info.value)
    bad = pred.copy()
    bad[3, 3] = np.nan
    for fn in (psnr, ssim, nrmse, normalized_psnr, evaluate):
        with pytest.raises(DataError, match="NaN"):
            fn(bad, ref)
        with pytest.raises(DataError, match="NaN"):
            fn(pred, bad)
    with pytest.raises(DataError, match="constant reference"):
        psnr(pred, np.ones_like(ref))
    with pytest.raises(DataError, match="data_range"):
        psnr(pred, ref, data_range=0.0)
    with pytest.raises(DataError, match="at least 11 pixels"):
        ssim(rng.random((5, 32, 32)), rng.random((5, 32, 32)))
    with pytest.raises(AxesError):
        ssim(pred, ref, axes="ZYX")
