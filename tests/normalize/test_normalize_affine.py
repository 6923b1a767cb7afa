"""Least-squares affine fit and CARE-style pair normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import DataError
from fluorecon.normalize import affine_fit, affine_match, normalize_pair, percentile_normalize

SHAPES = {"2d": (48, 40), "3d": (8, 20, 24)}


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("alpha,beta", [(3.0, -2.0), (0.0125, 1000.0), (-4.5, 250.0)])
def test_affine_fit_recovers_exact_parameters(dim, alpha, beta, rng):
    x = (500.0 + 30.0 * rng.standard_normal(SHAPES[dim])).astype(np.float32)
    ref = alpha * x.astype(np.float64) + beta
    a, b = affine_fit(x, ref)
    assert a == pytest.approx(alpha, rel=1e-10)
    assert b == pytest.approx(beta, rel=1e-9, abs=1e-7)


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_affine_fit_is_least_squares(dim, rng):
    x = rng.random(SHAPES[dim])
    ref = 2.0 * x + 0.3 + 0.2 * rng.standard_normal(x.shape)
    a, b = affine_fit(x, ref)
    a_ref, b_ref = np.polyfit(x.ravel(), ref.ravel(), 1)
    assert a == pytest.approx(a_ref, rel=1e-6) and b == pytest.approx(b_ref, rel=1e-6)
    # any perturbation increases the squared error
    sse = lambda aa, bb: float(np.sum((aa * x + bb - ref) ** 2))  # noqa: E731
    best = sse(a, b)
    for da, db in [(1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3)]:
        assert sse(a + da, b + db) > best


def test_constant_prediction_gives_mean(rng):
    ref = rng.random((16, 16))
    assert affine_fit(np.full((16, 16), 5.0), ref) == (0.0, pytest.approx(ref.mean()))


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("a,b", [(7.0, -300.0), (0.001, 2.0), (-1.5, 10.0)])
def test_affine_match_invariant_to_affine_transforms(dim, a, b, rng):
    ref = rng.gamma(2.0, 50.0, SHAPES[dim]).astype(np.float32)
    x = ref + 20.0 * rng.standard_normal(ref.shape).astype(np.float32)
    base = affine_match(x, ref)
    moved = affine_match(a * x.astype(np.float64) + b, ref)
    assert base.dtype == np.float32
    np.testing.assert_allclose(moved, base, atol=2e-5)


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_normalize_pair_uses_eval_percentiles(dim, rng):
    ref = rng.gamma(2.0, 50.0, SHAPES[dim]).astype(np.float32)
    x = 3.0 * ref + 100.0
    xn, rn = normalize_pair(x, ref)
    expected, _ = percentile_normalize(ref, low=0.1, high=99.9)
    np.testing.assert_array_equal(rn, expected)
    np.testing.assert_allclose(xn, rn, atol=1e-5)  # noiseless affine relation: exact match


def test_normalize_pair_per_channel(rng):
    ref = np.stack([rng.random((24, 24)) * 900,
                    rng.random((24, 24)) * 1000 + 50]).astype(np.float32)
    x = np.stack([2.0 * ref[0] + 1.0, -0.5 * ref[1] + 7.0])  # opposite gains per channel
    xn, rn = normalize_pair(x, ref, axes="CYX")
    for c in range(2):
        xc, rc = normalize_pair(x[c], ref[c])
        np.testing.assert_allclose(xn[c], xc, atol=1e-5)
        np.testing.assert_allclose(rn[c], rc, atol=1e-6)
    np.testing.assert_allclose(xn, rn, atol=1e-5)
    # pooled fit cannot match both channels: with axes=None the error is large
    xp, rp = normalize_pair(x, ref)
    assert np.abs(xp - rp).max() > 0.1


def test_errors(rng):
    with pytest.raises(DataError, match="equal shapes"):
        affine_fit(np.zeros((4, 5)), np.zeros((5, 4)))
    bad = np.ones((8, 8))
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        affine_fit(bad, np.ones((8, 8)))
    with pytest.raises(DataError, match="NaN"):
        affine_match(np.ones((8, 8)), bad)
