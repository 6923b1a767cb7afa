"""Percentile normalisation: CARE convention, exact inverse, scales, JSON, lazy inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluorecon.core.errors import AxesError, ConfigError, DataError
from fluorecon.normalize import (
    NormParams,
    PercentileNormalizer,
    compute_norm_params,
    percentile_normalize,
)
from fluorecon.normalize.percentile import lattice_strides

SHAPES = {"2d": (40, 56), "3d": (9, 24, 32)}


def _image(shape, rng, dtype=np.float32):
    x = 300.0 + 80.0 * rng.standard_normal(shape) + 400.0 * (rng.random(shape) > 0.97)
    if np.issubdtype(dtype, np.integer):
        return np.clip(np.rint(x), 0, None).astype(dtype)
    return x.astype(dtype)


@pytest.mark.parametrize("dim", ["2d", "3d"])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
def test_percentiles_map_to_0_and_1_and_inverse_is_exact(dim, dtype, rng):
    x = _image(SHAPES[dim], rng, dtype)
    before = x.copy()
    y, p = percentile_normalize(x, low=2.0, high=99.0)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(x, before)  # input untouched
    # the percentiles are in the image's own units (no dtype rescaling)
    assert p.lo[0] == pytest.approx(np.percentile(x.astype(np.float64), 2.0))
    assert p.hi[0] == pytest.approx(np.percentile(x.astype(np.float64), 99.0))
    assert np.percentile(y, 2.0) == pytest.approx(0.0, abs=1e-6)
    assert np.percentile(y, 99.0) == pytest.approx(1.0, abs=1e-6)
    back = p.denormalize(y)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x.astype(np.float64), rtol=2e-7, atol=1e-4)
    # params.normalize reproduces the returned array bit for bit
    np.testing.assert_array_equal(p.normalize(x), y)


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_formula_is_csbdeep(dim, rng):
    x = _image(SHAPES[dim], rng)
    y, p = percentile_normalize(x)  # defaults 1 / 99.8, eps 1e-20
    mi, ma = np.percentile(x, 1.0), np.percentile(x, 99.8)
    expected = (x - np.float32(mi)) / (np.float32(ma) - np.float32(mi) + np.float32(1e-20))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert (p.low, p.high, p.eps, p.clip) == (1.0, 99.8, 1e-20, False)


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_denormalize_scale_maps_predicted_std_without_offset(dim, rng):
    shape = SHAPES[dim]
    x = 1000.0 + 50.0 * rng.standard_normal(shape)
    y, p = percentile_normalize(x.astype(np.float32))
    sigma_y = np.full(shape, y.std(), dtype=np.float32)
    sigma_x = p.denormalize_scale(sigma_y)
    assert sigma_x.dtype == np.float32
    np.testing.assert_allclose(sigma_x, x.std(), rtol=1e-4)
    np.testing.assert_array_equal(p.denormalize_scale(np.zeros(shape)), 0.0)  # no offset
    # versus the full inverse, which does add the offset
    zero_back = p.denormalize(np.zeros(shape))
    np.testing.assert_allclose(zero_back, p.lo[0], rtol=1e-6)


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_per_channel_percentiles(dim, rng):
    sp = SHAPES[dim]
    chans = [_image(sp, rng) * gain + off for gain, off in [(1.0, 0.0), (20.0, 5000.0), (0.1, 3.0)]]
    x = np.stack(chans, axis=0)  # C first
    axes = "CYX" if dim == "2d" else "CZYX"
    y, p = percentile_normalize(x, axes=axes, low=1.0, high=99.0)
    assert p.n_channels == 3 and p.axes == axes
    for c in range(3):
        single, pc = percentile_normalize(chans[c], low=1.0, high=99.0)
        np.testing.assert_allclose(y[c], single, rtol=1e-6, atol=1e-6)
        assert p.lo[c] == pytest.approx(pc.lo[0])
        assert p.select_channel(c).lo == pc.lo
    np.testing.assert_allclose(p.denormalize(y), x, rtol=1e-6, atol=1e-3)
    # channel axis elsewhere (channels last)
    x_last = np.moveaxis(x, 0, -1)
    axes_last = axes[1:] + "C"
    y_last, p_last = percentile_normalize(x_last, axes=axes_last, low=1.0, high=99.0)
    np.testing.assert_allclose(np.moveaxis(y_last, -1, 0), y, rtol=1e-6, atol=1e-6)
    # pooled: one pair for all channels
    _, pooled = percentile_normalize(x, axes=axes, per_channel=False)
    assert pooled.n_channels == 1


def test_channel_count_mismatch_and_missing_axes_raise(rng):
    x = np.stack([_image((16, 16), rng) for _ in range(3)])
    _, p = percentile_normalize(x, axes="CYX")
    with pytest.raises(DataError, match="3 channels"):
        p.normalize(x[:2], axes="CYX")
    with pytest.raises(AxesError):
        p.normalize(x[0], axes="YX")
    with pytest.raises(DataError, match="index"):
        p.select_channel(3)


@pytest.mark.parametrize("per_channel", [True, False])
def test_json_round_trip(per_channel, rng):
    x = np.stack([_image((20, 30), rng) * (c + 1) for c in range(2)], axis=-1)
    y, p = percentile_normalize(x, axes="YXC", per_channel=per_channel, low=0.5, high=99.5)
    text = p.to_json()
    json.loads(text)  # plain JSON
    q = NormParams.from_json(text)
    assert q == p
    assert NormParams.from_dict(p.to_dict()) == p
    assert all(isinstance(v, float) for v in q.to_dict()["lo"])
    np.testing.assert_array_equal(q.normalize(x), y)
    np.testing.assert_array_equal(q.denormalize(y), p.denormalize(y))


def test_invalid_params_raise_config_error():
    with pytest.raises(ConfigError, match="low percentile"):
        NormParams.from_dict({"low": 99.0, "high": 1.0, "lo": [0.0], "hi": [1.0]})
    with pytest.raises(ConfigError, match="hi must be >= lo"):
        NormParams.from_dict({"low": 1.0, "high": 99.0, "lo": [2.0], "hi": [1.0]})
    with pytest.raises(ConfigError, match="need axes containing 'C'"):
        NormParams.from_dict({"low": 1.0, "high": 99.0, "lo": [0.0, 1.0], "hi": [1.0, 2.0]})
    with pytest.raises(ConfigError, match="Extra inputs"):
        NormParams.from_dict({"low": 1.0, "high": 99.0, "lo": [0.0], "hi": [1.0], "foo": 1})
    with pytest.raises(ConfigError):
        PercentileNormalizer.build(low=50.0, high=10.0)


def test_clip_and_normalizer_config(rng):
    x = _image((32, 32), rng)
    norm = PercentileNormalizer(low=5.0, high=95.0, clip=True)
    y, p = norm(x)
    assert p.clip and y.min() == 0.0 and y.max() == 1.0
    inside = (x >= p.lo[0]) & (x <= p.hi[0])
    np.testing.assert_allclose(p.denormalize(y)[inside], x[inside], rtol=1e-6)
    assert norm.fit(x) == p


def test_constant_image_is_finite(rng):
    x = np.full((16, 16), 7, dtype=np.uint16)
    y, p = percentile_normalize(x)
    assert np.all(y == 0.0)
    np.testing.assert_array_equal(p.denormalize(y), 7.0)


def test_nan_raises():
    x = np.zeros((16, 16), dtype=np.float32)
    x[3, 4] = np.nan
    with pytest.raises(DataError, match="NaN"):
        percentile_normalize(x)


@pytest.mark.parametrize("shape,skip", [((1000, 3000), None), ((7, 512, 600), None),
                                        ((3, 400, 500), 0)])
def test_lattice_strides_fit_budget(shape, skip):
    budget = 10_000
    s = lattice_strides(shape, skip, budget)
    counts = [-(-n // k) for i, (n, k) in enumerate(zip(shape, s)) if i != skip]
    assert int(np.prod(counts)) <= budget
    assert int(np.prod(counts)) > budget / 4  # not thinned far more than needed
    if skip is not None:
        assert s[skip] == 1


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_subsampled_percentiles_are_close(dim, rng):
    shape = (300, 400) if dim == "2d" else (20, 100, 120)
    x = rng.gamma(2.0, 100.0, size=shape).astype(np.float32)
    exact = compute_norm_params(x, max_samples=None)
    approx = compute_norm_params(x, max_samples=20_000)
    assert exact.n_samples == x.size and approx.n_samples <= 20_000
    # the estimate's rank in the full image is within 5 standard errors of the target
    for p, value in ((1.0, approx.lo[0]), (99.8, approx.hi[0])):
        rank = 100.0 * np.mean(x < value)
        stderr = 100.0 * np.sqrt(p / 100 * (1 - p / 100) / approx.n_samples)
        assert abs(rank - p) < 5 * stderr + 100.0 / x.size


def test_lazy_dask_and_zarr_inputs(rng):
    import dask.array as da
    import zarr

    x = _image((64, 80), rng, np.uint16)
    ref = compute_norm_params(x, max_samples=1000)
    lazy = da.from_array(x, chunks=(16, 16))
    assert compute_norm_params(lazy, max_samples=1000) == ref
    z = zarr.create_array(store={}, shape=x.shape, chunks=(16, 16), dtype=x.dtype)
    z[:] = x
    assert compute_norm_params(z, max_samples=1000) == ref
    y_lazy = ref.normalize(lazy)
    assert isinstance(y_lazy, da.Array) and y_lazy.dtype == np.float32
    np.testing.assert_array_equal(y_lazy.compute(), ref.normalize(x))
