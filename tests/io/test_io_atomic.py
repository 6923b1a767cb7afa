"""Atomic writes, overwrite protection and input protection."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fluorecon.core.errors import OutputExistsError
from fluorecon.core.meta import ImageMeta
from fluorecon.io import OutputPathError, read_image, write_image
from fluorecon.io import npy as npy_module
from fluorecon.io import ome_zarr as zarr_module
from fluorecon.io import tiff as tiff_module

SUFFIXES = [".tif", ".ome.tif", ".zarr", ".npy"]
META = ImageMeta(axes="ZYX", pixel_size={"Z": 0.4, "Y": 0.1, "X": 0.1})


def _data(value: int) -> np.ndarray:
    return np.full((3, 8, 9), value, dtype=np.uint16)


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_write_leaves_no_temporary_files(tmp_path, suffix):
    write_image(tmp_path / f"a{suffix}", _data(1), META)
    names = _listing(tmp_path)
    assert not [n for n in names if n.startswith(".")]
    assert names[0] == f"a{suffix}"


class _Boom(RuntimeError):
    pass


def _failing_after_partial_write(original):
    """Wrap a format writer: let it write part of the data, then fail."""

    def wrapper(*args, **kwargs):
        def progress(done, total):
            raise _Boom("disk unplugged")

        kwargs["progress"] = progress
        return original(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("suffix,module,name", [
    (".tif", tiff_module, "write_tiff"), (".ome.tif", tiff_module, "write_tiff"),
    (".zarr", zarr_module, "write_ome_zarr"), (".npy", npy_module, "write_npy")])
def test_failure_midway_keeps_old_file_and_removes_temporaries(tmp_path, monkeypatch, suffix,
                                                               module, name):
    path = tmp_path / f"a{suffix}"
    write_image(path, _data(1), META)
    before = _listing(tmp_path)
    monkeypatch.setattr(module, name, _failing_after_partial_write(getattr(module, name)))
    with pytest.raises(_Boom):
        write_image(path, _data(2), META, overwrite=True)
    assert _listing(tmp_path) == before
    back, meta = read_image(path)
    np.testing.assert_array_equal(back, _data(1))
    assert meta.pixel_size == META.pixel_size


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_existing_output_is_refused_then_replaced_with_overwrite(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    write_image(path, _data(1), META)
    with pytest.raises(OutputExistsError) as info:
        write_image(path, _data(2), META)
    assert "\n" not in str(info.value) and "overwrite" in str(info.value)
    np.testing.assert_array_equal(read_image(path)[0], _data(1))
    write_image(path, _data(2), META, overwrite=True)
    np.testing.assert_array_equal(read_image(path)[0], _data(2))
    assert not [n for n in _listing(tmp_path) if n.startswith(".")]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_input_is_never_overwritten_even_with_overwrite(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    write_image(path, _data(1), META)
    link = tmp_path / f"link{suffix}"
    os.symlink(path, link)
    for target, inp in [(path, path), (link, path), (path, link),
                        (tmp_path / "sub" / ".." / path.name, path)]:
        with pytest.raises(OutputExistsError) as info:
            write_image(target, _data(2), META, overwrite=True, inputs=[inp])
        assert "\n" not in str(info.value) and "input" in str(info.value)
    np.testing.assert_array_equal(read_image(path)[0], _data(1))


def test_folder_containing_an_input_is_protected(tmp_path):
    out = tmp_path / "a.zarr"
    write_image(out, _data(1), META)
    with pytest.raises(OutputExistsError):
        write_image(out, _data(2), META, overwrite=True, inputs=[out / "0"])


def test_missing_folders_are_created_and_bad_suffix_refused(tmp_path):
    out = write_image(tmp_path / "new" / "deeper" / "a.tif", _data(1), META)
    np.testing.assert_array_equal(read_image(out)[0], _data(1))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="cannot be created"):
        write_image(tmp_path / "file" / "a.tif", _data(1), META)
    with pytest.raises(OutputPathError, match="suffix"):
        write_image(tmp_path / "a.png", _data(1), META)
    assert _listing(tmp_path) == ["file", "new"]


def test_overwriting_a_file_with_a_zarr_folder_of_same_name(tmp_path):
    path = tmp_path / "a.zarr"
    path.write_bytes(b"old")
    write_image(path, _data(3), META, overwrite=True)
    assert path.is_dir()
    np.testing.assert_array_equal(read_image(path)[0], _data(3))
    assert not [n for n in _listing(tmp_path) if n.startswith(".")]
