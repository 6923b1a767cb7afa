"""Reading the real datasets in ../shared/data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from fluorecon.core.meta import ImageMeta
from fluorecon.io import image_info, read_image, write_image

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

pytestmark = pytest.mark.realdata


def _need(relative: str) -> Path:
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"real data {relative} not available")
    return path


@pytest.mark.parametrize("relative", ["denoise_w2s_fmd_8bit/w2s/input_avg1_020_1.tif",
                                      "denoise_w2s_fmd_8bit/w2s/target_avg400_020_1.tif"])
def test_w2s_imagej_tif(relative):
    data, meta = read_image(_need(relative))
    assert data.shape == (512, 512) and data.dtype == np.uint8 and meta.axes == "YX"
    assert meta.extra["tiff_kind"] == "imagej"
    assert data.std() > 0
    lazy, _ = read_image(_need(relative), lazy=True)
    assert isinstance(lazy, np.memmap)
    np.testing.assert_array_equal(np.asarray(lazy), data)


def test_fmd_png():
    data, meta = read_image(_need("denoise_w2s_fmd_8bit/fmd/image_R_1_001.png"))
    assert data.shape == (512, 512) and data.dtype == np.uint8 and meta.axes == "YX"
    assert data.std() > 0


def test_deconwolf_dapi_stack_values_by_value():
    path = _need("widefield_dapi_deconwolf/dapi_001.tif")
    data, meta = read_image(path)
    assert data.shape == (40, 201, 101) and data.dtype == np.uint16 and meta.axes == "ZYX"
    assert (int(data.min()), int(data.max())) == (1758, 21980)  # as in SOURCE.md, no rescale
    info = image_info(path)
    assert info["shape"] == (40, 201, 101) and info["axes"] == "ZYX"
    lazy, _ = read_image(path, lazy=True)
    assert isinstance(lazy, (np.memmap, da.Array))
    np.testing.assert_array_equal(np.asarray(lazy[17]), data[17])


def test_spectral_int16_and_multichannel_pages():
    data, meta = read_image(_need("spectral_picasso_spillover/LMNB1_source.tiff"))
    assert data.shape == (256, 256) and data.dtype == np.int16 and meta.axes == "YX"
    chans, cmeta = read_image(_need("spectral_picasso_spillover/mouse_spinalcord_small.tiff"),
                              axes="CYX")
    assert chans.shape == (4, 256, 256) and chans.dtype == np.uint16 and cmeta.axes == "CYX"
    assert int(chans.max()) <= 4095  # 12-bit camera
    assert len({float(c.mean()) for c in chans}) == 4  # four distinct pages, not one repeated


def test_imagej_psf_spacing_in_nanometres():
    _, meta = read_image(_need("flowdec_widefield_decon/psfs/psfgen1.tif"))
    assert meta.axes == "ZYX"
    assert meta.pixel_size == pytest.approx({"Z": 0.25, "Y": 0.1, "X": 0.1})


def test_real_stack_roundtrips_through_every_writer(tmp_path):
    data, _ = read_image(_need("widefield_dapi_deconwolf/dapi_001.tif"))
    meta = ImageMeta(axes="ZYX", pixel_size={"Z": 0.3, "Y": 0.13, "X": 0.13})
    for suffix in (".tif", ".ome.tif", ".zarr", ".npy"):
        back, got = read_image(write_image(tmp_path / f"dapi{suffix}", data, meta))
        np.testing.assert_array_equal(back, data)
        assert got.pixel_size == pytest.approx(meta.pixel_size)
