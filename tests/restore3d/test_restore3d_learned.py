"""Learned deconvolution, upsampling and isotropic restoration on tiny simulated data: each
beats its input (deconv), bicubic interpolation (upsample) or the interpolated stack's
anisotropy (iso); models round-trip through their folders and the registry."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fluorecon.core import AxesError, ConfigError, DataError  # noqa: E402
from fluorecon.methods import get_method  # noqa: E402
from fluorecon.methods.learned import (  # noqa: E402
    IsotropicCARE,
    LearnedDeconvolution,
    LearnedUpsampling,
    load_model_method,
)
from fluorecon.metrics import psnr  # noqa: E402
from fluorecon.simulate.degrade import axial_anisotropy, blur, downsample  # noqa: E402
from fluorecon.simulate.psf import gaussian_psf, psf_fwhm  # noqa: E402
from fluorecon.simulate.semisynthetic import (  # noqa: E402
    add_camera_noise,
    camera_preset,
    degrade,
    phantom_images,
)

SMALL = dict(patch_size=32, batch_size=8, depth=2, base_filters=8, learning_rate=2e-3,
             validation_interval=50, validation_patches=8)


@pytest.fixture(scope="module")
def images2d():
    return (phantom_images("filaments", (96, 96), 3, seed=1),
            phantom_images("filaments", (96, 96), 1, seed=7)[0])


def test_deconv_beats_its_input(images2d):
    train, truth = images2d
    psf = gaussian_psf((15, 15), 1.5)
    dec = LearnedDeconvolution(steps=200, photons=200.0, **SMALL).fit(train, "YX", psf=psf)
    raw = degrade(truth, psf=psf, photons=200.0, rng=5)
    before = raw.copy()
    out = dec.predict(raw, "YX")
    assert np.array_equal(raw, before) and out.dtype == np.float32 and out.shape == raw.shape
    gain = psnr(out, truth) - psnr(raw, truth)
    assert gain > 1.5, gain
    sim = dec.model_config.training_data["simulation"]
    assert sim["psf"]["shape"] == [15, 15] and sim["photons"] == 200.0
    assert dec.model_config.training_data["pairs"] == 6  # 3 images x 2 noise copies


@pytest.fixture(scope="module")
def upsampler(images2d, tmp_path_factory):
    train, _ = images2d
    up = LearnedUpsampling(steps=200, photons=200.0, factor=2, **SMALL).fit(train, "YX")
    folder = tmp_path_factory.mktemp("models") / "up2"
    up.save(folder)
    return up, folder


def test_upsample_beats_bicubic(images2d, upsampler):
    _, truth = images2d
    up, _ = upsampler
    low = add_camera_noise(downsample(truth, 2), photons=200.0, camera=camera_preset("scmos"),
                           rng=3)
    assert up.output_shape(low.shape, "YX") == truth.shape
    bicubic = up.interpolate(low, "YX")
    out = up.predict(low, "YX")
    assert out.shape == truth.shape == bicubic.shape and out.dtype == np.float32
    gain = psnr(out, truth) - psnr(bicubic, truth)
    assert gain > 1.0, gain
    # Channels are looped over: a CYX stack of two copies gives two equal outputs.
    both = up.predict(np.stack([low, low]), "CYX")
    assert both.shape == (2, 96, 96)
    np.testing.assert_allclose(both[1], out, rtol=1e-5, atol=1e-3)


def test_upsample_model_folder_roundtrip(images2d, upsampler):
    _, truth = images2d
    up, folder = upsampler
    loaded = load_model_method(folder)
    assert isinstance(loaded, LearnedUpsampling) and loaded.config.factor == 2
    low = downsample(truth, 2)
    np.testing.assert_array_equal(loaded.predict(low, "YX"), up.predict(low, "YX"))
    assert get_method("upsample") is LearnedUpsampling
    assert get_method("deconv") is LearnedDeconvolution and get_method("iso") is IsotropicCARE


def test_upsample_3d_along_z_only():
    vols = phantom_images("mixed", (32, 32, 32), 2, seed=4)
    up = LearnedUpsampling(steps=60, photons=None, factor=2, upsample_axes="Z",
                           **{**SMALL, "patch_size": 16, "batch_size": 4, "depth": 1})
    up.fit(vols, "ZYX")
    low = downsample(vols[0], 2, axes=0)
    out = up.predict(low, "ZYX")
    assert low.shape == (16, 32, 32) and out.shape == (32, 32, 32)
    assert up.model_config.unet.ndim == 3
    with pytest.raises(AxesError):
        up.predict(low[0], "YX")


def test_upsample_config_validation():
    with pytest.raises(ConfigError, match="upsample_axes"):
        LearnedUpsampling(upsample_axes="XY")
    with pytest.raises(ConfigError):
        LearnedUpsampling(factor=1)
    with pytest.raises(ConfigError, match="augment"):
        LearnedUpsampling(upsample_axes="X")
    assert LearnedUpsampling(upsample_axes="X", augment=False).config.upsample_axes == "X"
    # mirror images keep X along X: allowed without the 90-degree turns
    assert LearnedUpsampling(upsample_axes="X", rotate=False).config.augment
    with pytest.raises(AxesError):
        LearnedUpsampling(upsample_axes="Z", **SMALL).fit(np.zeros((64, 64)), "YX")


def _bead_anisotropy(vol, centres, half=6):
    widths = []
    bg = np.median(vol)
    for c in centres:
        if np.any(c < half) or np.any(c >= np.array(vol.shape) - half):
            continue
        sl = tuple(slice(int(x) - half, int(x) + half + 1) for x in c)
        try:
            widths.append(psf_fwhm(np.clip(vol[sl] - bg, 0, None)))
        except DataError:  # a neighbour bead keeps the profile above half maximum
            continue
    w = np.median(np.array(widths), axis=0)
    return w[0] / w[1:].mean()


def test_iso_reduces_axial_anisotropy_of_beads():
    # Isotropic truth: point beads blurred by an isotropic Gaussian; the stack is blurred
    # further along Z and sampled every 4th plane (anisotropic), with Poisson noise.
    rng = np.random.default_rng(0)
    shape, f = (48, 64, 64), 4
    pts = np.zeros(shape, np.float32)
    centres = rng.integers(6, [42, 58, 58], (60, 3))
    pts[tuple(centres.T)] = rng.uniform(0.5, 1, 60)
    iso_vol = blur(pts, gaussian_psf((15, 15, 15), 1.2))
    stack = np.clip(axial_anisotropy(iso_vol, f), 0, None)
    stack = rng.poisson(stack / stack.max() * 300 + 5).astype(np.float32)
    iso = IsotropicCARE(factor=f, steps=200, **SMALL)
    iso.fit(stack, "ZYX")
    out = iso.predict(stack, "ZYX")
    base = iso.interpolate(stack, "ZYX")
    assert out.shape == base.shape == (45, 64, 64) == iso.output_shape(stack.shape, "ZYX")
    before, after = _bead_anisotropy(base, centres), _bead_anisotropy(out, centres)
    assert before > 1.6  # the interpolated stack is clearly anisotropic
    assert after < 0.85 * before, (before, after)
    assert iso.model_config.unet.ndim == 2 and not iso.config.augment
    with pytest.raises(ConfigError, match="rotate=False"):
        IsotropicCARE(factor=4, augment=True)
    assert IsotropicCARE(factor=4, augment=True, rotate=False).config.augment
    with pytest.raises(ConfigError, match="factor"):
        IsotropicCARE(**SMALL).fit(stack, "ZYX")
