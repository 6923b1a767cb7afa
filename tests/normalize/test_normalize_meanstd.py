"""Mean / standard-deviation standardisation as NormParams."""

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.normalize import NormParams, compute_meanstd_params


@pytest.mark.parametrize("shape", [(40, 50), (6, 30, 40)])
def test_meanstd_standardises_and_inverts(shape):
    rng = np.random.default_rng(0)
    x = (rng.gamma(2.0, 30.0, size=shape) + 100).astype(np.float32)
    p = compute_meanstd_params(x)
    assert p.statistic == "meanstd" and p.low is None and p.high is None
    y = np.asarray(p.normalize(x))
    assert abs(float(y.mean())) < 1e-4
    assert float(y.std()) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(p.denormalize(y), x, rtol=1e-5)
    np.testing.assert_allclose(p.denormalize_scale(np.ones_like(y)), x.std(), rtol=1e-4)


def test_meanstd_per_channel_and_json_roundtrip():
    rng = np.random.default_rng(1)
    x = np.stack([rng.normal(10, 2, (32, 32)), rng.normal(500, 50, (32, 32))]).astype(
        np.float32)
    p = compute_meanstd_params(x, axes="CYX")
    assert p.n_channels == 2
    y = np.asarray(p.normalize(x, axes="CYX"))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=1e-4)
    q = NormParams.from_json(p.to_json())
    assert q == p
    pooled = compute_meanstd_params(x, axes="CYX", per_channel=False)
    assert pooled.n_channels == 1


def test_meanstd_subsampling_matches_full_estimate():
    rng = np.random.default_rng(2)
    x = rng.normal(100, 10, (300, 300)).astype(np.float32)
    full = compute_meanstd_params(x, max_samples=None)
    sub = compute_meanstd_params(x, max_samples=10_000)
    assert sub.n_samples <= 10_000 < full.n_samples
    assert sub.lo[0] == pytest.approx(full.lo[0], abs=0.5)
    assert sub.hi[0] - sub.lo[0] == pytest.approx(full.hi[0] - full.lo[0], rel=0.03)


def test_meanstd_validation_messages():
    with pytest.raises(ConfigError, match="take no low/high"):
        NormParams.build(statistic="meanstd", low=1.0, high=99.0, lo=[0.0], hi=[1.0])
    with pytest.raises(ConfigError, match="need the low and high"):
        NormParams.build(lo=[0.0], hi=[1.0])
    with pytest.raises(ConfigError, match="clip"):
        NormParams.build(statistic="meanstd", lo=[0.0], hi=[1.0], clip=True)
    with pytest.raises(DataError, match="NaN"):
        compute_meanstd_params(np.array([[1.0, np.nan], [2.0, 3.0]], np.float32))
