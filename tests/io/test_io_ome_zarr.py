"""OME-Zarr output is valid NGFF 0.4 on zarr v2, with pyramids; foreign layouts read."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import zarr

from fluorecon.core.errors import AxesError
from fluorecon.core.meta import ImageMeta
from fluorecon.io import read_image, write_image


def _attrs(path):
    return json.loads((path / ".zattrs").read_text())


@pytest.mark.parametrize("axes,shape", [("YX", (40, 50)), ("CZYX", (2, 6, 40, 50))])
def test_multiscales_json_is_ngff_04(tmp_path, axes, shape):
    data = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    px = {a: s for a, s in {"Z": 0.5, "Y": 0.1, "X": 0.2}.items() if a in axes}
    out = write_image(tmp_path / "a.ome.zarr", data, ImageMeta(axes=axes, pixel_size=px),
                      levels=3)
    assert json.loads((out / ".zgroup").read_text()) == {"zarr_format": 2}
    ms = _attrs(out)["multiscales"]
    assert isinstance(ms, list) and len(ms) == 1
    ms = ms[0]
    assert ms["version"] == "0.4"
    assert [a["name"] for a in ms["axes"]] == [a.lower() for a in axes]
    for a, entry in zip(axes, ms["axes"], strict=True):
        assert entry["type"] == {"C": "channel"}.get(a, "space")
        if a in "ZYX":
            assert entry["unit"] == "micrometer"
        else:
            assert "unit" not in entry
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]
    for level, dset in enumerate(ms["datasets"]):
        (tr,) = dset["coordinateTransformations"]
        assert tr["type"] == "scale" and len(tr["scale"]) == len(axes)
        expect = [px.get(a, 1.0) * (2 ** level if a in "YX" else 1) for a in axes]
        assert tr["scale"] == pytest.approx(expect)
        zarray = json.loads((out / dset["path"] / ".zarray").read_text())
        assert zarray["zarr_format"] == 2 and zarray["dimension_separator"] == "/"
        assert zarray["dtype"] == "<u2"
        assert zarray["shape"][-2:] == [shape[-2] // 2 ** level, shape[-1] // 2 ** level]
        assert zarray["shape"][:-2] == list(shape[:-2])


def test_pyramid_levels_are_2x2_means(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 1000, size=(3, 17, 22)).astype(np.float32)
    out = write_image(tmp_path / "p.zarr", data, ImageMeta(axes="ZYX"), levels=2)
    level1 = zarr.open_array(str(out / "1"), mode="r")[...]
    expect = data[:, :16, :22].reshape(3, 8, 2, 11, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(level1, expect, rtol=1e-6)


def test_unknown_pixel_size_is_written_without_unit_and_read_as_unknown(tmp_path):
    out = write_image(tmp_path / "u.zarr", np.ones((8, 9), np.uint8), ImageMeta(axes="YX"))
    axes = _attrs(out)["multiscales"][0]["axes"]
    assert all("unit" not in a for a in axes)
    assert read_image(out)[1].pixel_size == {}


def test_chunks_are_honoured_and_dask_input_streams(tmp_path):
    data = np.arange(4 * 30 * 40, dtype=np.uint16).reshape(4, 30, 40)
    out = write_image(tmp_path / "c.zarr", da.from_array(data, chunks=(2, 30, 40)),
                      ImageMeta(axes="ZYX"), chunks=(1, 16, 16))
    arr = zarr.open_array(str(out / "0"), mode="r")
    assert arr.chunks == (1, 16, 16)
    lazy, _ = read_image(out, lazy=True)
    assert isinstance(lazy, da.Array) and lazy.chunksize == (1, 16, 16)
    np.testing.assert_array_equal(lazy.compute(), data)


def test_reads_ngff_written_by_other_tools_in_nanometres(tmp_path):
    path = tmp_path / "foreign.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("s0", shape=(3, 10, 12), dtype="uint16", chunks=(1, 10, 12))[...] = 7
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "z", "type": "space", "unit": "nanometer"},
                 {"name": "y", "type": "space", "unit": "nanometer"},
                 {"name": "x", "type": "space", "unit": "nanometer"}],
        "datasets": [{"path": "s0", "coordinateTransformations": [
            {"type": "scale", "scale": [250.0, 65.0, 65.0]}]}],
        "coordinateTransformations": [{"type": "scale", "scale": [2.0, 1.0, 1.0]}],
    }]
    data, meta = read_image(path)
    assert data.shape == (3, 10, 12) and (data == 7).all()
    assert meta.axes == "ZYX"
    assert meta.pixel_size == pytest.approx({"Z": 0.5, "Y": 0.065, "X": 0.065})


def test_reads_ngff_05_zarr_v3(tmp_path):
    path = tmp_path / "v3.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("0", shape=(10, 12), dtype="float32", chunks=(5, 6))[...] = 1.5
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "y", "type": "space", "unit": "micrometer"},
                 {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [0.2, 0.2]}]}]}]}
    data, meta = read_image(path)
    assert meta.axes == "YX" and meta.pixel_size == pytest.approx({"Y": 0.2, "X": 0.2})
    assert meta.extra["ngff"] == "0.5" and (data == 1.5).all()


def test_plain_zarr_array_and_unknown_axis_need_axes(tmp_path):
    arr = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(2, 3, 8, 9),
                          dtype="uint8", zarr_format=2)
    arr[...] = 1
    with pytest.raises(AxesError, match="explicit axes"):
        read_image(tmp_path / "plain.zarr")
    data, meta = read_image(tmp_path / "plain.zarr", axes="TZYX")
    assert meta.axes == "TZYX" and data.shape == (2, 3, 8, 9)


def test_sample_and_channel_together_are_refused(tmp_path):
    from fluorecon.core.errors import DataError

    with pytest.raises(DataError, match="NGFF"):
        write_image(tmp_path / "sc.zarr", np.ones((2, 2, 4, 4), np.uint8),
                    ImageMeta(axes="SCYX"))
    assert list(tmp_path.iterdir()) == []
