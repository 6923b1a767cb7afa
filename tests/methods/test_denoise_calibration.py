"""J-invariant (Noise2Self) calibration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage as ndi

from fluorecon.core.errors import ConfigError
from fluorecon.methods.classical.denoising import (
    CalibrationResult,
    calibrate,
    calibration_region,
    invariant_denoise,
)


def _smooth_noisy(shape, rng, noise=1.0):
    clean = ndi.gaussian_filter(rng.random(shape), 2.0)
    clean = 8.0 * (clean - clean.min()) / np.ptp(clean)
    return clean, (clean + rng.normal(0, noise, shape)).astype(np.float32)


def _gauss(img, *, sigma):
    return ndi.gaussian_filter(img, sigma)


@pytest.mark.parametrize("shape", [(64, 64), (16, 32, 32)])
def test_calibrated_sigma_close_to_oracle(rng, shape):
    clean, noisy = _smooth_noisy(shape, rng)
    grid = np.geomspace(0.3, 6.0, 7)
    res = calibrate(_gauss, noisy, parameter_ranges={"sigma": grid}, method="gaussian")
    fine = np.geomspace(0.3, 6.0, 61)
    oracle = fine[int(np.argmin([np.mean((_gauss(noisy, sigma=s) - clean) ** 2) for s in fine]))]
    best = res.best_parameters["sigma"]
    assert 1 / 1.5 < best / oracle < 1.5
    assert len(res.parameters_tested) == len(res.losses) > len(grid)  # refined
    assert res.best_loss == min(res.losses)
    assert res.method == "gaussian"


def test_grid_expands_when_optimum_on_boundary(rng):
    clean, noisy = _smooth_noisy((64, 64), rng)
    res = calibrate(_gauss, noisy, parameter_ranges={"sigma": [0.4, 0.5, 0.6]})
    assert res.best_parameters["sigma"] > 0.6


def test_result_is_frozen(rng):
    _, noisy = _smooth_noisy((32, 32), rng)
    res = calibrate(_gauss, noisy, parameter_ranges={"sigma": [0.5, 1.0]}, refine=False,
                    expand=0)
    assert isinstance(res, CalibrationResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.method = "x"  # type: ignore[misc]
    assert len(res.losses) == 2


def test_multi_parameter_grid(rng):
    _, noisy = _smooth_noisy((32, 32), rng)

    def fn(img, *, sigma, mode):
        return ndi.gaussian_filter(img, sigma, mode=mode)

    res = calibrate(fn, noisy, parameter_ranges={"sigma": [0.5, 1.5], "mode": ["reflect",
                                                                            "nearest"]})
    assert len(res.losses) == 4
    assert set(res.best_parameters) == {"sigma", "mode"}


def test_invariant_denoise_ignores_own_pixel(rng):
    _, noisy = _smooth_noisy((32, 32), rng)
    out1 = invariant_denoise(noisy, _gauss, sigma=1.0)
    changed = noisy.copy()
    changed[10, 10] += 100.0
    out2 = invariant_denoise(changed, _gauss, sigma=1.0)
    assert out1[10, 10] == pytest.approx(out2[10, 10], abs=1e-4)
    assert not np.allclose(out1, out2)  # neighbours do see it


def test_calibration_region_picks_structure(rng):
    img = rng.normal(0, 1, (512, 512)).astype(np.float32)
    img[300:420, 40:160] += 20 * (rng.random((120, 120)) > 0.5)
    region = calibration_region(img, max_size=128)
    assert all(s.stop - s.start == 128 for s in region)
    ys, xs = region
    assert ys.start <= 330 and ys.stop >= 390 and xs.start <= 70 and xs.stop >= 130
    assert calibration_region(img[:64, :64], max_size=128) == (slice(0, 64), slice(0, 64))


def test_crop_recorded_and_bad_input(rng):
    _, noisy = _smooth_noisy((96, 96), rng)
    res = calibrate(_gauss, noisy, parameter_ranges={"sigma": [0.5, 1.0, 2.0]}, max_size=48)
    assert [s.stop - s.start for s in res.region] == [48, 48]
    with pytest.raises(ConfigError):
        calibrate(_gauss, noisy, parameter_ranges={})
    with pytest.raises(ConfigError):
        calibrate(_gauss, noisy, parameter_ranges={"sigma": []})
    with pytest.raises(ConfigError):
        calibrate(_gauss, noisy, parameter_ranges={"sigma": [1.0]}, stride=4, n_masks=17)
