"""Degradations: blur (flux, centring, boundaries), binning, axial anisotropy, background."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.simulate.degrade import add_background, axial_anisotropy, blur, downsample
from fluorecon.simulate.psf import gaussian_psf, widefield_psf


def _interior_object(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    inner = tuple(slice(n // 3, n - n // 3) for n in shape)
    img[inner] = rng.uniform(0, 10, img[inner].shape)
    return img


@pytest.mark.parametrize("shape,psf_shape", [((48, 40), (15, 15)), ((24, 32, 30), (9, 11, 11)),
                                             ((20, 22), (31, 31))])
@pytest.mark.parametrize("mode", ["reflect", "constant", "wrap"])
def test_blur_preserves_flux_and_shape(shape, psf_shape, mode):
    img = _interior_object(shape)
    before = img.copy()
    psf = gaussian_psf(psf_shape, 1.5)
    out = blur(img, psf, mode=mode)
    assert out.shape == img.shape and out.dtype == np.float32
    np.testing.assert_array_equal(img, before)
    truncated = (psf_shape[0] > shape[0])  # wrap folds a larger PSF; others lose its overhang
    if mode == "wrap" or not truncated:
        assert out.sum(dtype=np.float64) == pytest.approx(img.sum(dtype=np.float64), rel=1e-5)
    assert out.max() < img.max()  # it did blur


@pytest.mark.parametrize("shape", [(33, 35), (17, 33, 31)])
def test_blur_matches_direct_convolution_and_centring(shape):
    img = _interior_object(shape, seed=3)
    rng = np.random.default_rng(1)
    psf = rng.uniform(0, 1, (5, 4, 3)[-len(shape):]).astype(np.float32)  # asymmetric, even size
    ours = blur(img, psf, mode="constant")
    # scipy.ndimage.convolve centres the kernel at shape // 2 too (origin 0)
    ref = ndimage.convolve(img.astype(np.float64), psf.astype(np.float64), mode="constant")
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * float(ref.max()))
    ours_r = blur(img, psf, mode="reflect")
    ref_r = ndimage.convolve(img.astype(np.float64), psf.astype(np.float64), mode="reflect")
    np.testing.assert_allclose(ours_r, ref_r, rtol=1e-4, atol=1e-4 * float(ref.max()))


def test_blur_of_a_point_returns_the_psf():
    psf = widefield_psf((15, 15), na=1.2, wavelength=0.52, pixel_size=0.1)
    img = np.zeros((31, 31), np.float32)
    img[15, 15] = 1.0
    out = blur(img, psf)
    np.testing.assert_allclose(out[8:23, 8:23], psf, atol=1e-6)


def test_blur_rejects_mismatched_psf():
    with pytest.raises(DataError, match="PSF"):
        blur(np.zeros((8, 8)), np.ones((3, 3, 3)))
    with pytest.raises(ConfigError, match="mode"):
        blur(np.zeros((8, 8)), np.ones((3, 3)), mode="mirror")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape,factor", [((32, 48), 2), ((32, 48), (4, 3)), ((12, 16, 20), 2),
                                          ((12, 16, 20), (3, 2, 4))])
def test_downsample_preserves_mean_and_sum(shape, factor):
    img = np.random.default_rng(0).uniform(0, 100, shape).astype(np.float32)
    out = downsample(img, factor)
    facs = np.broadcast_to(factor, (len(shape),))
    assert out.shape == tuple(n // f for n, f in zip(shape, facs))
    assert out.dtype == np.float32
    assert out.mean(dtype=np.float64) == pytest.approx(img.mean(dtype=np.float64), rel=1e-6)
    total = downsample(img, factor, reduce="sum")
    assert total.sum(dtype=np.float64) == pytest.approx(img.sum(dtype=np.float64), rel=1e-6)
    # one block checked by hand
    block = img[tuple(slice(0, f) for f in facs)]
    assert out.flat[0] == pytest.approx(block.mean(), rel=1e-6)


def test_downsample_selected_axes_and_remainder():
    img = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    out = downsample(img, 2, axes=(-2, -1))
    assert out.shape == (5, 3, 3)
    np.testing.assert_allclose(out[:, 0, 0], img[:, :2, :2].mean(axis=(1, 2)))
    with pytest.raises(DataError, match="divisible"):
        downsample(img, 2, axes=-1, remainder="error")
    with pytest.raises(ConfigError, match="factor"):
        downsample(img, (2, 2), axes=0)


def test_axial_anisotropy_blurs_then_subsamples():
    vol = np.zeros((40, 8, 8), np.float32)
    vol[::2] = 1.0  # fine axial stripes at the Nyquist limit
    out = axial_anisotropy(vol, 4)
    assert out.shape == (10, 8, 8) and out.dtype == np.float32
    # without the anti-alias blur, every 4th plane would be 1; with it, the stripes average out
    np.testing.assert_allclose(out[2:-2], 0.5, atol=0.05)
    # a 1D kernel and an equivalent 3D PSF agree
    k = np.array([0.25, 0.5, 0.25], np.float32)
    a = axial_anisotropy(vol, 2, psf=k, offset=1)
    b = axial_anisotropy(vol, 2, psf=k[:, None, None], offset=1)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a.shape == (20, 8, 8)
    with pytest.raises(DataError, match="3D"):
        axial_anisotropy(np.zeros((8, 8)), 2)


@pytest.mark.parametrize("shape", [(64, 64), (16, 32, 32)])
def test_add_background(shape):
    img = np.zeros(shape, np.float32)
    flat = add_background(img, 7.5)
    np.testing.assert_allclose(flat, 7.5)
    uneven = add_background(img, 10.0, variation=0.5, seed=0)
    assert uneven.min() >= 5.0 - 1e-4 and uneven.max() <= 15.0 + 1e-4
    assert uneven.mean() == pytest.approx(10.0, rel=1e-3)
    assert uneven.std() > 0.5
    np.testing.assert_array_equal(uneven, add_background(img, 10.0, variation=0.5, seed=0))
    np.testing.assert_array_equal(img, 0)
    with pytest.raises(ConfigError):
        add_background(img, -1.0)
