"""Fourier ring / shell correlation: known cut-offs, physical units, noise, thresholds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.metrics import frc, half_bit_threshold, single_image_frc


def lowpass_noise(shape, f0, rng, spacing=None):
    """Periodic white noise with every Fourier sample of ``|f| > f0`` removed (unit std)."""
    spacing = spacing or (1.0,) * len(shape)
    spectrum = np.fft.fftn(rng.standard_normal(shape))
    grids = np.meshgrid(*[np.fft.fftfreq(n, d) for n, d in zip(shape, spacing)], indexing="ij")
    radius = np.sqrt(sum(g * g for g in grids))
    s = np.fft.ifftn(spectrum * (radius <= f0)).real
    return s / s.std()


def two_views(shape, f0, rng, sigma=1.0, spacing=None):
    s = lowpass_noise(shape, f0, rng, spacing)
    return (s + sigma * rng.standard_normal(shape)).astype(np.float32), \
           (s + sigma * rng.standard_normal(shape)).astype(np.float32)


CASES = {"2d": ((128, 128), 0.25), "2d-rect": ((96, 128), 0.3), "3d": ((64, 64, 64), 0.3)}


@pytest.mark.parametrize("case", list(CASES))
def test_recovers_known_cutoff(case, rng):
    shape, f0 = CASES[case]
    a, b = two_views(shape, f0, rng)
    # periodic synthetic data needs no apodisation: the estimator itself is tested
    res = frc(a, b, window="none")
    assert res.resolution_1_7 == pytest.approx(1 / f0, rel=0.05)
    assert res.resolution_half_bit == pytest.approx(1 / f0, rel=0.05)
    # in band: SNR/(1+SNR); the band-average SNR is 1/(sigma^2 * band fraction)
    band = (res.frequencies > 0.1 * f0) & (res.frequencies < 0.8 * f0)
    frac = math.pi * f0**2 if len(shape) == 2 else 4 / 3 * math.pi * f0**3
    snr = 1 / frac
    assert np.mean(res.correlation[band]) == pytest.approx(snr / (1 + snr), abs=0.05)
    out = res.frequencies > 1.15 * f0
    assert np.max(np.abs(res.correlation[out]) * np.sqrt(res.n_per_bin[out])) < 5.0


@pytest.mark.parametrize("case", list(CASES))
def test_recovers_known_cutoff_with_default_window(case, rng):
    shape, f0 = CASES[case]
    a, b = two_views(shape, f0, rng)
    res = frc(a, b)  # Tukey apodisation leaks band power outward: slightly optimistic
    assert 0.88 / f0 < res.resolution_1_7 < 1.03 / f0
    assert 0.88 / f0 < res.resolution_half_bit < 1.03 / f0


@pytest.mark.parametrize("dim", [2, 3])
def test_spacing_scales_resolution(dim, rng):
    shape = (64,) * dim if dim == 2 else (32,) * dim
    a, b = two_views(shape, 0.3, rng)
    base = frc(a, b)
    scaled = frc(a, b, spacing=0.1)
    np.testing.assert_allclose(scaled.frequencies, base.frequencies / 0.1, rtol=1e-12)
    np.testing.assert_allclose(scaled.correlation, base.correlation, rtol=1e-12)
    assert scaled.resolution_1_7 == pytest.approx(0.1 * base.resolution_1_7, rel=1e-12)
    assert scaled.spacing == (0.1,) * dim


def test_anisotropic_pixels_use_physical_frequencies(rng):
    spacing = (0.2, 0.1)  # micrometres, Y coarser than X
    f0 = 1.5  # cycles per micrometre, below the Y Nyquist of 2.5
    # same field of view along both axes: 25.6 micrometres, Fourier step 1/25.6 per um
    a, b = two_views((128, 256), f0, rng, spacing=spacing)
    res = frc(a, b, spacing=spacing, window="none")
    assert res.frequencies[-1] == pytest.approx(2.5)
    assert res.resolution_1_7 == pytest.approx(1 / f0, rel=0.05)
    # reading the same pixels as if isotropic gives a different (wrong) answer
    iso = frc(a, b, spacing=0.1, window="none")
    assert abs(iso.resolution_1_7 - 1 / f0) > 0.1 / f0


@pytest.mark.parametrize("shape", [(128, 128), (32, 32, 32)])
def test_independent_noise_has_no_correlation(shape, rng):
    a = (100 + rng.standard_normal(shape)).astype(np.float32)  # offset must not correlate
    b = (100 + rng.standard_normal(shape)).astype(np.float32)
    res = frc(a, b)
    corr, n = res.correlation[1:], res.n_per_bin[1:]
    # pooled over rings the correlation is ~ N(0, 1/sum(n)); apodisation inflates it a bit
    assert abs(np.sum(n * corr) / np.sum(n)) < 4 / np.sqrt(0.5 * np.sum(n))
    # ring by ring, fluctuations are ~ 1/sqrt(n)
    assert np.mean(np.abs(corr * np.sqrt(n))) < 1.5
    # no claim of fine detail: no crossing, or only a spurious one at low frequency
    for r in (res.resolution_1_7, res.resolution_half_bit):
        assert r == math.inf or r > shape[-1] / 8


@pytest.mark.parametrize("dim", [2, 3])
def test_identical_images_never_cross(dim, rng):
    a = rng.standard_normal((32,) * dim).astype(np.float32)
    res = frc(a, a.copy())
    np.testing.assert_allclose(res.correlation[1:], 1.0, rtol=1e-6)
    assert math.isnan(res.resolution_1_7) and math.isnan(res.resolution_half_bit)


@pytest.mark.parametrize("shape", [(64, 64), (33, 40), (16, 24, 21)])
def test_ring_sample_counts_match_full_spectrum(shape):
    # half-spectrum (rfft) weighting must count exactly the full-spectrum samples per ring
    x = np.zeros(shape, dtype=np.float32)
    x[(0,) * len(shape)] = 1.0
    res = frc(x, x, window="none")
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    radius = np.sqrt(sum(g * g for g in grids))
    df = res.frequencies[1]
    idx = np.rint(radius / df).astype(int).ravel()
    expected = np.bincount(idx[idx < len(res.frequencies)], minlength=len(res.frequencies))
    np.testing.assert_array_equal(res.n_per_bin, expected)
    assert res.frequencies[-1] == pytest.approx(min((n // 2) / n for n in shape))
    k = np.arange(len(res.frequencies))
    if shape == (64, 64):  # samples inside radius k + 1/2 ~ disc area
        assert len(k) == 33
        inside = np.cumsum(res.n_per_bin)[8:-1]
        np.testing.assert_allclose(inside, np.pi * (k[8:-1] + 0.5) ** 2, rtol=0.05)


def test_half_bit_threshold_values():
    np.testing.assert_allclose(half_bit_threshold(np.array([1.0])), 1.0, atol=1e-4)
    t = half_bit_threshold(np.array([10.0, 100.0, 1e4, 1e12]))
    assert np.all(np.diff(t) < 0)
    assert t[-1] == pytest.approx(0.2071 / 1.2071, rel=1e-5)
    assert t[1] == pytest.approx((0.2071 + 0.19102) / (1.2071 + 0.09102), rel=1e-6)
    assert math.isnan(half_bit_threshold(np.array([0.0]))[0])


def test_n_bins_and_result_serialises(rng):
    a, b = two_views((64, 64), 0.25, rng)
    res = frc(a, b, n_bins=17)
    assert len(res.frequencies) == 17 and res.frequencies[-1] == pytest.approx(0.5)
    assert 0.8 * 4.0 < res.resolution_1_7 < 1.03 * 4.0
    d = res.to_dict()
    json.dumps(d)
    assert set(d) >= {"frequencies", "correlation", "n_per_bin", "resolution_1_7",
                      "resolution_half_bit", "threshold_half_bit", "threshold_1_7"}
    with pytest.raises(ValueError):
        res.correlation[0] = 0.0  # read-only arrays in a frozen result


def test_errors(rng):
    a = rng.random((32, 32))
    with pytest.raises(DataError, match="equal shapes"):
        frc(a, a[:, :30])
    with pytest.raises(DataError, match="2D"):
        frc(rng.random((2, 16, 16, 16)), rng.random((2, 16, 16, 16)))
    with pytest.raises(DataError, match="at least 8"):
        frc(rng.random((4, 32)), rng.random((4, 32)))
    bad = a.copy()
    bad[0, 0] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        frc(bad, a)
    with pytest.raises(ConfigError, match="spacing"):
        frc(a, a, spacing=(1.0, 0.0))
    with pytest.raises(ConfigError, match="spacing"):
        frc(a, a, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="n_bins"):
        frc(a, a, n_bins=40)
    with pytest.raises(ConfigError, match="window"):
        frc(a, a, window="gauss")  # type: ignore[arg-type]


# -- single-image FRC ----------------------------------------------------------------------
@pytest.mark.parametrize("shape,f0", [((256, 256), 0.15), ((64, 64, 64), 0.2)])
def test_single_image_frc_recovers_cutoff(shape, f0, rng):
    img = (lowpass_noise(shape, f0, rng) + rng.standard_normal(shape)).astype(np.float32)
    res = single_image_frc(img, window="none")
    assert res.frequencies[-1] == pytest.approx(0.25)  # sub-image Nyquist, image units
    assert res.resolution_1_7 == pytest.approx(1 / f0, rel=0.08)
    assert single_image_frc(img).resolution_half_bit == pytest.approx(1 / f0, rel=0.12)


def test_single_image_frc_corrects_the_half_pixel_shift(rng):
    # nearly noiseless band-limited object: in band the split halves must agree, which
    # they do only if the known sub-lattice shift is undone
    img = lowpass_noise((128, 128), 0.2, rng) + 1e-3 * rng.standard_normal((128, 128))
    res = single_image_frc(img, window="none")
    band = (res.frequencies > 0) & (res.frequencies < 0.18)
    assert np.min(res.correlation[band]) > 0.99


def test_single_image_frc_of_noise(rng):
    res = single_image_frc(rng.standard_normal((128, 128)) + 50)
    corr, n = res.correlation[1:], res.n_per_bin[1:]
    assert abs(np.sum(n * corr) / np.sum(n)) < 4 / np.sqrt(0.5 * np.sum(n))
    assert res.resolution_half_bit == math.inf or res.resolution_half_bit > 128 / 8
    with pytest.raises(DataError, match="at least 16"):
        single_image_frc(rng.random((12, 64)))
