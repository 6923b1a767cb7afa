"""Poisson-Gaussian noise-model estimation from a single image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.methods.classical.denoising import NoiseModel, estimate_noise_model


def _clean(shape, rng, peak):
    """Ramps, flat patches and a few blobs: smooth regions over a range of levels."""
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    ramp = 0.15 + 0.6 * grids[-1]
    blobs = np.zeros(shape)
    blobs[tuple(rng.integers(0, n, 40) for n in shape)] = 1.0
    blobs = ndi.gaussian_filter(blobs, 4)
    return peak * (ramp + 0.5 * blobs / blobs.max())


def _camera(clean_e, a, b, rng):
    return a * rng.poisson(clean_e) + rng.normal(0.0, np.sqrt(b), clean_e.shape)


@pytest.mark.parametrize(("a", "b"), [(2.0, 25.0), (0.5, 4.0)])
@pytest.mark.parametrize("shape", [(256, 256), (16, 96, 96)])
def test_recovers_known_model(rng, a, b, shape):
    clean = _clean(shape, rng, peak=200.0 / a)
    m = estimate_noise_model(_camera(clean, a, b, rng))
    assert m.a == pytest.approx(a, rel=0.15)
    # Check b through the variance it implies in the data range (a and b trade off).
    for level in (30.0, 100.0):
        assert float(m.variance(level)) == pytest.approx(a * level + b, rel=0.15)
    assert m.b == pytest.approx(b, abs=0.2 * b + 0.1 * a * 30)


def test_pure_gaussian_gives_small_slope(rng):
    clean = _clean((256, 256), rng, peak=100.0)
    m = estimate_noise_model(clean + rng.normal(0, 4.0, clean.shape))
    assert m.a < 0.05
    assert np.sqrt(m.variance(50.0)) == pytest.approx(4.0, rel=0.1)


def test_clipped_pixels_are_ignored(rng):
    clean = _clean((256, 256), rng, peak=100.0)
    noisy = np.clip(_camera(clean, 1.0, 9.0, rng), 0, 90)  # saturates the brightest part
    m = estimate_noise_model(noisy)
    assert m.a == pytest.approx(1.0, rel=0.2)


def test_axes_pool_channels(rng):
    clean = _clean((2, 128, 128), rng, peak=100.0)
    m = estimate_noise_model(_camera(clean, 1.0, 9.0, rng), axes="CYX")
    assert m.a == pytest.approx(1.0, rel=0.2)


def test_input_not_modified(rng):
    noisy = _camera(_clean((64, 64), rng, 50.0), 1.0, 4.0, rng).astype(np.float32)
    before = noisy.copy()
    estimate_noise_model(noisy)
    np.testing.assert_array_equal(noisy, before)


def test_conversions():
    m = NoiseModel.from_camera(2.0, 5.0, offset=10.0)
    assert (m.a, m.b) == (2.0, 25.0 - 20.0)
    assert m.gain == 2.0
    assert NoiseModel.from_camera(2.0, 5.0).read_noise == pytest.approx(5.0)
    g, s, mu = NoiseModel(2.0, -10.0).vst_parameters()
    assert (g, s, mu) == (2.0, 0.0, 5.0)  # sigma^2 - gain * mu == b


def test_errors_are_one_line(rng):
    with pytest.raises(DataError) as info:
        estimate_noise_model(np.zeros((64, 64)))
    assert "\n" not in str(info.value)
    with pytest.raises(DataError):
        estimate_noise_model(rng.random((4, 64)))
    with pytest.raises(ConfigError):
        NoiseModel(-1.0, 1.0)
