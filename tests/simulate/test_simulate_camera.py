"""Camera model: flat-field statistics, inverse, saturation, quantisation, sCMOS maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.simulate.camera import (
    CameraModel,
    camera_forward,
    camera_inverse,
    camera_mean,
    noise_parameters,
    noise_variance,
)

N = (256, 256)  # 65536 pixels: relative std error of a variance estimate ~ 0.55 %


def _check_flat(cam: CameraModel, photons: float, seed: int, *, var_rtol: float) -> None:
    adu = camera_forward(np.full(N, photons), cam, rng=seed).astype(np.float64)
    mean = float(camera_mean(np.array(photons), cam))
    var = float(noise_variance(np.array(mean), cam))
    n = adu.size
    assert abs(adu.mean() - mean) < 5 * np.sqrt(var / n)
    assert adu.var(ddof=1) == pytest.approx(var, rel=var_rtol)


@pytest.mark.parametrize("preset", ["scmos", "ideal"])
@pytest.mark.parametrize("photons", [3.0, 40.0, 500.0])
def test_flat_field_mean_and_variance_match_the_model(preset, photons):
    cam = getattr(CameraModel, preset)()
    _check_flat(cam, photons, seed=int(photons), var_rtol=0.04)


def test_emccd_excess_noise_doubles_the_shot_noise_variance():
    cam = CameraModel.emccd()
    _check_flat(cam, 20.0, seed=5, var_rtol=0.05)
    a, b = noise_parameters(cam)
    assert a == pytest.approx(2 * cam.gain * cam.em_gain)
    no_em = cam.model_copy(update={"em_gain": 1.0})
    assert noise_parameters(no_em)[0] == pytest.approx(cam.gain)


def test_custom_camera_with_dark_current_and_read_noise():
    cam = CameraModel.build(quantum_efficiency=0.6, gain=3.0, offset=300.0, read_noise=4.0,
                            bit_depth=16, dark_current=2.0)
    _check_flat(cam, 25.0, seed=11, var_rtol=0.04)
    # Poisson-Gaussian parameters in the Foi et al. convention
    a, b = noise_parameters(cam, quantization=False)
    assert (a, b) == pytest.approx((3.0, (3.0 * 4.0) ** 2))
    mean = camera_mean(np.array([10.0]), cam)
    assert noise_variance(mean, cam, quantization=False)[0] == pytest.approx(
        a * (float(mean[0]) - 300.0) + b, rel=1e-6)


def test_read_noise_dominates_at_zero_photons():
    cam = CameraModel.build(quantum_efficiency=0.9, gain=2.0, offset=100.0, read_noise=3.0)
    adu = camera_forward(np.zeros(N), cam, rng=2).astype(np.float64)
    assert adu.mean() == pytest.approx(100.0, abs=0.05)
    assert adu.std() == pytest.approx(np.sqrt(36.0 + 1 / 12), rel=0.02)


@pytest.mark.parametrize("preset", ["scmos", "emccd", "ideal"])
def test_inverse_maps_the_mean_back_to_photons(preset):
    cam = getattr(CameraModel, preset)()
    photons = np.array([[0.0, 0.5, 7.0], [50.0, 123.4, 900.0]])
    np.testing.assert_allclose(camera_inverse(camera_mean(photons, cam), cam), photons,
                               rtol=1e-5, atol=1e-4)
    # and on average the noisy recording comes back too
    adu = camera_forward(np.full(N, 30.0), cam, rng=3)
    assert camera_inverse(adu, cam).mean() == pytest.approx(30.0, rel=0.01)


def test_output_is_quantised_float32_and_input_untouched():
    cam = CameraModel.scmos()
    photons = np.random.default_rng(0).uniform(0, 100, (16, 16)).astype(np.float32)
    before = photons.copy()
    adu = camera_forward(photons, cam, rng=0)
    assert adu.dtype == np.float32 and adu.shape == photons.shape
    np.testing.assert_array_equal(adu, np.round(adu))
    np.testing.assert_array_equal(photons, before)


def test_saturation_and_clipping_at_zero():
    cam = CameraModel.build(quantum_efficiency=1.0, gain=10.0, offset=5.0, read_noise=20.0,
                            bit_depth=8)
    assert cam.saturation == 255
    adu = camera_forward(np.array([[1e6, 1e6], [0.0, 0.0]]), cam, rng=0)
    np.testing.assert_array_equal(adu[0], [255, 255])
    big = camera_forward(np.zeros(N), cam, rng=1)
    assert big.min() == 0.0 and big.max() <= 255  # read noise of 200 ADU is clipped at 0


def test_same_seed_same_noise_and_different_seed_differs():
    cam = CameraModel.scmos()
    p = np.full((32, 32), 10.0)
    np.testing.assert_array_equal(camera_forward(p, cam, rng=7), camera_forward(p, cam, rng=7))
    assert not np.array_equal(camera_forward(p, cam, rng=7), camera_forward(p, cam, rng=8))


def test_scmos_maps_are_applied_per_pixel():
    cam = CameraModel.scmos()
    ny, nx = 4000, 8
    offset_map = np.linspace(90, 130, nx)[None, :]
    gain_map = np.linspace(1.5, 3.0, nx)[None, :]
    read_map = np.linspace(0.5, 8.0, nx)[None, :]
    photons = np.full((ny, nx), 20.0)
    adu = camera_forward(photons, cam, rng=4, offset_map=offset_map, gain_map=gain_map,
                         read_noise_map=read_map).astype(np.float64)
    mean = camera_mean(photons, cam, offset_map=offset_map, gain_map=gain_map)
    var = noise_variance(mean, cam, offset_map=offset_map, gain_map=gain_map,
                         read_noise_map=read_map)
    assert np.all(np.abs(adu.mean(axis=0) - mean[0]) < 5 * np.sqrt(var[0] / ny))
    np.testing.assert_allclose(adu.var(axis=0, ddof=1), var[0], rtol=0.08)
    # the columns really differ (a broken implementation ignoring maps would not)
    assert adu.mean(axis=0)[-1] - adu.mean(axis=0)[0] > 50
    back = camera_inverse(adu, cam, offset_map=offset_map, gain_map=gain_map)
    np.testing.assert_allclose(back.mean(axis=0), 20.0, rtol=0.02)


def test_bad_maps_and_photons_raise():
    cam = CameraModel.scmos()
    with pytest.raises(DataError, match="gain_map"):
        camera_forward(np.ones((4, 4)), cam, rng=0, gain_map=np.zeros((4, 4)))
    with pytest.raises(DataError, match="offset_map"):
        camera_forward(np.ones((4, 4)), cam, rng=0, offset_map=np.ones((3, 4)))
    with pytest.raises(DataError, match="non-negative"):
        camera_forward(-np.ones((4, 4)), cam, rng=0)
    with pytest.raises(DataError, match="NaN"):
        camera_forward(np.full((4, 4), np.nan), cam, rng=0)


def test_config_validation_and_json_round_trip():
    with pytest.raises(ConfigError, match="quantum_efficiency"):
        CameraModel.build(quantum_efficiency=0.0)
    with pytest.raises(ConfigError, match="bit_depth"):
        CameraModel.build(bit_depth=20)
    with pytest.raises(ConfigError, match="offset"):
        CameraModel.build(offset=300.0, bit_depth=8)
    with pytest.raises(ConfigError, match="unknown|Extra"):
        CameraModel.build(exposure=1.0)
    cam = CameraModel.emccd(em_gain=100.0)
    assert cam.em_gain == 100.0
    again = CameraModel.model_validate_json(cam.to_json())
    assert again == cam
    assert "description" in json.dumps(CameraModel.model_json_schema()["properties"]["gain"])
