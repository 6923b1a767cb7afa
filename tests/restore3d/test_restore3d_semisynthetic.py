"""Training pairs from a forward model: interpolation, sampling, noise units, iso degradation."""

import numpy as np
import pytest

from fluorecon.core import ConfigError, DataError
from fluorecon.simulate.psf import gaussian_psf, psf_fwhm
from fluorecon.simulate.semisynthetic import (
    add_camera_noise,
    camera_preset,
    degrade,
    fine_length,
    iso_kernel,
    iso_pairs,
    phantom_images,
    resample_axis,
    semisynthetic_pairs,
)


@pytest.mark.parametrize("factor", [2, 3.5])
def test_point_resampling_is_exact_on_cubics(factor):
    # Coarse samples of a cubic polynomial at fine positions 0, f, 2f, ...: the not-a-knot
    # cubic spline reproduces the polynomial exactly on the fine grid.
    n = 9
    m = fine_length(n, factor, "point")
    x_fine = np.arange(m, dtype=np.float64)
    poly = lambda x: 0.01 * x ** 3 - 0.2 * x ** 2 + x + 3  # noqa: E731
    coarse = poly(np.arange(n) * factor).astype(np.float32)
    out = resample_axis(np.tile(coarse[:, None], (1, 4)), axis=0, factor=factor)
    assert out.shape == (m, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 2], poly(x_fine), rtol=1e-4, atol=1e-3)


def test_bin_resampling_places_samples_at_bin_centres():
    # A linear ramp binned by 4 has its means at the bin centres; interpolation restores the
    # ramp exactly between the first and last centre, and holds the edge values beyond.
    fine = np.arange(32, dtype=np.float32)
    coarse = fine.reshape(8, 4).mean(1)
    out = resample_axis(coarse, axis=0, factor=4, sampling="bin")
    assert out.shape == (32,)
    np.testing.assert_allclose(out[1:31], np.clip(fine, 1.5, 29.5)[1:31], atol=1e-4)
    assert out[0] == pytest.approx(1.5) and out[-1] == pytest.approx(29.5)


def test_resample_rejects_bad_parameters():
    with pytest.raises(ConfigError):
        resample_axis(np.zeros(5), axis=0, factor=2.5, sampling="bin")
    with pytest.raises(ConfigError):
        resample_axis(np.zeros(5), axis=0, factor=-1)


def test_camera_noise_is_unbiased_in_image_units():
    img = np.linspace(100, 600, 4096, dtype=np.float32).reshape(64, 64)
    cam = camera_preset("scmos")
    draws = np.stack([add_camera_noise(img, photons=200, camera=cam, rng=s) for s in range(40)])
    assert draws.dtype == np.float32
    # Mean in the image's own units, offset included; the noise shrinks with photons.
    bias = (draws.mean(0) - img)[8:-8]  # away from the clipped darkest pixels
    per_row_block = bias.reshape(6, -1).mean(1)
    assert np.all(np.abs(per_row_block) < 0.01 * img[8:-8].reshape(6, -1).mean(1))
    quiet = add_camera_noise(img, photons=20000, camera=cam, rng=0)
    assert np.std(quiet - img) < 0.2 * np.std(draws[0] - img)


@pytest.mark.parametrize("shape,axes,sub", [((66, 66), "YX", "YX"), ((12, 30, 30), "ZYX", "Z")])
def test_semisynthetic_pairs_follow_the_forward_model(shape, axes, sub):
    images = phantom_images("mixed", shape, 2, seed=3)
    before = [im.copy() for im in images]
    psf = gaussian_psf((9,) * len(shape), 1.5)
    pairs = semisynthetic_pairs(images, axes, psf=psf, factor=3, subsample_axes=sub,
                                photons=None, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(images, before))
    assert len(pairs.inputs) == 2 and pairs.axes == axes
    x, y = pairs.inputs[0], pairs.targets[0]
    assert x.shape == y.shape == shape and x.dtype == np.float32
    np.testing.assert_array_equal(y, images[0])  # targets are the images, never rescaled
    # Noise-free input = interpolate(bin(blur(target))): at the bin centres (fine pixels
    # 1, 4, 7, ... for factor 3) the interpolant equals the bin means.
    from fluorecon.simulate.degrade import blur, downsample

    ax = [axes.index(a) for a in sub]
    binned = downsample(blur(y, psf), 3, axes=ax)
    centres = x
    for a in ax:
        centres = np.take(centres, np.arange(1, shape[a], 3), axis=a)
    np.testing.assert_allclose(centres, binned, rtol=1e-4, atol=1e-3 * binned.max())
    assert pairs.info["factor"] == 3 and pairs.info["psf"]["shape"] == list(psf.shape)
    noisy = semisynthetic_pairs(images, axes, psf=psf, factor=3, subsample_axes=sub,
                                photons=30.0, copies=2, seed=0)
    assert len(noisy.inputs) == 4 and not np.array_equal(noisy.inputs[0], noisy.inputs[1])


def test_degrade_identity_without_psf_factor_or_noise():
    img = phantom_images("filaments", (32, 32), 1, seed=0)[0]
    np.testing.assert_array_equal(degrade(img), img)


def test_iso_pairs_degrade_axis_zero_only():
    # A stack constant along the lateral axis 0 is unchanged by the axial degradation of
    # that axis, while structure along axis 0 is blurred and subsampled.
    rng = np.random.default_rng(0)
    row = rng.uniform(1, 2, 40).astype(np.float32)
    stack = np.broadcast_to(row, (5, 40, 40)).copy()
    pairs = iso_pairs(stack, 3.0, both_lateral_axes=False)
    assert len(pairs.inputs) == 5 and pairs.axes == "YX"
    np.testing.assert_allclose(pairs.inputs[0], pairs.targets[0], rtol=1e-4)
    both = iso_pairs(stack, 3.0)
    assert len(both.inputs) == 10
    transposed = both.inputs[1]  # the transposed plane varies along axis 0: degraded
    assert np.abs(transposed - both.targets[1]).max() > 0.05


def test_iso_kernel_from_a_gaussian_psf():
    # Axial sigma 4 px (at the lateral pixel size), lateral 1.5: the kernel's sigma is
    # sqrt(4^2 - 1.5^2) lateral pixels.
    factor = 2.0
    psf = gaussian_psf((31, 31, 31), (4.0 / factor, 1.5, 1.5))
    k = iso_kernel(psf, factor)
    fwhm = psf_fwhm(k)[0]
    assert fwhm / 2.3548 == pytest.approx(np.sqrt(16 - 1.5 ** 2), rel=0.03)
    assert k.sum() == pytest.approx(1.0) and k.argmax() == k.size // 2
    with pytest.raises(ConfigError):
        iso_kernel(None, 1.0)
    with pytest.raises(DataError):
        iso_pairs(np.zeros((4, 8)), 2.0)
