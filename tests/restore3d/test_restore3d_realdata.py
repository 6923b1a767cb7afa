"""Real data: the flowdec bead stack (one real 2.5 µm bead, widefield) and the deconwolf DAPI
stack as a source of isotropic-restoration training planes."""

import numpy as np
import pytest
import tifffile

from fluorecon.methods.classical.psf_beads import psf_from_beads
from fluorecon.simulate.psf import psf_fwhm
from fluorecon.simulate.semisynthetic import iso_pairs

pytestmark = pytest.mark.realdata


def test_psf_from_the_real_bead_stack(shared_data):
    folder = shared_data / "flowdec_widefield_decon" / "bead-25pct"
    stack = tifffile.imread(folder / "data.tif")
    shipped = tifffile.imread(folder / "kernel.tif").astype(np.float32)
    res = psf_from_beads(stack, psf_shape=(41, 41, 41))
    assert res.n_beads == 1  # the stack holds one bead
    assert res.psf.sum() == pytest.approx(1.0, rel=1e-5) and res.psf.min() >= 0
    core = res.psf >= 0.5 * res.psf.max()  # centred on its above-half-maximum core
    centroid = [float((g * res.psf * core).sum() / (res.psf * core).sum())
                for g in np.indices(res.psf.shape)]
    np.testing.assert_allclose(centroid, [20, 20, 20], atol=0.5)
    # The 2.5 µm bead is extended: its image is wider than the PSF along every axis, and
    # laterally symmetric.
    ship = psf_fwhm(shipped)
    assert all(got > want for got, want in zip(res.fwhm, ship))
    assert res.fwhm[1] == pytest.approx(res.fwhm[2], rel=0.05)


def test_iso_pairs_from_the_real_dapi_stack(shared_data):
    stack = tifffile.imread(shared_data / "widefield_dapi_deconwolf" / "dapi_001.tif")
    pairs = iso_pairs(stack.astype(np.float32), 0.300 / 0.130, min_signal_percentile=50)
    assert 0 < len(pairs.inputs) <= 2 * stack.shape[0]
    assert {x.shape for x in pairs.inputs} == {(201, 101), (101, 201)}
    x, y = pairs.inputs[0], pairs.targets[0]
    # Degraded along axis 0: differences along it drop much more than along axis 1
    # (which loses only the pixel noise averaged by the axial blur).
    def hf(a, axis):
        return float(np.mean(np.abs(np.diff(a, axis=axis))))

    assert hf(x, 0) / hf(y, 0) < 0.7 * hf(x, 1) / hf(y, 1)
    assert abs(float(x.mean()) / float(y.mean()) - 1) < 0.02  # intensities kept
