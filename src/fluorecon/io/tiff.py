"""TIFF, ImageJ hyperstack and OME-TIFF reading and writing (via tifffile).

Axes
----
Axes come from the OME-XML (OME-TIFF) or the ImageJ description (ImageJ hyperstacks).
Singleton dimensions are squeezed, except Y and X, which are always kept. tifffile's
letters map to fluorecon's: ``T Z C Y X`` as is, ``S`` (colour samples, RGB) and ``E``
(lambda) to ``C``, and OME modulo ``Q`` ("other") to ``S`` (sample/batch, which is how
fluorecon writes it). Other letters (angle, phase, tile, ...) have no fluorecon meaning
and require an explicit ``axes``. Plain TIFFs store no axes: a 2D image is ``YX`` and a
page stack ``ZYX``; anything else needs ``axes``. A plain TIFF whose several series all
share shape and dtype (e.g. one page per channel, each written as its own series) is read
as one stack along a new first axis.

Pixel sizes
-----------
OME ``PhysicalSizeX/Y/Z`` with their units; ImageJ ``XResolution``/``YResolution``
(pixels per ``unit``) and ``spacing`` (Z step in ``unit``); plain TIFF resolution tags
in CENTIMETER, or INCH above 1200 dpi (72, 96, 300 dpi are screen/print defaults, not
microscope pixels). All are converted to micrometres.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.core.errors import InputFileError, message
from fluorecon.core.meta import ImageMeta
from fluorecon.io._blocks import slab_bounds
from fluorecon.io._header import Header
from fluorecon.io._units import length_to_um, time_to_s
from fluorecon.io.atomic import fsync_file

_TIFF_TO_FLUORECON = {"T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X", "S": "C", "E": "C"}
_IMAGEJ_DTYPES = ("uint8", "uint16", "float32")
_IMAGEJ_ORDER = "TZCYX"
_MAX_INCH_DPI = 1200.0


def _tifffile_error(path: Path, exc: BaseException) -> InputFileError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputFileError(message(f"'{path}' which cannot be read as TIFF ({first[:120]})",
                                  "a valid, complete TIFF file",
                                  "Check the file is a TIFF image and was copied completely."))


def read_header(path: Path, fmt: str) -> Header:
    """Read the metadata of a TIFF file and return a :class:`Header` with a pixel loader."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return _header(path, fmt, tif)
    except InputFileError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise _tifffile_error(path, exc) from None


def _header(path: Path, fmt: str, tif: Any) -> Header:
    if not tif.series:
        raise InputFileError(message(f"'{path}' which holds no image series",
                                     "a TIFF with image data", "Check the file."))
    series = tif.series[0]
    is_ome, is_imagej = tif.is_ome, tif.is_imagej
    full_axes = series.get_axes(False)
    full_shape = tuple(int(s) for s in series.get_shape(False))
    stacked = 1
    if not (is_ome or is_imagej) and len(tif.series) > 1 and all(
        s.shape == series.shape and s.dtype == series.dtype for s in tif.series
    ):
        stacked = len(tif.series)
    all_series = tif.series[:stacked]
    pages = [p for s in all_series for p in s.pages]
    dtype = np.dtype(series.dtype)
    _check_not_truncated(path, all_series, pages)

    pixel_size: dict[str, float] = {}
    time_interval: float | None = None
    channel_names: list[str] | None = None
    note = ""
    extra: dict[str, Any] = {}
    if is_ome or is_imagej:
        keep = [i for i, (a, n) in enumerate(zip(full_axes, full_shape, strict=True))
                if n > 1 or a in "YX"]
        shape = tuple(full_shape[i] for i in keep)
        stored = "".join(full_axes[i] for i in keep)
        axes, note = _map_axes(stored, is_ome)
        if is_ome:
            pixel_size, time_interval, channel_names = _ome_metadata(tif.ome_metadata, axes)
        else:
            pixel_size, time_interval = _imagej_metadata(tif.imagej_metadata or {},
                                                        series.keyframe)
        kind = "ome" if is_ome else "imagej"
    else:
        shape = tuple(int(s) for s in series.shape)
        if stacked > 1:
            shape = (stacked, *shape)
        stored = series.axes if stacked == 1 else "Q" + series.axes
        axes = _plain_axes(stored, len(shape))
        pixel_size = _plain_resolution(series.keyframe)
        if axes is None:
            note = "a plain TIFF stores no axes for data with more than 3 dimensions"
        kind = "plain"
        if stacked > 1:
            extra["series"] = stacked
    if axes is not None:
        pixel_size = {a: v for a, v in pixel_size.items() if a in axes}
        if channel_names is not None and ("C" not in axes
                                          or len(channel_names) != shape[axes.index("C")]):
            channel_names = None
    else:
        pixel_size = {}
        channel_names = None
    if time_interval is not None and (axes is None or "T" not in axes):
        time_interval = None

    contiguous = (stacked == 1 and series.dataoffset is not None
                  and series.keyframe.is_memmappable)
    plan = _ReadPlan(path=path, shape=shape, dtype=dtype.newbyteorder(tif.byteorder),
                     offset=series.dataoffset if contiguous else None,
                     page_indices=[p.index for p in pages], page_shape=tuple(pages[0].shape),
                     stacked=stacked)
    return Header(format=fmt if kind != "ome" else "ome-tiff", shape=shape, dtype=dtype,
                  axes=axes, load=plan.load, pixel_size=pixel_size,
                  time_interval=time_interval, channel_names=channel_names,
                  extra={"tiff_kind": kind, **extra}, axes_note=note)


def _check_not_truncated(path: Path, all_series: list[Any], pages: list[Any]) -> None:
    size = os.path.getsize(path)
    for s in all_series:
        if s.dataoffset is not None:
            if s.dataoffset + s.nbytes > size:
                raise _truncated(path, s.dataoffset + s.nbytes, size)
    for page in pages:
        offsets, counts = page.dataoffsets, page.databytecounts
        if not offsets:
            raise InputFileError(message(f"'{path}' with a page that has no image data",
                                         "a TIFF with image data", "Check the file."))
        end = max(o + c for o, c in zip(offsets, counts, strict=True))
        if end > size:
            raise _truncated(path, end, size)


def _truncated(path: Path, need: int, have: int) -> InputFileError:
    return InputFileError(message(f"'{path}' which is truncated ({have} bytes, image data "
                                  f"extends to byte {need})", "a complete TIFF file",
                                  "Copy or download the file again."))


def _map_axes(stored: str, is_ome: bool) -> tuple[str | None, str]:
    out = []
    for letter in stored:
        if letter == "Q" and is_ome:
            mapped = "S"
        else:
            mapped = _TIFF_TO_FLUORECON.get(letter)
        if mapped is None:
            return None, f"the file stores axes '{stored}' with axis '{letter}' that has no " \
                         "fluorecon meaning"
        if mapped in out:
            return None, f"the file stores axes '{stored}' which map to '{mapped}' twice"
        out.append(mapped)
    return "".join(out), ""


def _plain_axes(stored: str, ndim: int) -> str | None:
    mapped, _ = _map_axes(stored, is_ome=False)
    if mapped is not None and len(mapped) == ndim and set(stored) <= set("TZCYXS"):
        return mapped
    if ndim == 2:
        return "YX"
    if ndim == 3:
        return "ZYX"
    return None


def _ome_metadata(xml: str | None, axes: str | None
                  ) -> tuple[dict[str, float], float | None, list[str] | None]:
    pixel_size: dict[str, float] = {}
    if not xml:
        return pixel_size, None, None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return pixel_size, None, None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return pixel_size, None, None
    for ax in "XYZ":
        value = pixels.get(f"PhysicalSize{ax}")
        if value is not None:
            um = length_to_um(value, pixels.get(f"PhysicalSize{ax}Unit", "µm"))
            if um is not None:
                pixel_size[ax] = um
    dt = pixels.get("TimeIncrement")
    time_interval = None if dt is None else time_to_s(dt, pixels.get("TimeIncrementUnit", "s"))
    names = [ch.get("Name") for ch in pixels if ch.tag.rsplit("}", 1)[-1] == "Channel"]
    channel_names = [str(n) for n in names] if names and all(n for n in names) else None
    return pixel_size, time_interval, channel_names


def _imagej_metadata(meta: dict[str, Any], page: Any) -> tuple[dict[str, float], float | None]:
    unit = meta.get("unit")
    unit = unit.replace("\\u00B5", "µ") if isinstance(unit, str) else None
    pixel_size: dict[str, float] = {}
    for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
        res = _rational(page, tag)
        if res:
            um = length_to_um(1.0 / res, unit)
            if um is not None:
                pixel_size[ax] = um
    if "spacing" in meta:
        um = length_to_um(meta["spacing"], unit)
        if um is not None:
            pixel_size["Z"] = um
    dt = meta.get("finterval")
    time_interval = None if dt is None else time_to_s(dt, meta.get("tunit", "s") or "s")
    return pixel_size, time_interval


def _rational(page: Any, name: str) -> float | None:
    tag = page.tags.get(name)
    if tag is None:
        return None
    value = tag.value
    try:
        num, den = (value if isinstance(value, tuple) else (value, 1))
        res = float(num) / float(den)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return res if res > 0 and math.isfinite(res) else None


def _plain_resolution(page: Any) -> dict[str, float]:
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
    out: dict[str, float] = {}
    for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
        res = _rational(page, tag)
        if res is None:
            continue
        if unit == 3:
            out[ax] = 1e4 / res
        elif unit == 2 and res > _MAX_INCH_DPI:
            out[ax] = 25400.0 / res
    return out


class _ReadPlan:
    """How to read the pixels: memory-map a contiguous block, or decode page by page."""

    def __init__(self, *, path: Path, shape: tuple[int, ...], dtype: np.dtype,
                 offset: int | None, page_indices: list[Any], page_shape: tuple[int, ...],
                 stacked: int) -> None:
        self.path, self.shape, self.dtype, self.offset = path, shape, dtype, offset
        self.page_indices, self.page_shape, self.stacked = page_indices, page_shape, stacked

    def load(self, lazy: bool) -> Any:
        if self.offset is not None and lazy:
            return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset,
                             shape=self.shape)
        if lazy:
            return self._dask()
        return self._eager()

    def _eager(self) -> np.ndarray:
        import tifffile

        try:
            with tifffile.TiffFile(self.path) as tif:
                if self.stacked > 1:
                    data = np.stack([s.asarray() for s in tif.series[: self.stacked]])
                else:
                    data = tif.series[0].asarray()
        except Exception as exc:
            raise _tifffile_error(self.path, exc) from None
        return data.reshape(self.shape)

    def _dask(self) -> Any:
        import dask
        import dask.array as da

        dtype = self.dtype.newbyteorder("=")
        blocks = [da.from_delayed(dask.delayed(_read_page)(self.path, index), self.page_shape,
                                  dtype=dtype) for index in self.page_indices]
        stack = da.stack(blocks) if len(blocks) > 1 else blocks[0][np.newaxis]
        return stack.reshape(self.shape)


def _read_page(path: Path, index: Any) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[index]
            data = page.asarray()
    except Exception as exc:
        raise _tifffile_error(path, exc) from None
    return data.astype(data.dtype.newbyteorder("="), copy=False)


# --------------------------------------------------------------------------- writing


def imagej_compatible(meta: ImageMeta, dtype: np.dtype) -> bool:
    """True if an image with ``meta.axes`` and ``dtype`` can be an ImageJ hyperstack."""
    order = [_IMAGEJ_ORDER.find(a) for a in meta.axes]
    return (np.dtype(dtype).name in _IMAGEJ_DTYPES and -1 not in order
            and order == sorted(order))


def write_tiff(tmp: Path, array: Any, meta: ImageMeta, *, ome: bool,
               compression: str | None, progress: Callable[[int, int], None] | None) -> None:
    """Write ``array`` (axes ``meta.axes``, Y and X last) to the new file ``tmp``."""
    import tifffile

    dtype = np.dtype(array.dtype).newbyteorder("=")
    shape = tuple(int(s) for s in array.shape)
    kwargs: dict[str, Any] = {"photometric": "minisblack", "compression": compression,
                              "shape": shape, "dtype": dtype}
    px = meta.pixel_size
    if ome:
        axes = meta.axes.replace("S", "Q")
        md: dict[str, Any] = {"axes": axes}
        for ax in "XYZ":
            if ax in px:
                md[f"PhysicalSize{ax}"] = px[ax]
                md[f"PhysicalSize{ax}Unit"] = "µm"
        if meta.time_interval is not None:
            md["TimeIncrement"] = meta.time_interval
            md["TimeIncrementUnit"] = "s"
        if meta.channel_names is not None:
            md["Channel"] = {"Name": list(meta.channel_names)}
        kwargs.update(ome=True, metadata=md,
                      bigtiff=int(np.prod(shape)) * dtype.itemsize > 2**32 - 2**25)
        if "X" in px and "Y" in px:
            kwargs.update(resolution=(1e4 / px["X"], 1e4 / px["Y"]), resolutionunit="CENTIMETER")
    else:
        md = {"axes": meta.axes}
        if "Z" in px:
            md["spacing"] = px["Z"]
        if px:
            md["unit"] = "um"
        if meta.time_interval is not None:
            md["finterval"] = meta.time_interval
        kwargs.update(imagej=True, metadata=md)
        if "X" in px and "Y" in px:
            kwargs["resolution"] = (1.0 / px["X"], 1.0 / px["Y"])
    with open(tmp, "wb") as fh:
        tifffile.imwrite(fh, _planes(array, progress), **kwargs)
    fsync_file(tmp)


def _planes(array: Any, progress: Callable[[int, int], None] | None) -> Iterator[np.ndarray]:
    """Yield the YX planes of ``array`` in C order, reading lazy inputs slab by slab."""
    if array.ndim == 2:
        plane = np.asarray(array)
        yield plane.astype(plane.dtype.newbyteorder("="), copy=False)
        if progress is not None:
            progress(1, 1)
        return
    total = int(np.prod(array.shape[:-2]))
    done = 0
    for start, stop in slab_bounds(array):
        slab = np.asarray(array[start:stop])
        slab = slab.astype(slab.dtype.newbyteorder("="), copy=False)
        for index in np.ndindex(*slab.shape[:-2]):
            yield slab[index]
            done += 1
            if progress is not None:
                progress(done, total)
