"""Data consistency: honest reconstructions pass, invented and erased structure is flagged."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.methods.classical.denoising.noise import NoiseModel
from fluorecon.simulate.camera import camera_mean, noise_parameters
from fluorecon.simulate.degrade import downsample
from fluorecon.simulate.pairs import simulate_pair
from fluorecon.trust.consistency import (
    ConvolutionForward,
    DownsampleForward,
    check_consistency,
    forward_for,
)
from fluorecon.trust.hallucination import inject_structures

SHAPES = [(128, 128), (12, 64, 64)]


def _camera_noise(pair) -> NoiseModel:
    a, b = noise_parameters(pair.camera)
    return NoiseModel(a=a, b=b - a * pair.camera.offset)


def _honest_adu(pair) -> np.ndarray:
    return camera_mean(np.clip(pair.expected, 0, None), pair.camera)


@pytest.mark.parametrize("shape", SHAPES)
def test_honest_reconstruction_is_consistent(shape):
    pair = simulate_pair("denoise", shape, photons=30, seed=3)
    res = check_consistency(pair.input, _honest_adu(pair), noise=_camera_noise(pair),
                            units="same")
    assert res.regions == [] and not res.flagged.any()
    assert res.reduced_chi2 == pytest.approx(1.0, abs=0.05)
    assert abs(float(res.residual.mean())) < 0.05
    assert float(res.residual.std()) == pytest.approx(1.0, abs=0.05)
    assert res.residual.dtype == np.float32 and res.residual.shape == shape
    # photon-unit ground truth, units fitted, noise estimated from the measurement
    res2 = check_consistency(pair.input, pair.target)
    assert not res2.flagged.any()
    assert res2.reduced_chi2 == pytest.approx(1.0, abs=0.15)
    cam = pair.camera
    assert res2.alpha == pytest.approx(cam.total_gain * cam.quantum_efficiency, rel=0.05)


@pytest.mark.parametrize("shape", SHAPES)
def test_injected_structure_is_flagged_as_invented(shape):
    pair = simulate_pair("denoise", shape, photons=30, seed=4)
    honest = _honest_adu(pair)
    before = honest.copy()
    noise = _camera_noise(pair)
    span = float(np.percentile(honest, 99.9) - np.percentile(honest, 0.1))
    tampered, structure = inject_structures(honest, n=3, amplitude=0.5 * span, seed=1)
    np.testing.assert_array_equal(honest, before)
    res = check_consistency(pair.input, tampered, noise=noise, units="same")
    labels, count = ndi.label(structure > 0.25 * structure.max())
    detected = [res.flagged[labels == k].any() for k in range(1, count + 1)]
    assert count >= 2 and all(detected)
    # nothing flagged beyond the reach of the largest window (15 px) from any structure
    far = ndi.distance_transform_edt(structure < 1e-3 * structure.max()) > 8
    assert not res.flagged[far].any()
    assert res.regions and all(r.sign == -1 for r in res.regions)
    honest_res = check_consistency(pair.input, honest, noise=noise, units="same")
    assert res.chi2 > honest_res.chi2


def test_erased_structure_is_flagged_as_missing():
    pair = simulate_pair("denoise", (128, 128), photons=30, seed=5)
    honest = _honest_adu(pair)
    erased = honest.copy()
    bright = pair.target > 0.5 * pair.target.max()
    erased[bright] = np.median(honest)
    res = check_consistency(pair.input, erased, noise=_camera_noise(pair), units="same")
    assert res.flagged[bright].mean() > 0.5
    assert {r.sign for r in res.regions} == {1}


def test_reproducing_the_noise_gives_small_chi2():
    pair = simulate_pair("denoise", (96, 96), photons=30, seed=6)
    res = check_consistency(pair.input, pair.input, noise=_camera_noise(pair), units="same")
    assert res.reduced_chi2 < 1e-6 and not res.flagged.any()


@pytest.mark.parametrize("shape", SHAPES)
def test_deconvolution_forward_model(shape):
    pair = simulate_pair("deconvolve", shape, photons=50, seed=7)
    fwd = forward_for("deconvolve", psf=pair.psf)
    assert isinstance(fwd, ConvolutionForward)
    res = check_consistency(pair.input, pair.target, fwd)
    assert not res.flagged.any()
    assert res.reduced_chi2 == pytest.approx(1.0, abs=0.15)
    # a sharp reconstruction re-imaged without the PSF does not explain the data
    bad = check_consistency(pair.input, pair.target)
    assert bad.reduced_chi2 > 1.5 and bad.flagged.any()


def test_upsampling_forward_model():
    pair = simulate_pair("upsample", (128, 128), photons=50, factor=2, seed=8)
    fwd = forward_for("upsample", factor=2)
    assert isinstance(fwd, DownsampleForward)
    assert fwd.apply(pair.target).shape == pair.input.shape
    np.testing.assert_allclose(fwd.apply(pair.target), downsample(pair.target, 2), rtol=1e-6)
    res = check_consistency(pair.input, pair.target, fwd)
    assert not res.flagged.any() and res.flagged.shape == pair.input.shape


def test_errors():
    pair = simulate_pair("denoise", (64, 64), photons=30, seed=9)
    with pytest.raises(DataError):
        check_consistency(pair.input, pair.target[:32])
    with pytest.raises(ConfigError):
        check_consistency(pair.input, pair.target, alpha=1.5)
    with pytest.raises(ConfigError):
        check_consistency(pair.input, pair.target, units="photons")
    with pytest.raises(ConfigError):
        forward_for("deconvolve")
    with pytest.raises(ConfigError):
        forward_for("sim")
    bad = pair.target.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError):
        check_consistency(pair.input, bad)
