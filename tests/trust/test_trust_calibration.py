"""Calibration: coverage of central intervals, ECE and the recalibration factor."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.trust.calibration import (
    ECE_LEVELS,
    Predictive,
    calibrate,
    central_interval,
    coverage,
    expected_calibration_error,
    fit_recalibration,
    pit,
)

SHAPES = [(128, 128), (8, 48, 48)]


def _draw(family: str, shape, rng, *, true_factor: float = 1.0, k: int = 4):
    """A predictive distribution and truth drawn from it widened by ``true_factor``."""
    base = family.split("-")[0]
    mu = rng.normal(size=shape).astype(np.float32) * 3
    b = np.exp(rng.normal(size=shape) * 0.5).astype(np.float32)
    noise = rng.laplace(size=shape) if base == "laplace" else rng.normal(size=shape)
    if family.endswith("mixture"):
        locs = np.stack([mu + rng.normal(size=shape).astype(np.float32) for _ in range(k)])
        comp = rng.integers(0, k, size=shape)
        centre = locs.mean(axis=0)
        chosen = np.take_along_axis(locs, comp[None], 0)[0]
        y = centre + true_factor * (chosen - centre + b * noise)
        return Predictive(family, locs, np.stack([b] * k)), y
    return Predictive(family, mu, b), mu + true_factor * b * noise


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("family", ["laplace", "gaussian", "laplace-mixture",
                                    "gaussian-mixture"])
def test_calibrated_prediction_covers_nominal(family, shape, rng):
    dist, y = _draw(family, shape, rng)
    cov = coverage(dist, y, (0.5, 0.8, 0.9, 0.95))
    for p, c in cov.items():
        assert abs(c - p) < 0.02, (p, c)
    assert expected_calibration_error(dist, y) < 0.015
    u = pit(dist, y)
    assert u.min() >= 0 and u.max() <= 1
    assert abs(float(np.mean(u)) - 0.5) < 0.02


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("family", ["laplace", "gaussian", "gaussian-mixture"])
@pytest.mark.parametrize("true_factor", [0.5, 2.5])
def test_recalibration_factor_recovers_and_transfers(family, shape, true_factor, rng):
    val, y_val = _draw(family, shape, rng, true_factor=true_factor)
    test, y_test = _draw(family, shape, rng, true_factor=true_factor)
    before = coverage(test, y_test, (0.9,))[0.9]
    assert abs(before - 0.9) > 0.06  # really miscalibrated
    s = fit_recalibration(val, y_val)
    assert s == pytest.approx(true_factor, rel=0.05)
    after = coverage(test.scaled(s), y_test, (0.5, 0.8, 0.9, 0.95))
    assert abs(after[0.9] - 0.9) <= 0.03
    s_all = fit_recalibration(val, y_val, levels=ECE_LEVELS)
    assert s_all == pytest.approx(true_factor, rel=0.05)
    assert expected_calibration_error(test.scaled(s_all), y_test) < 0.02


def test_central_interval_matches_coverage(rng):
    for family in ("laplace", "gaussian"):
        dist, y = _draw(family, (64, 64), rng)
        lo, hi = central_interval(dist, 0.8)
        inside = float(np.mean((y >= lo) & (y <= hi)))
        assert inside == pytest.approx(coverage(dist, y, (0.8,))[0.8], abs=1e-3)
        # Laplace: the 50 % interval is mu +- b ln 2; Gaussian: mu +- 0.674 sigma.
        half = (hi - lo) / 2
        expect = np.log(5.0) if family == "laplace" else 1.2815516
        np.testing.assert_allclose(half / dist.scale, expect, rtol=1e-5)
    mix, _ = _draw("laplace-mixture", (16, 16), rng)
    with pytest.raises(ConfigError):
        central_interval(mix, 0.9)


def test_scaling_and_std(rng):
    dist, _ = _draw("laplace", (32, 32), rng)
    np.testing.assert_allclose(dist.std, np.sqrt(2) * dist.scale, rtol=1e-6)
    np.testing.assert_allclose(dist.scaled(3.0).std, 3 * dist.std, rtol=1e-5)
    mix, _ = _draw("gaussian-mixture", (32, 32), rng)
    expect = np.sqrt((mix.scale.astype(np.float64) ** 2).mean(0) + mix.loc.var(0))
    np.testing.assert_allclose(mix.std, expect, rtol=1e-5)
    # widening a mixture about its mean widens its std by the same factor; mean unchanged
    np.testing.assert_allclose(mix.scaled(2.0).std, 2 * mix.std, rtol=1e-4)
    np.testing.assert_allclose(mix.scaled(2.0).mean, mix.mean, atol=1e-5)


def test_calibrate_record_reports_before_and_after(rng):
    dist, y = _draw("laplace", (96, 96), rng, true_factor=1.8)
    rec = calibrate(dist, y, uncertainty="probabilistic", data={"images": 1})
    assert rec.factor == pytest.approx(1.8, rel=0.05)
    i90 = rec.levels.index(0.9)
    assert abs(rec.coverage_after[i90] - 0.9) < 0.005
    assert rec.coverage_before[i90] < 0.8
    assert rec.ece_after < rec.ece_before
    assert rec.n_pixels == 96 * 96
    assert type(rec).model_validate_json(rec.to_json()) == rec


def test_mask_restricts_pixels(rng):
    dist, y = _draw("gaussian", (64, 64), rng)
    y = y.copy()
    y[:32] += 100.0  # far outside in the top half
    mask = np.zeros((64, 64), bool)
    mask[32:] = True
    assert coverage(dist, y, (0.9,))[0.9] < 0.5
    assert abs(coverage(dist, y, (0.9,), mask=mask)[0.9] - 0.9) < 0.04


def test_errors(rng):
    dist, y = _draw("laplace", (16, 16), rng)
    with pytest.raises(ConfigError):
        coverage(dist, y, (0.0, 0.9))
    with pytest.raises(DataError):
        coverage(dist, y[:8])
    with pytest.raises(DataError):
        Predictive("laplace", np.zeros((4, 4)), -np.ones((4, 4)))
    with pytest.raises(DataError):
        Predictive("gaussian", np.zeros((4, 4)), np.ones((4, 5)))
    with pytest.raises(ConfigError):
        Predictive("cauchy", np.zeros((4, 4)), np.ones((4, 4)))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        dist.scaled(0.0)
