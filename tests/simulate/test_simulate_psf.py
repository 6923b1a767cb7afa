"""PSF models: normalisation, centring, symmetry, and agreement with diffraction theory."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.simulate.psf import (
    abbe_lateral_fwhm,
    confocal_psf,
    gaussian_psf,
    psf_fwhm,
    rayleigh_resolution,
    widefield_axial_fwhm,
    widefield_psf,
)

NA, WL, N_OIL = 1.2, 0.52, 1.515


def _com(p: np.ndarray) -> np.ndarray:
    grids = np.indices(p.shape)
    return np.array([(g * p).sum() / p.sum() for g in grids])


def _all_psfs(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    z = 0.2 if len(shape) == 3 else None
    return {
        "gaussian": gaussian_psf(shape, (1.5, 2.0, 2.0)[-len(shape):]),
        "born-wolf": widefield_psf(shape, na=NA, wavelength=WL, pixel_size=0.08, z_step=z),
        "gibson-lanni": widefield_psf(shape, na=1.3, wavelength=WL, pixel_size=0.08, z_step=z,
                                      model="gibson-lanni", n_sample=1.45, depth=0.0),
        "confocal": confocal_psf(shape, na=NA, excitation_wavelength=0.488,
                                 emission_wavelength=WL, pixel_size=0.08, z_step=z, pinhole=1.0),
    }


@pytest.mark.parametrize("shape", [(31, 31), (32, 30), (15, 31, 31), (14, 20, 21)])
def test_psfs_are_normalised_centred_and_non_negative(shape):
    for name, p in _all_psfs(shape).items():
        assert p.shape == shape and p.dtype == np.float32, name
        assert p.min() >= 0, name
        assert abs(float(p.sum(dtype=np.float64)) - 1.0) < 1e-5, name
        centre = np.array(shape) // 2
        assert np.unravel_index(int(p.argmax()), shape) == tuple(centre), name
        # An even axis has one extra sample before the centre; drop it to get the
        # symmetric support around shape // 2 whose centre of mass must be the centre.
        sym = p[tuple(slice(1 - n % 2, None) for n in shape)].astype(np.float64)
        assert np.abs(_com(sym) - (centre - (1 - np.array(shape) % 2))).max() < 0.05, name
        if all(n % 2 for n in shape):
            assert np.abs(_com(p.astype(np.float64)) - centre).max() < 0.05, name


@pytest.mark.parametrize("shape", [(31, 31), (15, 31, 31)])
def test_psfs_are_symmetric(shape):
    for name, p in _all_psfs(shape).items():
        for ax in range(p.ndim):
            np.testing.assert_allclose(p, np.flip(p, axis=ax), rtol=1e-4,
                                       atol=1e-6 * float(p.max()), err_msg=f"{name} axis {ax}")
        # radial symmetry: swapping Y and X changes nothing (square pixels)
        np.testing.assert_allclose(p, np.swapaxes(p, -1, -2), rtol=1e-4,
                                   atol=1e-6 * float(p.max()), err_msg=name)


def test_gaussian_fwhm_is_2_3548_sigma():
    for sigma in (2.0, 3.5):
        fwhm = psf_fwhm(gaussian_psf((61, 61), sigma))
        np.testing.assert_allclose(fwhm, 2.3548 * sigma, rtol=0.01)
    # per-axis sigma in 3D, with physical spacing
    fz, fy, fx = psf_fwhm(gaussian_psf((41, 31, 31), (4.0, 2.0, 3.0)), spacing=(0.3, 0.1, 0.1))
    np.testing.assert_allclose([fz, fy, fx], [2.3548 * 4.0 * 0.3, 2.3548 * 0.2, 2.3548 * 0.3],
                               rtol=0.01)
    # sigma 0 along an axis: a delta there
    flat = gaussian_psf((5, 21, 21), (0.0, 2.0, 2.0))
    assert flat[2].sum() == pytest.approx(1.0) and not flat[[0, 1, 3, 4]].any()


@pytest.mark.parametrize("na,wl", [(1.2, 0.52), (1.4, 0.61), (0.75, 0.45)])
def test_widefield_lateral_fwhm_matches_airy(na, wl):
    dx = 0.1 * wl / na  # ~5 samples per FWHM ... fine sampling
    p = widefield_psf((101, 101), na=na, wavelength=wl, n_immersion=N_OIL, pixel_size=dx / 2)
    fy, fx = psf_fwhm(p, spacing=dx / 2)
    theory = abbe_lateral_fwhm(wl, na)
    assert theory == pytest.approx(0.5145 * wl / na)
    assert fy == pytest.approx(theory, rel=0.05)
    assert fx == pytest.approx(theory, rel=0.05)
    assert fy == pytest.approx(0.51 * wl / na, rel=0.05)


def test_widefield_first_zero_matches_rayleigh():
    dx = 0.01
    p = widefield_psf((151, 151), na=NA, wavelength=WL, pixel_size=dx, oversample=1)
    row = p[75, 75:]
    first_min = int(np.argmax(np.diff(row) > 0))  # first sample where the profile rises
    assert first_min * dx == pytest.approx(rayleigh_resolution(WL, NA), abs=1.5 * dx)
    assert row[first_min] < 1e-3 * row[0]


def test_pixel_integration_broadens_coarse_sampling():
    fine = psf_fwhm(widefield_psf((41, 41), na=NA, wavelength=WL, pixel_size=0.1,
                                  oversample=1), 0.1)[0]
    integ = psf_fwhm(widefield_psf((41, 41), na=NA, wavelength=WL, pixel_size=0.1,
                                   oversample=7), 0.1)[0]
    assert integ > fine


@pytest.mark.parametrize("paraxial", [False, True])
def test_widefield_axial_fwhm(paraxial):
    p = widefield_psf((121, 25, 25), na=NA, wavelength=WL, pixel_size=0.05, z_step=0.04,
                      paraxial=paraxial)
    fz = psf_fwhm(p, spacing=(0.04, 0.05, 0.05))[0]
    expected = widefield_axial_fwhm(WL, NA, N_OIL, paraxial=paraxial)
    # The paraxial model has the closed form exactly; the exact-phase one its usual estimate.
    assert fz == pytest.approx(expected, rel=0.03 if paraxial else 0.06)
    # Order of magnitude of 2 n lambda / NA^2, and far wider than laterally.
    assert 0.5 * 2 * N_OIL * WL / NA**2 < fz < 1.2 * 2 * N_OIL * WL / NA**2
    assert fz > 3 * psf_fwhm(p, spacing=(0.04, 0.05, 0.05))[1]


def test_in_focus_plane_of_3d_psf_is_the_2d_psf():
    p3 = widefield_psf((21, 31, 31), na=NA, wavelength=WL, pixel_size=0.08, z_step=0.2)
    p2 = widefield_psf((31, 31), na=NA, wavelength=WL, pixel_size=0.08)
    mid = p3[10] / p3[10].sum()
    np.testing.assert_allclose(mid, p2, rtol=1e-4, atol=1e-7)
    # defocus spreads the light: the peak drops away from focus
    assert p3[10].max() > 3 * p3[0].max()


def test_gibson_lanni_matched_equals_born_wolf():
    kw = dict(na=1.4, wavelength=WL, pixel_size=0.07, z_step=0.15)
    bw = widefield_psf((21, 33, 33), **kw)
    for depth in (0.0, 20.0):
        gl = widefield_psf((21, 33, 33), model="gibson-lanni", depth=depth, **kw)
        np.testing.assert_allclose(gl, bw, rtol=0, atol=1e-4 * float(bw.max()))


def test_gibson_lanni_index_mismatch_shifts_focus_and_lowers_peak():
    kw = dict(na=1.4, wavelength=WL, pixel_size=0.1, z_step=0.1, model="gibson-lanni",
              n_sample=1.33)
    shallow = widefield_psf((101, 21, 21), depth=0.0, **kw)
    deep = widefield_psf((101, 21, 21), depth=10.0, **kw)
    dz = (np.unravel_index(int(deep.argmax()), deep.shape)[0] - 50) * 0.1
    paraxial_shift = 10.0 * (N_OIL / 1.33 - 1.0)
    # Focus nominally deeper (negative z in our convention) by about the focal shift.
    assert -3.0 * paraxial_shift < dz < -0.8 * paraxial_shift
    assert deep.max() < 0.6 * shallow.max()  # spherical aberration spreads the light
    prof = deep.sum(axis=(1, 2))
    assert not np.allclose(prof, prof[::-1], rtol=0.05)  # axially asymmetric


def test_confocal_is_narrower_by_about_sqrt2():
    kw = dict(na=NA, pixel_size=0.02)
    wf = psf_fwhm(widefield_psf((101, 101), wavelength=WL, **kw), 0.02)[0]
    conf = psf_fwhm(confocal_psf((101, 101), excitation_wavelength=WL, emission_wavelength=WL,
                                 **kw), 0.02)[0]
    assert conf / wf == pytest.approx(1 / np.sqrt(2), rel=0.05)
    # A 1 AU pinhole lies between the ideal confocal and widefield.
    one_au = psf_fwhm(confocal_psf((101, 101), excitation_wavelength=WL,
                                   emission_wavelength=WL, pinhole=1.0, **kw), 0.02)[0]
    assert conf < one_au < wf


def test_confocal_axial_sectioning():
    kw = dict(na=NA, pixel_size=0.05, z_step=0.05)
    wf = widefield_psf((81, 21, 21), wavelength=WL, **kw)
    cf = confocal_psf((81, 21, 21), excitation_wavelength=0.488, emission_wavelength=WL, **kw)
    sp = (0.05, 0.05, 0.05)
    assert psf_fwhm(cf, sp)[0] < 0.85 * psf_fwhm(wf, sp)[0]


def test_psf_fwhm_raises_when_profile_does_not_drop():
    flat = np.ones((5, 5), np.float32)
    flat[2, 2] = 1.5
    with pytest.raises(DataError, match="half maximum"):
        psf_fwhm(flat)


def test_psf_fwhm_of_a_triangle_is_exact():
    tri = np.maximum(0, 10 - np.abs(np.arange(41) - 20)).astype(np.float64)
    assert psf_fwhm(np.outer(tri, tri))[0] == pytest.approx(10.0)


@pytest.mark.parametrize("kwargs", [
    dict(na=1.6, wavelength=WL, pixel_size=0.1),           # NA above immersion index
    dict(na=NA, wavelength=-0.5, pixel_size=0.1),
    dict(na=NA, wavelength=WL, pixel_size=0.0),
    dict(na=NA, wavelength=WL, pixel_size=0.1, model="airy"),
    dict(na=NA, wavelength=WL, pixel_size=0.1, oversample=0),
])
def test_widefield_bad_parameters_raise(kwargs):
    with pytest.raises(ConfigError):
        widefield_psf((9, 9), **kwargs)


def test_3d_without_z_step_raises():
    with pytest.raises(ConfigError, match="z_step"):
        widefield_psf((5, 9, 9), na=NA, wavelength=WL, pixel_size=0.1)
