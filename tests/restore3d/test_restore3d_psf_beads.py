"""PSF from beads: a known PSF is recovered (FWHM within 5 %, sub-pixel positions), and
unusable beads are rejected."""

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.core import ConfigError, DataError
from fluorecon.methods.classical.psf_beads import psf_from_beads
from fluorecon.simulate.psf import gaussian_psf, psf_fwhm, widefield_psf


def _bead_image(shape, psf, centres, *, photons, background=20.0, seed=0):
    """Point beads at sub-pixel ``centres`` imaged with ``psf``, Poisson noise."""
    rng = np.random.default_rng(seed)
    img = np.full(shape, background, np.float64)
    half = np.array(psf.shape) // 2
    for c in centres:
        ic = np.round(c).astype(int)
        p = np.clip(ndimage.shift(psf.astype(np.float64), c - ic, order=3, mode="constant"), 0,
                    None)
        sl = tuple(slice(i - h, i - h + s) for i, h, s in zip(ic, half, psf.shape))
        img[sl] += p * photons * rng.lognormal(0, 0.15)
    return rng.poisson(img).astype(np.float32)


def _grid_centres(shape, box, n_per_axis, rng):
    """Well separated sub-pixel centres on a jittered grid, boxes inside the image."""
    axes = [np.linspace(b // 2 + 5, s - b // 2 - 6, k) for s, b, k in zip(shape, box, n_per_axis)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(shape))
    return grid + rng.uniform(-0.5, 0.5, grid.shape)


@pytest.mark.parametrize("case", ["2d-gauss", "3d-gauss", "2d-widefield"])
def test_recovers_a_known_psf(case):
    rng = np.random.default_rng(1)
    if case == "2d-gauss":
        psf, shape, spacing, n = gaussian_psf((15, 15), 1.3), (128, 128), (0.1, 0.1), (4, 4)
    elif case == "3d-gauss":
        psf, shape, spacing, n = (gaussian_psf((21, 13, 13), (2.5, 1.2, 1.2)), (44, 90, 90),
                                  (0.3, 0.1, 0.1), (1, 3, 3))
    else:
        psf = widefield_psf((21, 21), na=1.2, wavelength=0.52, pixel_size=0.065)
        shape, spacing, n = (140, 140), (0.065, 0.065), (4, 4)
    centres = _grid_centres(shape, psf.shape, n, rng)
    img = _bead_image(shape, psf, centres, photons=3e4)
    before = img.copy()
    res = psf_from_beads(img, psf_shape=psf.shape, spacing=spacing)
    assert np.array_equal(img, before)
    assert res.n_beads == len(centres)
    assert res.psf.shape == psf.shape and res.psf.dtype == np.float32
    assert res.psf.sum() == pytest.approx(1.0, rel=1e-5) and res.psf.min() >= 0
    assert np.unravel_index(res.psf.argmax(), psf.shape) == tuple(s // 2 for s in psf.shape)
    true = psf_fwhm(psf, spacing)
    for got, want in zip(res.fwhm, true):
        assert got == pytest.approx(want, rel=0.05), (res.fwhm, true)
    # Sub-pixel localisation: positions within 0.15 px of the truth.
    order = np.lexsort(centres.T[::-1])
    found = res.positions[np.lexsort(res.positions.T[::-1])]
    assert np.max(np.abs(found - centres[order])) < 0.15
    assert "beads averaged" in res.summary()


def test_rejects_border_neighbour_and_aggregate_beads():
    psf = gaussian_psf((15, 15), 1.3)
    centres = np.array([[30.2, 30.4], [30.1, 90.3], [90.6, 30.2], [90.0, 90.0],  # good
                        [8.0, 60.0],                   # box (+ margin) leaves the image
                        [60.0, 60.0], [63.0, 64.0]])   # a close pair
    img = _bead_image((128, 128), psf, centres, photons=3e4)
    # An aggregate: 5x brighter than the others.
    img += _bead_image((128, 128), psf, [[110.0, 60.0]], photons=1.5e5, background=0.0)
    res = psf_from_beads(img, psf_shape=15)
    assert res.n_beads == 4
    assert res.rejected["border"] == 1 and res.rejected["neighbour"] == 2
    assert res.rejected["brightness"] == 1
    limited = psf_from_beads(img, psf_shape=15, max_beads=2)
    assert limited.n_beads == 2 and limited.rejected["max_beads"] == 2


def test_errors_are_one_line():
    flat = np.random.default_rng(0).poisson(20, (64, 64)).astype(np.float32)
    with pytest.raises(DataError, match="no bead above") as exc:
        psf_from_beads(flat, psf_shape=15)
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError):
        psf_from_beads(flat, psf_shape=(15, 15, 15))
    with pytest.raises(DataError):
        psf_from_beads(np.zeros((4, 64, 64, 2), np.float32), psf_shape=15)
