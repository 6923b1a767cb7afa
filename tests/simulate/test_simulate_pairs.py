"""Simulated pairs: shapes, dtypes, units and the exact input/target relation per task."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.simulate.camera import CameraModel, camera_inverse, camera_mean
from fluorecon.simulate.degrade import blur, downsample
from fluorecon.simulate.pairs import SimulatedPair, default_psf, simulate_pair
from fluorecon.simulate.psf import gaussian_psf

SHAPES = [(64, 64), (16, 32, 32)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("task", ["denoise", "deconvolve", "upsample"])
def test_pair_shapes_dtypes_and_meta(task, shape):
    pair = simulate_pair(task, shape, photons=80.0, seed=3)
    assert isinstance(pair, SimulatedPair)
    assert pair.task == task and pair.axes == ("YX" if len(shape) == 2 else "ZYX")
    assert pair.target.shape == shape
    expected_in = tuple(n // 2 for n in shape) if task == "upsample" else shape
    assert pair.input.shape == expected_in == pair.expected.shape
    for arr in (pair.input, pair.target, pair.psf, pair.expected):
        assert arr.dtype == np.float32 and np.all(np.isfinite(arr))
    assert pair.psf.ndim == len(shape)
    assert pair.psf.sum() == pytest.approx(1.0, abs=1e-5)
    assert isinstance(pair.camera, CameraModel)
    # the input is a camera recording: integer ADU above the offset on average
    np.testing.assert_array_equal(pair.input, np.round(pair.input))
    assert pair.input.mean() > pair.camera.offset
    # physical pixel sizes, input grid coarser for upsampling
    ratio = 2.0 if task == "upsample" else 1.0
    assert pair.meta.pixel_size["X"] == pytest.approx(0.1 * ratio)
    assert pair.target_meta.pixel_size["X"] == pytest.approx(0.1)
    assert pair.meta.extra["input_units"] == "ADU" and pair.meta.extra["target_units"] == "photons"
    if len(shape) == 3:
        assert pair.meta.axes == "ZYX" and pair.meta.pixel_size["Z"] == pytest.approx(0.2 * ratio)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.task = "other"  # type: ignore[misc]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("task", ["denoise", "deconvolve", "upsample"])
def test_input_and_target_share_photon_units(task, shape):
    pair = simulate_pair(task, shape, photons=60.0, background=4.0, seed=5)
    photons = camera_inverse(pair.input, pair.camera)
    # The documented relation, exactly for the noise-free mean ...
    if task == "denoise":
        mapped = pair.target
    elif task == "deconvolve":
        mapped = blur(pair.target, pair.psf, mode="reflect")
    else:
        mapped = downsample(pair.target, 2)
    np.testing.assert_allclose(mapped, pair.expected, rtol=1e-4, atol=1e-3)
    # ... and the noisy recording agrees with it on average and per pixel within the noise.
    n = photons.size
    assert abs(photons.mean() - pair.expected.mean()) < 5 * np.sqrt(
        (pair.expected.mean() + 10) / n)
    resid = (photons - pair.expected) / np.sqrt(pair.expected / pair.camera.quantum_efficiency + 2)
    assert 0.7 < resid.std() < 1.3
    # Peak photons as requested (on the noise-free input, without background).
    assert pair.expected.max() - 4.0 == pytest.approx(60.0, rel=1e-4)
    assert camera_mean(pair.expected, pair.camera).max() < pair.camera.saturation


def test_deconvolve_target_is_sharper_with_same_flux():
    pair = simulate_pair("deconvolve", (64, 64), phantom="filaments", photons=100.0, seed=1)
    assert pair.target.max() > 1.3 * pair.expected.max()
    assert pair.target.sum() == pytest.approx(pair.expected.sum(), rel=1e-3)


def test_noise_level_follows_photons():
    def snr(photons: float) -> float:
        p = simulate_pair("denoise", (64, 64), photons=photons, seed=2)
        err = camera_inverse(p.input, p.camera) - p.target
        return float(p.target.std() / err.std())

    assert snr(500.0) > 2.5 * snr(20.0)


def test_seeded_and_custom_inputs():
    a = simulate_pair("denoise", (32, 32), seed=7)
    b = simulate_pair("denoise", (32, 32), seed=7)
    c = simulate_pair("denoise", (32, 32), seed=8)
    np.testing.assert_array_equal(a.input, b.input)
    np.testing.assert_array_equal(a.target, b.target)
    assert not np.array_equal(a.input, c.input)
    psf = gaussian_psf((9, 9), 1.5)
    sample = np.zeros((32, 32), np.float32)
    sample[16, 16] = 3.0
    cam = CameraModel.ideal()
    p = simulate_pair("deconvolve", (32, 32), phantom=sample, psf=psf, camera=cam,
                      photons=1000.0, seed=0)
    assert p.camera is cam and np.array_equal(p.psf, psf)
    assert p.target[16, 16] == pytest.approx(1000.0 / psf.max(), rel=1e-4)
    np.testing.assert_allclose(p.expected[12:21, 12:21], 1000.0 * psf / psf.max(), rtol=1e-4,
                               atol=1e-3)


def test_upsample_axial_only_factor():
    p = simulate_pair("upsample", (16, 32, 32), factor=(2, 1, 1), seed=0)
    assert p.input.shape == (8, 32, 32)
    assert p.meta.pixel_size == {"Z": pytest.approx(0.4), "Y": pytest.approx(0.1),
                                 "X": pytest.approx(0.1)}


def test_default_psf_is_widefield_on_the_grid():
    psf = default_psf((16, 64, 64))
    assert psf.shape == (15, 63, 63)
    assert np.unravel_index(int(psf.argmax()), psf.shape) == (7, 31, 31)


def test_pair_errors():
    with pytest.raises(ConfigError, match="task"):
        simulate_pair("segment", (32, 32))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="photons"):
        simulate_pair("denoise", (32, 32), photons=0.0)
    with pytest.raises(ConfigError, match="divisible"):
        simulate_pair("upsample", (33, 32))
    with pytest.raises(DataError, match="phantom"):
        simulate_pair("denoise", (32, 32), phantom=np.zeros((16, 16)))
    with pytest.raises(ConfigError, match="phantom kind"):
        simulate_pair("denoise", (32, 32), phantom="stars")
