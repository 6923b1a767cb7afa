"""SMLM forward model: pixel-integrated PSF, blinking kinetics, densities, camera, tables."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.simulate.camera import CameraModel, camera_inverse
from fluorecon.simulate.smlm import (
    AstigmaticCalibration,
    Localizations,
    PSFModel,
    SMLMConfig,
    blink,
    expected_photons,
    simulate_frames,
    simulate_smlm,
    structure_labels,
)


@pytest.mark.parametrize("psf", [PSFModel(), PSFModel(kind="astigmatic")])
def test_psf_is_pixel_integrated_and_centred(psf: PSFModel) -> None:
    locs = Localizations.build(frame=[0], x=[1630.0], y=[1570.0], z=[200.0],
                               photons=[1000.0])
    img = expected_photons(locs, (32, 32), pixel_size=100.0, psf=psf)[0]
    assert img.sum() == pytest.approx(1000.0, rel=1e-6)  # integrated over pixels, not sampled
    yy, xx = np.mgrid[:32, :32] + 0.5
    assert (img * xx).sum() / img.sum() * 100 == pytest.approx(1630.0, abs=0.5)
    assert (img * yy).sum() / img.sum() * 100 == pytest.approx(1570.0, abs=0.5)
    if psf.is_3d:  # z = +200 nm: nearer the x focus (+c), so narrower in x than in y
        vx = (img * (xx - 16.3) ** 2).sum() / img.sum()
        vy = (img * (yy - 15.7) ** 2).sum() / img.sum()
        assert vx < vy


def test_astigmatic_widths_cross_at_focus_and_match_derivative() -> None:
    cal = AstigmaticCalibration(c=250.0, d=350.0, a_x=0.1, b_y=0.05)
    sx, sy = cal.sigmas(np.array([-250.0, 250.0]))
    assert sx[1] == pytest.approx(cal.sigma0_x) and sy[0] == pytest.approx(cal.sigma0_y)
    z = np.linspace(-600, 600, 7)
    _, _, dx, dy = cal.sigmas_and_derivatives(z)
    h = 1e-3
    num_x = (cal.sigmas(z + h)[0] - cal.sigmas(z - h)[0]) / (2 * h)
    num_y = (cal.sigmas(z + h)[1] - cal.sigmas(z - h)[1]) / (2 * h)
    np.testing.assert_allclose(dx, num_x, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(dy, num_y, rtol=1e-5, atol=1e-9)


def test_blinking_kinetics_match_rates() -> None:
    on = blink(4000, 400, k_on=0.05, k_off=0.3, k_bleach=0.0, rng=1)
    frac = on.mean()
    assert frac == pytest.approx(0.05 / 0.35, rel=0.05)
    # mean on-time 1 / k_off frames: count on-runs
    starts = (on[1:] & ~on[:-1]).sum()
    assert on[1:].sum() / starts == pytest.approx(1 / 0.3, rel=0.1)
    bleached = blink(2000, 300, k_on=0.2, k_off=0.2, k_bleach=0.1, rng=2)
    assert bleached[-20:].mean() < 0.02  # nearly everything bleaches


def test_blink_rejects_bad_rates() -> None:
    with pytest.raises(ConfigError):
        blink(10, 10, k_on=0.1, k_off=0.8, k_bleach=0.5, rng=0)


@pytest.mark.parametrize("kind", ["filaments", "rings", "clusters", "uniform"])
@pytest.mark.parametrize("three_d", [False, True])
def test_structures_inside_field(kind: str, three_d: bool) -> None:
    pts = structure_labels(kind, (3000.0, 4000.0), 500, rng=0,
                           z_range=(-300.0, 300.0) if three_d else None)
    assert pts.shape == (500, 3 if three_d else 2)
    assert pts[:, 0].min() >= 0 and pts[:, 0].max() < 4000
    assert pts[:, 1].min() >= 0 and pts[:, 1].max() < 3000
    if three_d:
        assert pts[:, 2].min() >= -300 and pts[:, 2].max() <= 300
    if kind == "rings":  # labels sit ~60 nm from their ring centre: nearest-neighbour gaps small
        from scipy.spatial import cKDTree
        d, _ = cKDTree(pts[:, :2]).query(pts[:, :2], k=2)
        assert np.median(d[:, 1]) < 30


@pytest.mark.parametrize("camera", [CameraModel.emccd(), CameraModel.scmos()])
def test_simulation_density_and_photometry(camera: CameraModel) -> None:
    cfg = SMLMConfig(frames=300, shape=(32, 32), density=1.0, background=15.0, camera=camera,
                     k_bleach=0.0, structure="uniform")
    sim = simulate_smlm(cfg, seed=4)
    assert sim.frames.shape == (300, 32, 32) and sim.frames.dtype == np.float32
    area = 3.2 * 3.2
    assert len(sim.truth) / 300 / area == pytest.approx(1.0, rel=0.15)
    photons = camera_inverse(sim.frames, camera)
    signal = expected_photons(sim.truth, (32, 32), pixel_size=100.0, psf=cfg.psf,
                              n_frames=300)
    assert float((photons - signal).mean()) == pytest.approx(15.0, rel=0.02)  # background
    # the table's photons are what reaches the sensor (minus tails beyond the frame edge)
    assert signal.sum() <= sim.truth.photons.sum()
    assert signal.sum() == pytest.approx(sim.truth.photons.sum(), rel=0.1)


def test_simulation_is_seeded_and_3d_has_z() -> None:
    cfg = SMLMConfig(frames=10, shape=(16, 16), psf=PSFModel(kind="astigmatic"), density=2.0)
    a, b = simulate_smlm(cfg, seed=7), simulate_smlm(cfg, seed=7)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.truth.z is not None and np.all(np.abs(a.truth.z) <= 500)
    c = simulate_frames(cfg, seed=1, density=(0.0, 0.0))
    assert len(c.truth) == 0


def test_independent_frames_background_range() -> None:
    sim = simulate_frames(SMLMConfig(frames=50, shape=(16, 16)), background=(5.0, 50.0),
                          seed=0)
    assert sim.background.min() >= 5 and sim.background.max() <= 50
    assert np.ptp(sim.background) > 20
    np.testing.assert_allclose(sim.truth.background, sim.background[sim.truth.frame])


def test_table_validation() -> None:
    with pytest.raises(DataError):
        Localizations.build(frame=[0, 1], x=[1.0], y=[1.0, 2.0])
    with pytest.raises(DataError):
        Localizations.build(frame=[0.5], x=[1.0], y=[1.0])
    with pytest.raises(DataError):
        Localizations.build(frame=[0], x=[np.nan], y=[1.0])
    t = Localizations.build(frame=[2, 0], x=[1.0, 2.0], y=[3.0, 4.0], extra={"k": [5, 6]})
    s = t.sorted()
    assert list(s.frame) == [0, 2] and list(s.extra["k"]) == [6.0, 5.0]
    cat = Localizations.concatenate([t, Localizations.build(frame=[1], x=[0.0], y=[0.0])])
    assert len(cat) == 3 and "k" not in cat.extra
