"""Blind unmixing of the real PICASSO spinal-cord image (no ground truth)."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.methods.classical.unmixing import nmf_unmix


@pytest.mark.realdata
def test_nmf_reduces_spillover_correlation(shared_data):
    path = shared_data / "spectral_picasso_spillover" / "mouse_spinalcord_small.tiff"
    if not path.is_file():
        pytest.skip("PICASSO sample absent")
    import tifffile

    img = tifffile.imread(path, key=range(4)).astype(np.float32)
    assert img.shape == (4, 256, 256)
    bg = np.percentile(img.reshape(4, -1), 1, axis=1)
    res = nmf_unmix(img, "CYX", 4, background=bg)
    before = np.corrcoef(img.reshape(4, -1))
    after = np.corrcoef(res.abundances.reshape(4, -1))
    # the 687 -> 740 nm pair (channels 2, 3) is strongly spilled over (r ~ 0.95)
    assert before[2, 3] > 0.9
    assert after[2, 3] < 0.6 * before[2, 3]
    assert res.abundances.min() >= 0 and np.all(np.isfinite(res.abundances))
    np.testing.assert_allclose(res.spectra.sum(axis=0), 1.0, atol=1e-9)
