"""Round-trips of write_image -> read_image for every format, shape and dtype."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile

from fluorecon.core.meta import ImageMeta
from fluorecon.io import image_info, read_image, write_image

SHAPES = {"YX": (24, 33), "ZYX": (5, 24, 33), "CZYX": (2, 5, 24, 33), "TZYX": (3, 4, 24, 33)}
SIZES = {"Z": 0.3, "Y": 0.065, "X": 0.07}
SUFFIXES = [".tif", ".ome.tif", ".zarr", ".npy"]


def _image(axes: str, dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    high = info.max if info else 1000.0
    return (rng.random(SHAPES[axes]) * high).astype(dtype)


def _meta(axes: str, **kw) -> ImageMeta:
    return ImageMeta(axes=axes, pixel_size={a: s for a, s in SIZES.items() if a in axes}, **kw)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("axes", list(SHAPES))
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_roundtrip_preserves_values_dtype_axes_pixel_size(tmp_path, suffix, axes, dtype):
    data = _image(axes, dtype)
    original = data.copy()
    out = write_image(tmp_path / f"img{suffix}", data, _meta(axes))
    np.testing.assert_array_equal(data, original)  # input not modified
    back, meta = read_image(out)
    assert type(back) is np.ndarray
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, data)
    assert meta.axes == axes
    assert set(meta.pixel_size) == set(a for a in SIZES if a in axes)
    for a, size in meta.pixel_size.items():
        assert size == pytest.approx(SIZES[a], rel=1e-6)


@pytest.mark.parametrize("suffix,kind", [(".tif", np.memmap), (".ome.tif", np.memmap),
                                         (".npy", np.memmap), (".zarr", da.Array)])
@pytest.mark.parametrize("axes", ["YX", "ZYX"])
def test_lazy_read_is_not_an_ndarray_and_equals_data(tmp_path, suffix, kind, axes):
    data = _image(axes, "uint16")
    out = write_image(tmp_path / f"img{suffix}", data, _meta(axes))
    lazy, meta = read_image(out, lazy=True)
    assert isinstance(lazy, kind)
    assert lazy.shape == data.shape and meta.axes == axes
    np.testing.assert_array_equal(np.asarray(lazy), data)


def test_lazy_compressed_tiff_is_dask_read_page_by_page(tmp_path):
    data = _image("ZYX", "uint16")
    out = write_image(tmp_path / "c.ome.tif", data, _meta("ZYX"), compression="zlib")
    lazy, _ = read_image(out, lazy=True)
    assert isinstance(lazy, da.Array)
    assert lazy.numblocks[0] == data.shape[0]  # one block per page
    np.testing.assert_array_equal(lazy[2].compute(), data[2])
    np.testing.assert_array_equal(lazy.compute(), data)


def test_lazy_png_defers_decoding(tmp_path):
    from PIL import Image

    data = _image("YX", "uint16")
    Image.fromarray(data).save(tmp_path / "a.png")
    lazy, meta = read_image(tmp_path / "a.png", lazy=True)
    assert isinstance(lazy, da.Array) and meta.axes == "YX"
    np.testing.assert_array_equal(lazy.compute(), data)


@pytest.mark.parametrize("suffix", [".ome.tif", ".zarr", ".npy"])
def test_channel_names_and_time_interval_roundtrip(tmp_path, suffix):
    data = _image("TZYX", "uint16")[:, :2]
    data = np.stack([data, data + 1], axis=1)  # TCZYX
    meta = _meta("TCZYX", time_interval=2.5, channel_names=["dapi", "gfp"])
    back, got = read_image(write_image(tmp_path / f"a{suffix}", data, meta))
    np.testing.assert_array_equal(back, data)
    assert got.axes == "TCZYX"
    assert got.time_interval == pytest.approx(2.5)
    assert got.channel_names == ["dapi", "gfp"]


def test_sample_axis_roundtrips_through_ome_tiff_and_npy(tmp_path):
    data = np.arange(3 * 8 * 9, dtype=np.uint16).reshape(3, 8, 9)
    for suffix in (".ome.tif", ".tif", ".npy", ".zarr"):
        back, meta = read_image(write_image(tmp_path / f"s{suffix}", data, ImageMeta(axes="SYX")))
        assert meta.axes == "SYX", suffix
        np.testing.assert_array_equal(back, data)


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_y_x_not_last_is_transposed_on_write(tmp_path, suffix):
    data = np.arange(8 * 9 * 3, dtype=np.uint8).reshape(8, 9, 3)
    back, meta = read_image(write_image(tmp_path / f"rgb{suffix}", data, ImageMeta(axes="YXC")))
    assert meta.axes == "CYX"
    np.testing.assert_array_equal(back, np.moveaxis(data, -1, 0))


def test_plain_tif_is_imagej_hyperstack_fiji_can_calibrate(tmp_path):
    data = _image("ZYX", "uint16")
    out = write_image(tmp_path / "a.tif", data, _meta("ZYX"))
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and not tif.is_ome
        ij = tif.imagej_metadata
        assert ij["unit"] == "um" and ij["spacing"] == pytest.approx(0.3)
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(1 / 0.07, rel=1e-6)


@pytest.mark.parametrize("dtype,axes", [("float64", "ZYX"), ("int8", "YX"), ("uint16", "CZYX")])
def test_plain_tif_falls_back_to_ome_when_imagej_cannot_store_it(tmp_path, dtype, axes):
    data = _image(axes, dtype) if dtype != "int8" else np.arange(-20, 20, dtype=np.int8).reshape(
        5, 8)
    out = write_image(tmp_path / "a.tif", data, _meta(axes))
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome and not tif.is_imagej
    back, meta = read_image(out)
    np.testing.assert_array_equal(back, data)
    assert back.dtype == data.dtype and meta.axes == axes


def test_reads_imagej_metadata_in_nanometres(tmp_path):
    data = np.ones((4, 6, 7), np.float32)
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 130.0, 1 / 130.0),
                     metadata={"axes": "ZYX", "spacing": 300.0, "unit": "nm"})
    _, meta = read_image(path)
    assert meta.axes == "ZYX"
    assert meta.pixel_size == pytest.approx({"Z": 0.3, "Y": 0.13, "X": 0.13})


def test_reads_ome_tiff_written_by_tifffile_with_units_and_squeezes_singletons(tmp_path):
    data = np.ones((1, 2, 3, 6, 7), np.uint16)  # TCZYX with T=1
    path = tmp_path / "x.ome.tif"
    tifffile.imwrite(path, data, ome=True, photometric="minisblack",
                     metadata={"axes": "TCZYX", "PhysicalSizeX": 100.0,
                               "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 0.1,
                               "PhysicalSizeZ": 0.5})
    back, meta = read_image(path)
    assert back.shape == (2, 3, 6, 7)
    assert meta.axes == "CZYX"
    assert meta.pixel_size == pytest.approx({"X": 0.1, "Y": 0.1, "Z": 0.5})


def test_plain_tiff_resolution_in_centimetres_is_used_and_72_dpi_ignored(tmp_path):
    data = np.ones((6, 7), np.uint16)
    tifffile.imwrite(tmp_path / "cm.tif", data, resolution=(1e4 / 0.2, 1e4 / 0.2),
                     resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "dpi.tif", data, resolution=(72, 72), resolutionunit="INCH")
    assert read_image(tmp_path / "cm.tif")[1].pixel_size == pytest.approx({"X": 0.2, "Y": 0.2})
    assert read_image(tmp_path / "dpi.tif")[1].pixel_size == {}


def test_plain_multiseries_tiff_is_stacked_and_explicit_axes_override(tmp_path):
    path = tmp_path / "chans.tif"
    planes = [np.full((6, 7), i, np.uint16) for i in range(4)]
    with tifffile.TiffWriter(path) as tw:
        for plane in planes:
            tw.write(plane, photometric="minisblack")
    back, meta = read_image(path, axes="CYX")
    assert meta.axes == "CYX" and back.shape == (4, 6, 7)
    np.testing.assert_array_equal(back[:, 0, 0], [0, 1, 2, 3])


def test_axes_override_keeps_pixel_sizes_only_on_same_dimension(tmp_path):
    out = write_image(tmp_path / "a.ome.tif", _image("ZYX", "uint16"), _meta("ZYX"))
    _, meta = read_image(out, axes="TYX")
    assert meta.axes == "TYX"
    assert meta.pixel_size == pytest.approx({"Y": SIZES["Y"], "X": SIZES["X"]})


@pytest.mark.parametrize("mode,dtype,shape,axes", [
    ("L", "uint8", (9, 11), "YX"), ("I;16", "uint16", (9, 11), "YX"),
    ("RGB", "uint8", (9, 11, 3), "YXC")])
def test_png_read(tmp_path, mode, dtype, shape, axes):
    from PIL import Image

    rng = np.random.default_rng(1)
    data = (rng.random(shape) * np.iinfo(dtype).max).astype(dtype)
    Image.fromarray(data).save(tmp_path / "a.png")
    back, meta = read_image(tmp_path / "a.png")
    assert back.dtype == np.dtype(dtype) and meta.axes == axes and meta.pixel_size == {}
    np.testing.assert_array_equal(back, data)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_dask_input_is_written_chunk_by_chunk_with_progress(tmp_path, suffix):
    data = _image("ZYX", "uint16")
    lazy = da.from_array(data, chunks=(1, 12, 33))
    calls: list[tuple[int, int]] = []
    out = write_image(tmp_path / f"d{suffix}", lazy, _meta("ZYX"),
                      progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_array_equal(read_image(out)[0], data)
    assert calls and calls[-1][0] == calls[-1][1]
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_image_info_reads_metadata_only(tmp_path):
    data = _image("CZYX", "uint16")
    out = write_image(tmp_path / "a.ome.tif", data, _meta("CZYX"))
    info = image_info(out)
    assert info["shape"] == data.shape and info["dtype"] == "uint16"
    assert info["axes"] == "CZYX" and info["format"] == "ome-tiff"
    assert info["pixel_size"] == pytest.approx({a: SIZES[a] for a in "ZYX"})
    assert info["nbytes"] == data.nbytes and info["size_bytes"] == out.stat().st_size
    zinfo = image_info(write_image(tmp_path / "a.zarr", data, _meta("CZYX")))
    assert zinfo["format"] == "ome-zarr" and zinfo["size_bytes"] > 0


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_each_dask_chunk_is_computed_once_when_writing(tmp_path, suffix):
    data = _image("ZYX", "uint16")
    calls: list[int] = []

    def count(block, block_info=None):
        calls.append(block_info[0]["chunk-location"][0])
        return block

    lazy = da.from_array(data, chunks=(2, 24, 33)).map_blocks(count, dtype=data.dtype)
    out = write_image(tmp_path / f"once{suffix}", lazy, _meta("ZYX"),
                      **({"chunks": (1, 8, 8)} if suffix == ".zarr" else {}))
    np.testing.assert_array_equal(read_image(out)[0], data)
    assert sorted(calls) == [0, 1, 2]  # 5 planes in chunks of 2, 2, 1


def test_slab_bounds_align_to_input_and_output_chunks():
    from fluorecon.io._blocks import slab_bounds

    lazy = da.zeros((10, 4, 4), chunks=((3, 3, 4), 4, 4))
    assert slab_bounds(lazy) == [(0, 3), (3, 6), (6, 10)]
    assert slab_bounds(lazy, align=2) == [(0, 6), (6, 10)]
    assert slab_bounds(np.zeros((10, 4, 4)), align=4, max_bytes=4 * 16 * 8) == [(0, 4), (4, 8),
                                                                                (8, 10)]
