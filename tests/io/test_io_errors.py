"""Every kind of bad input gives its own FluoreconError with a one-line message."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from fluorecon.core.errors import (
    AxesError,
    ConfigError,
    DataError,
    FluoreconError,
    InputFileError,
)
from fluorecon.core.meta import ImageMeta
from fluorecon.io import image_info, read_image, write_image


def _raises(exc_type, fn, *args, match=None, **kwargs):
    with pytest.raises(exc_type, match=match) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert isinstance(info.value, FluoreconError)
    assert text and "\n" not in text, text
    return text


def _tif(tmp_path, data, name="a.tif"):
    path = tmp_path / name
    tifffile.imwrite(path, data, photometric="minisblack")
    return path


def test_missing_file_message(tmp_path):
    path = tmp_path / "missing.tif"
    text = _raises(InputFileError, read_image, path)
    assert text == (f"Got path '{path}' which does not exist; need an existing image file. "
                    "Check the path.")
    _raises(InputFileError, image_info, path)


@pytest.mark.parametrize("name", ["a.jpg", "a", "a.tif.bak"])
def test_unsupported_suffix(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00" * 16)
    _raises(InputFileError, read_image, tmp_path / name, match="unsupported suffix")


@pytest.mark.parametrize("suffix", [".tif", ".ome.tif", ".png", ".npy"])
def test_text_file_renamed_to_image(tmp_path, suffix):
    path = tmp_path / f"notes{suffix}"
    path.write_text("these are my notes, not an image\n" * 20)
    _raises(InputFileError, read_image, path)
    _raises(InputFileError, image_info, path)


@pytest.mark.parametrize("suffix", [".tif", ".png", ".npy"])
def test_empty_file(tmp_path, suffix):
    (tmp_path / f"e{suffix}").write_bytes(b"")
    _raises(InputFileError, read_image, tmp_path / f"e{suffix}", match="empty file")


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff(tmp_path, lazy, compression):
    path = tmp_path / "t.tif"
    data = np.random.default_rng(0).integers(0, 4000, (4, 64, 64)).astype(np.uint16)
    tifffile.imwrite(path, data, photometric="minisblack", compression=compression)
    raw = path.read_bytes()
    # ImageJ/shaped tifffile files keep IFDs first: cut into the pixel data of the last page
    path.write_bytes(raw[: len(raw) - 3000])
    _raises(InputFileError, read_image, path, lazy=lazy, match="truncated|cannot be read")


def test_corrupt_tiff_header(tmp_path):
    path = _tif(tmp_path, np.ones((8, 8), np.uint16))
    raw = bytearray(path.read_bytes())
    raw[4:8] = (10**9).to_bytes(4, "little")  # first IFD offset far beyond the end
    path.write_bytes(bytes(raw))
    _raises(InputFileError, read_image, path)


def test_truncated_png_and_npy(tmp_path):
    from PIL import Image

    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 251).save(
        tmp_path / "a.png")
    raw = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(raw[: len(raw) // 2])
    _raises(InputFileError, read_image, tmp_path / "a.png")
    np.save(tmp_path / "a.npy", np.ones((16, 16), np.float32))
    raw = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(raw[:-100])
    _raises(InputFileError, read_image, tmp_path / "a.npy", match="truncated")


@pytest.mark.parametrize("array", [np.ones((4, 4), np.complex64), np.ones((4, 4), np.int64),
                                   np.array([["a", "b"], ["c", "d"]])])
def test_unsupported_dtype(tmp_path, array):
    np.save(tmp_path / "a.npy", array)
    _raises(DataError, read_image, tmp_path / "a.npy", match="dtype")
    _raises(DataError, write_image, tmp_path / "o.npy", array, ImageMeta(axes="YX"))


def test_pickled_object_array_is_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[object(), None]], dtype=object), allow_pickle=True)
    _raises(DataError, read_image, tmp_path / "a.npy", match="dtype object")


@pytest.mark.parametrize("suffix", [".tif", ".npy", ".zarr"])
def test_nan_and_inf_are_refused_on_eager_reads_and_checked_lazily_on_request(tmp_path, suffix):
    data = np.ones((3, 8, 8), np.float32)
    data[1, 2, 3] = np.nan
    data[2, 0, 0] = np.inf
    path = write_image(tmp_path / f"n{suffix}", data, ImageMeta(axes="ZYX"))
    _raises(DataError, read_image, path, match="NaN")
    lazy, _ = read_image(path, lazy=True)  # not scanned by default
    assert lazy.shape == data.shape
    _raises(DataError, read_image, path, lazy=True, check_finite=True, match="NaN")
    back, _ = read_image(path, check_finite=False)
    assert np.isnan(back[1, 2, 3])


@pytest.mark.parametrize("shape", [(0, 5), (5, 0, 3), (7,)])
def test_empty_or_1d_arrays(tmp_path, shape):
    np.save(tmp_path / "a.npy", np.ones(shape, np.uint8))
    _raises(DataError, read_image, tmp_path / "a.npy")


def test_axes_errors(tmp_path):
    path = _tif(tmp_path, np.ones((2, 3, 8, 8), np.uint16))  # plain 4D TIFF
    text = _raises(AxesError, read_image, path, match="explicit axes")
    assert "(2, 3, 8, 8)" in text
    _raises(AxesError, read_image, path, axes="ZYX", match="4 dimensions")
    _raises(AxesError, read_image, path, axes="CQYX", match="unknown axis 'Q'")
    _raises(AxesError, read_image, path, axes="ZZYX", match="repeated")
    data, meta = read_image(path, axes="czyx")
    assert meta.axes == "CZYX" and data.shape == (2, 3, 8, 8)
    np.save(tmp_path / "a.npy", np.ones((2, 3, 8, 8), np.uint8))
    _raises(AxesError, read_image, tmp_path / "a.npy")


def test_ome_tiff_axis_without_fluorecon_meaning_needs_axes(tmp_path):
    path = tmp_path / "angles.ome.tif"
    tifffile.imwrite(path, np.ones((3, 8, 8), np.uint8), ome=True, photometric="minisblack",
                     metadata={"axes": "AYX"})
    with tifffile.TiffFile(path) as tif:
        stored = tif.series[0].axes
    if set(stored) <= set("TZCYXSQ"):
        pytest.skip(f"tifffile stored the modulo axis as {stored!r}")
    _raises(AxesError, read_image, path, match="no fluorecon meaning")
    assert read_image(path, axes="TYX")[1].axes == "TYX"


def test_zarr_without_multiscales_and_file_named_zarr(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=2)
    group.attrs["something"] = 1
    _raises(InputFileError, read_image, tmp_path / "g.zarr", match="multiscales")
    (tmp_path / "f.zarr").write_bytes(b"not a folder")
    _raises(InputFileError, read_image, tmp_path / "f.zarr", match="folder")
    (tmp_path / "empty.zarr").mkdir()
    _raises(InputFileError, read_image, tmp_path / "empty.zarr")


def test_stale_or_broken_npy_sidecar(tmp_path):
    path = write_image(tmp_path / "a.npy", np.ones((3, 4, 5), np.uint8), ImageMeta(axes="ZYX"))
    np.save(path, np.ones((4, 5), np.uint8))  # replaced by another program
    _raises(InputFileError, read_image, path, match="sidecar")
    (tmp_path / "a.npy.json").write_text("{not json")
    _raises(InputFileError, read_image, path, match="sidecar")


def test_write_argument_errors(tmp_path):
    data = np.ones((3, 8, 8), np.uint16)
    _raises(AxesError, write_image, tmp_path / "a.tif", data, ImageMeta(axes="YX"))
    _raises(ConfigError, write_image, tmp_path / "a.tif", data, ImageMeta(axes="ZYX"),
            chunks=(1, 8, 8))
    _raises(ConfigError, write_image, tmp_path / "a.tif", data, ImageMeta(axes="ZYX"), levels=2)
    _raises(ConfigError, write_image, tmp_path / "a.npy", data, ImageMeta(axes="ZYX"),
            compression="zlib")
    _raises(ConfigError, write_image, tmp_path / "a.zarr", data, ImageMeta(axes="ZYX"),
            compression="rar")
    _raises(DataError, write_image, tmp_path / "a.tif", data, ImageMeta(axes="ZYX"),
            compression="no-such-codec")
    _raises(DataError, write_image, tmp_path / "a.tif", np.ones((0, 8), np.uint8),
            ImageMeta(axes="YX"))
    assert list(tmp_path.iterdir()) == []
