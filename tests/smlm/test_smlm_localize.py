"""Classical localisation: CRLB-level precision, unbiased photometry, 3D astigmatism, sCMOS."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.methods.classical.smlm import (
    LocalizeConfig,
    calibrate_astigmatism,
    detect_candidates,
    fit_rois,
    localize,
)
from fluorecon.metrics.smlm import match_localizations
from fluorecon.simulate.camera import CameraModel, camera_forward
from fluorecon.simulate.smlm import Localizations, PSFModel, expected_photons


def _isolated(n: int, psf: PSFModel, *, photons: float, background: float, seed: int,
              camera: CameraModel | None = None, **maps: np.ndarray
              ) -> tuple[np.ndarray, Localizations]:
    """One emitter per 24x24 frame near the centre (frames = molecules)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-400, 400, n) if psf.is_3d else None
    truth = Localizations.build(frame=np.arange(n), x=rng.uniform(1100, 1300, n),
                                y=rng.uniform(1100, 1300, n), z=z,
                                photons=np.full(n, photons))
    lam = expected_photons(truth, (24, 24), pixel_size=100.0, psf=psf) + background
    if camera is None:
        return rng.poisson(lam).astype(np.float32), truth
    return camera_forward(lam, camera, rng=rng, **maps), truth


@pytest.mark.parametrize("model", ["gaussian", "gaussian_sigma"])
def test_2d_precision_reaches_crlb(model: str) -> None:
    psf = PSFModel(sigma=130.0)
    frames, truth = _isolated(600, psf, photons=1000.0, background=10.0, seed=1)
    cfg = LocalizeConfig(psf=psf, fit_sigma=model == "gaussian_sigma")
    locs = localize(frames, camera=CameraModel.ideal(), config=cfg)
    assert len(locs) == 600  # every isolated molecule found, no duplicates
    f = locs.frame
    err = np.concatenate([locs.x - truth.x[f], locs.y - truth.y[f]])
    crlb = float(np.sqrt(np.mean(locs.uncertainty ** 2)))
    assert 3.0 < crlb < 10.0
    assert np.std(err) == pytest.approx(crlb, rel=0.12)  # MLE attains the CRLB
    assert abs(np.mean(err)) < 0.5
    assert np.mean(locs.photons) == pytest.approx(1000.0, rel=0.03)
    assert np.mean(locs.background) == pytest.approx(10.0, rel=0.03)
    if model == "gaussian_sigma":
        assert np.median(locs.sigma) == pytest.approx(130.0, rel=0.03)


def test_emccd_excess_noise_doubles_variance() -> None:
    psf = PSFModel(sigma=130.0)
    cam = CameraModel.emccd()
    frames, truth = _isolated(500, psf, photons=1500.0, background=5.0, seed=2, camera=cam)
    found = localize(frames, camera=cam, config=LocalizeConfig(psf=psf))
    m = match_localizations(found, truth, tolerance=150.0)
    assert m.tp >= 495 and m.fp <= 5  # EMCCD's heavy-tailed noise gives rare false spots
    locs = found.select(m.test_index)
    f = locs.frame
    err = np.concatenate([locs.x - truth.x[f], locs.y - truth.y[f]])
    crlb = float(np.sqrt(np.mean(locs.uncertainty ** 2)))
    assert np.std(err) == pytest.approx(crlb, rel=0.15)
    # photons are reported in photons (QE and gains removed), not electrons or ADU
    assert np.median(locs.photons) == pytest.approx(1500.0, rel=0.1)


def test_scmos_maps_enter_the_likelihood() -> None:
    psf = PSFModel(sigma=130.0)
    cam = CameraModel.scmos()
    rng = np.random.default_rng(5)
    read = rng.choice([1.0, 30.0], size=(24, 24), p=[0.8, 0.2])  # hot, noisy pixels
    gain = rng.uniform(1.8, 2.6, (24, 24))
    offset = rng.uniform(90, 110, (24, 24))
    maps = {"read_noise_map": read, "gain_map": gain, "offset_map": offset}
    frames, truth = _isolated(400, psf, photons=600.0, background=5.0, seed=3, camera=cam,
                              **maps)
    cfg = LocalizeConfig(psf=psf)
    aware = localize(frames, camera=cam, config=cfg, **maps)
    naive = localize(frames, camera=cam, config=cfg)

    def rmse(locs: Localizations) -> float:
        f = locs.frame
        return float(np.sqrt(np.mean((locs.x - truth.x[f]) ** 2 + (locs.y - truth.y[f]) ** 2)))

    assert rmse(aware) < 0.9 * rmse(naive)


def test_astigmatic_3d_z_precision_reaches_crlb() -> None:
    psf = PSFModel(kind="astigmatic")
    frames, truth = _isolated(400, psf, photons=3000.0, background=10.0, seed=4)
    locs = localize(frames, camera=CameraModel.ideal(), config=LocalizeConfig(psf=psf))
    assert len(locs) >= 395
    f = locs.frame
    dz = locs.z - truth.z[f]
    assert np.std(dz) == pytest.approx(np.sqrt(np.mean(locs.uncertainty_z ** 2)), rel=0.15)
    assert abs(np.mean(dz)) < 3.0
    assert np.std(locs.x - truth.x[f]) < 6.0


def test_astigmatic_calibration_from_beads() -> None:
    psf = PSFModel(kind="astigmatic")
    zs = np.arange(-600.0, 601.0, 50.0)
    k = zs.size
    beads = Localizations.build(frame=np.repeat(np.arange(k), 4),
                                x=np.tile([800.0, 2400, 800, 2400], k),
                                y=np.tile([800.0, 800, 2400, 2400], k),
                                z=np.repeat(zs, 4), photons=np.full(4 * k, 20000.0))
    cam = CameraModel.scmos()
    stack = camera_forward(expected_photons(beads, (32, 32), pixel_size=100.0, psf=psf) + 20,
                           cam, rng=0)
    cal = calibrate_astigmatism(stack, zs + 75.0, camera=cam, pixel_size=100.0)  # stage offset
    z = np.array([-400.0, 0.0, 400.0])
    for a, b in zip(cal.sigmas(z), psf.astigmatism.sigmas(z)):
        np.testing.assert_allclose(a, b, rtol=0.03)


def test_batched_fit_recovers_parameters_without_noise() -> None:
    psf = PSFModel(sigma=150.0)
    truth = Localizations.build(frame=[0, 1, 2], x=[455.0, 530.0, 480.0],
                                y=[470.0, 444.0, 520.0], photons=[500.0, 2000.0, 5000.0])
    lam = expected_photons(truth, (10, 10), pixel_size=100.0, psf=psf) + 3.0
    theta0 = np.array([[5.0, 5.0, 300.0, 1.0]] * 3)
    res = fit_rois(lam, theta0, model="gaussian", sigma=1.5, pixel_size=100.0)
    assert res.converged.all()
    np.testing.assert_allclose(res.theta[:, 0], truth.x / 100, atol=1e-4)
    np.testing.assert_allclose(res.theta[:, 2], truth.photons, rtol=1e-4)
    np.testing.assert_allclose(res.theta[:, 3], 3.0, rtol=1e-3)
    assert np.all(np.diff(res.crlb[:, 0]) < 0)  # brighter: more precise


def test_detection_finds_spots_and_respects_threshold() -> None:
    psf = PSFModel(sigma=130.0)
    frames, truth = _isolated(20, psf, photons=800.0, background=10.0, seed=6)
    t, y, x, score = detect_candidates(frames.astype(np.float64), sigma=1.3, threshold=2.0)
    assert set(t) == set(range(20))
    strict = detect_candidates(frames.astype(np.float64), sigma=1.3, threshold=50.0)[0]
    assert strict.size < t.size
    flat = np.random.default_rng(0).poisson(10.0, (5, 24, 24)).astype(np.float64)
    assert detect_candidates(flat, filter="dog", sigma=1.3, threshold=6.0)[0].size == 0


def test_localize_input_errors_and_inputs_unchanged() -> None:
    frames, _ = _isolated(3, PSFModel(), photons=800.0, background=10.0, seed=7)
    before = frames.copy()
    localize(frames, camera=CameraModel.ideal())
    np.testing.assert_array_equal(frames, before)
    with pytest.raises(DataError):
        localize(np.zeros((2, 2, 2, 2)), camera=CameraModel.ideal())
    bad = frames.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError):
        localize(bad, camera=CameraModel.ideal())
    with pytest.raises(ConfigError):
        LocalizeConfig.build(threshold=-1)
    empty = localize(np.full((2, 16, 16), 10.0), camera=CameraModel.ideal())
    assert len(empty) == 0 and empty.uncertainty is not None
