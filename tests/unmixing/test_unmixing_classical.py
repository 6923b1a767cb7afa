"""Spectral simulation and classical unmixing: NNLS, LS, phasor, NMF."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls

from fluorecon.core.errors import AxesError, ConfigError, DataError
from fluorecon.methods.classical.unmixing import (
    LinearUnmixing,
    NMFUnmixing,
    linear_unmix,
    nmf_unmix,
    nnls_batch,
    phasor_coordinates,
    phasor_unmix,
    spectrum_phasor,
)
from fluorecon.simulate.camera import CameraModel, camera_inverse
from fluorecon.simulate.spectra import (
    abundance_maps,
    emission_spectrum,
    mixing_matrix,
    simulate_spectral,
    spectral_detector,
)

FLUORS = ["DAPI", "EGFP", "mCherry"]


def _sample(shape=(48, 48), photons=400.0, seed=0, **kw):
    a = abundance_maps(shape, 3, seed=seed)
    s = simulate_spectral(a, FLUORS, spectral_detector(420, 700, 16), photons=photons,
                          seed=seed, **kw)
    return s, camera_inverse(s.image, s.camera)


def test_emission_peak_and_fwhm():
    lam = np.arange(400.0, 800.0, 0.1)
    s = emission_spectrum("mCherry", lam)
    assert lam[np.argmax(s)] == pytest.approx(610.0, abs=0.2)
    half = lam[s >= 0.5]
    assert half.max() - half.min() == pytest.approx(48.0, abs=1.0)
    # red tail: more width on the long-wavelength side
    assert half.max() - 610.0 > 610.0 - half.min()


def test_mixing_matrix_columns_are_fractions():
    m = mixing_matrix(FLUORS, spectral_detector(350, 900, 20))
    np.testing.assert_allclose(m.sum(axis=0), 1.0, atol=2e-3)
    part = mixing_matrix(FLUORS, spectral_detector(500, 560, 3))
    assert np.all(part.sum(axis=0) < 1.0)


def test_nnls_batch_matches_scipy(rng):
    m = np.abs(rng.normal(size=(10, 4)))
    y = m @ np.abs(rng.normal(size=(4, 300))) + rng.normal(size=(10, 300))
    a, _, viol = nnls_batch(m.T @ m, m.T @ y, tol=1e-10, max_iter=5000)
    ref = np.stack([nnls(m, y[:, i])[0] for i in range(y.shape[1])], axis=1)
    np.testing.assert_allclose(a, ref, atol=1e-6)
    assert viol <= 1e-10 and a.min() >= 0


@pytest.mark.parametrize("shape", [(40, 40), (6, 24, 24)])
def test_nnls_recovers_abundances(shape):
    s, y = _sample(shape=shape)
    axes = s.axes
    res = linear_unmix(y, s.mixing, axes)
    assert res.abundances.shape == s.abundances.shape
    assert res.abundances.dtype == np.float32 and res.abundances.min() >= 0
    err = np.sqrt(np.mean((res.abundances - s.abundances) ** 2, axis=tuple(range(1, y.ndim))))
    assert np.all(err < 0.15 * 400.0)
    # much better than reading each dye from its peak channel (the crosstalk baseline)
    peak = y[np.argmax(s.mixing, axis=0)] / s.mixing.max(axis=0).reshape((-1,) + (1,) * len(shape))
    err_peak = np.sqrt(np.mean((peak - s.abundances) ** 2, axis=tuple(range(1, y.ndim))))
    assert np.mean(err) < 0.6 * np.mean(err_peak)


def test_noise_free_unmixing_is_exact():
    s, _ = _sample()
    for method in ("nnls", "ls"):
        res = linear_unmix(s.photons, s.mixing, "CYX", method=method)
        np.testing.assert_allclose(res.abundances, s.abundances, atol=1e-2)
        assert float(res.residual.max()) < 1e-2
    res = phasor_unmix(s.photons, s.mixing, "CYX")
    np.testing.assert_allclose(res.abundances, s.abundances, atol=0.05)


def test_background_and_axes_order():
    s, y = _sample()
    yt = np.moveaxis(y + 7.0, 0, -1)  # YXC
    res = linear_unmix(yt, s.mixing, "YXC", background=7.0)
    ref = linear_unmix(y, s.mixing, "CYX")
    np.testing.assert_allclose(np.moveaxis(res.abundances, -1, 0), ref.abundances, atol=1e-3)


def test_input_not_modified_and_errors():
    s, y = _sample()
    before = y.copy()
    LinearUnmixing(s.mixing).predict(y, "CYX")
    np.testing.assert_array_equal(y, before)
    with pytest.raises(AxesError):
        linear_unmix(y[0], s.mixing, "YX")
    with pytest.raises(DataError):
        linear_unmix(y, s.mixing[:5], "CYX")
    with pytest.raises(DataError):
        linear_unmix(y, np.hstack([s.mixing, s.mixing[:, :1]]), "CYX")
    with pytest.raises(ConfigError):
        LinearUnmixing(s.mixing, method="fcls")


def test_phasor_of_pure_spectra():
    assert spectrum_phasor([0, 1, 0, 0]) == (0.0, 1.0)
    assert spectrum_phasor([1, 0, 0, 0]) == (1.0, 0.0)
    g, s = spectrum_phasor([1, 1, 1, 1])
    assert abs(g) < 1e-12 and abs(s) < 1e-12
    # image of one pure spectrum: every pixel sits on its reference point
    m = mixing_matrix(["EGFP"], spectral_detector(450, 650, 8))[:, 0]
    img = m[:, None, None] * np.linspace(1, 50, 20).reshape(1, 4, 5)
    gi, si, total = phasor_coordinates(img, "CYX")
    gr, sr = spectrum_phasor(m)
    np.testing.assert_allclose(gi, gr, atol=1e-6)
    np.testing.assert_allclose(si, sr, atol=1e-6)
    np.testing.assert_allclose(total, img.sum(0), rtol=1e-5)


def test_phasor_unmixing_within_tolerance():
    s, y = _sample(photons=800.0)
    res = phasor_unmix(y, s.mixing, "CYX")
    rel = np.sqrt(np.mean((res.abundances - s.abundances) ** 2)) / 800.0
    assert rel < 0.06
    with pytest.raises(ConfigError):
        phasor_unmix(y, s.mixing, "CYX", harmonics=0)


def test_nmf_blind_recovers_spectra():
    a = abundance_maps((64, 64), 2, seed=3, kinds=["nuclei", "filaments"], overlap=0.0)
    s = simulate_spectral(a, ["EGFP", "mCherry"], spectral_detector(480, 680, 10),
                          photons=500.0, seed=3, camera=CameraModel.ideal())
    res = nmf_unmix(s.image, "CYX", 2)
    truth = s.mixing / s.mixing.sum(axis=0)
    assert np.abs(res.spectra - truth).max() < 0.05  # ordered by wavelength: EGFP first
    rel = np.sqrt(np.mean((res.abundances - s.abundances) ** 2)) / 500.0
    assert rel < 0.08
    obj = res.info["objective"]
    assert all(b <= a_ + 1e-12 for a_, b in zip(obj, obj[1:]))  # HALS never increases


def test_nmf_semi_blind_keeps_known_spectrum():
    s, y = _sample(autofluorescence=30.0)
    known = s.mixing[:, :1]
    model = NMFUnmixing(n_components=4, known_spectra=known).fit(y, "CYX")
    assert model.spectra_ is not None
    np.testing.assert_allclose(model.spectra_[:, 0], known[:, 0] / known.sum(), atol=1e-9)
    out = model.predict(y, "CYX")
    assert out.abundances.shape[0] == 4
