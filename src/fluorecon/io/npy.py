"""NumPy ``.npy`` reading and writing, with a JSON sidecar for axes and pixel sizes.

A ``.npy`` file stores only shape and dtype. fluorecon writes the image metadata next to
it as ``<name>.npy.json`` (an :class:`~fluorecon.core.meta.ImageMeta` as JSON plus the
shape it describes); reading uses that sidecar when present and consistent. Without one,
2D data is ``YX`` and 3D data ``ZYX``; other shapes need ``axes``. Pickled object arrays
are never loaded (``allow_pickle=False``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from fluorecon.core.errors import InputFileError, message
from fluorecon.core.meta import ImageMeta
from fluorecon.io._blocks import slab_bounds
from fluorecon.io._header import Header
from fluorecon.io.atomic import fsync_file

SIDECAR_SUFFIX = ".json"


def sidecar_path(path: Path) -> Path:
    """Return the metadata sidecar of a ``.npy`` file: ``<name>.npy.json``."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_header(path: Path, fmt: str) -> Header:
    """Read shape and dtype from the ``.npy`` header (and the sidecar, if any)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
    except (ValueError, OSError, SyntaxError) as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputFileError(message(f"'{path}' which is not a valid .npy file ({first})",
                                     "a file written by numpy.save",
                                     "Check the file is a NumPy array file.")) from None
    nbytes = int(np.prod(shape)) * dtype.itemsize if dtype.itemsize else 0
    if not dtype.hasobject and offset + nbytes > path.stat().st_size:
        raise InputFileError(message(f"'{path}' which is truncated ({path.stat().st_size} bytes, "
                                     f"need {offset + nbytes})", "a complete .npy file",
                                     "Copy or write the file again."))
    shape = tuple(int(s) for s in shape)
    meta = _read_sidecar(path, shape)

    def load(lazy: bool) -> Any:
        try:
            arr = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise InputFileError(message(f"'{path}' which cannot be loaded ({first})",
                                         "a valid .npy file", "Write the file again.")) from None
        return arr

    if meta is None:
        axes = {2: "YX", 3: "ZYX"}.get(len(shape))
        return Header(format=fmt, shape=shape, dtype=dtype, axes=axes, load=load,
                      axes_note="a .npy file without sidecar stores no axes for data with "
                                f"{len(shape)} dimensions",
                      extra={"fortran_order": bool(fortran)} if fortran else {})
    return Header(format=fmt, shape=shape, dtype=dtype, axes=meta.axes, load=load,
                  pixel_size=dict(meta.pixel_size), time_interval=meta.time_interval,
                  channel_names=meta.channel_names, extra=dict(meta.extra))


def _read_sidecar(path: Path, shape: tuple[int, ...]) -> ImageMeta | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
        stored_shape = tuple(int(s) for s in doc["shape"])
        meta = ImageMeta.model_validate(doc["meta"])
    except (ValueError, KeyError, TypeError, ValidationError, OSError):
        raise InputFileError(message(f"metadata sidecar '{side}' which is not valid",
                                     "the JSON fluorecon writes next to a .npy file",
                                     "Delete the sidecar and pass --axes.")) from None
    if stored_shape != shape:
        raise InputFileError(message(f"metadata sidecar '{side}' for shape {stored_shape} next "
                                     f"to an array of shape {shape}",
                                     "a sidecar describing this array",
                                     "Delete the stale sidecar and pass --axes.")) from None
    return meta


def write_npy(tmp: Path, side_tmp: Path, array: Any, meta: ImageMeta, *,
              progress: Callable[[int, int], None] | None) -> None:
    """Write ``array`` to ``tmp`` slab by slab (lazy inputs stay lazy) and the sidecar."""
    dtype = np.dtype(array.dtype).newbyteorder("=")
    shape = tuple(int(s) for s in array.shape)
    with open(tmp, "wb") as fh:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                  "shape": shape}
        if _needs_v2(shape, dtype):
            np.lib.format.write_array_header_2_0(fh, header)
        else:
            np.lib.format.write_array_header_1_0(fh, header)
        bounds = slab_bounds(array)
        for done, (start, stop) in enumerate(bounds, start=1):
            block = np.ascontiguousarray(np.asarray(array[start:stop]), dtype=dtype)
            fh.write(block.tobytes(order="C"))
            if progress is not None:
                progress(done, len(bounds))
    fsync_file(tmp)
    doc = {"shape": list(shape), "meta": json.loads(meta.model_dump_json())}
    side_tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def _needs_v2(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    header = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                   "shape": shape})
    return len(header) + 12 >= 65535
