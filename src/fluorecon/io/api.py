"""Public entry points: :func:`read_image`, :func:`write_image`, :func:`image_info`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.core.axes import check_axes
from fluorecon.core.errors import AxesError, ConfigError, DataError, message
from fluorecon.core.meta import ImageMeta
from fluorecon.io import npy, ome_zarr, png, tiff
from fluorecon.io._header import Header
from fluorecon.io.atomic import atomic_output, remove_path, replace_path, temporary_sibling
from fluorecon.io.validate import (
    OutputPathError,
    check_array,
    check_input_path,
    check_output_path,
    native,
)

PathLike = str | os.PathLike[str]
Progress = Callable[[int, int], None]

_READERS: dict[str, Callable[[Path, str], Header]] = {
    "ome-tiff": tiff.read_header, "tiff": tiff.read_header, "ome-zarr": ome_zarr.read_header,
    "npy": npy.read_header, "png": png.read_header,
}


def _header(path: PathLike) -> Header:
    p, fmt = check_input_path(path)
    return _READERS[fmt](p, fmt)


def _resolve_meta(header: Header, axes: str | None, path: Path) -> ImageMeta:
    """Combine stored metadata with an explicit ``axes`` override into an ImageMeta."""
    ndim = len(header.shape)
    if axes is not None:
        try:
            up = check_axes(axes, ndim=ndim)
        except AxesError as exc:
            raise AxesError(f"{exc} (file '{path.name}' has shape {header.shape})") from None
        stored = header.axes or ""
        # pixel sizes survive only for spatial letters that stay on the same dimension
        pixel_size = {a: v for a, v in header.pixel_size.items()
                      if a in up and stored.find(a) == up.index(a)}
        time_interval = header.time_interval if "T" in up and stored.find("T") == up.index(
            "T") else None
        channel_names = header.channel_names if "C" in up and stored.find("C") == up.index(
            "C") else None
    else:
        if header.axes is None:
            raise AxesError(message(f"'{path.name}' with shape {header.shape} and no usable axes "
                                    f"metadata ({header.axes_note})", "explicit axes",
                                    "Pass axes, e.g. --axes CZYX, one letter of STCZYX per "
                                    "dimension."))
        up = check_axes(header.axes, ndim=ndim)
        pixel_size, time_interval = header.pixel_size, header.time_interval
        channel_names = header.channel_names
    return ImageMeta(axes=up, pixel_size=pixel_size, time_interval=time_interval,
                     channel_names=channel_names, extra=dict(header.extra))


def read_image(path: PathLike, *, axes: str | None = None, lazy: bool = False,
               check_finite: bool | None = None) -> tuple[Any, ImageMeta]:
    """Read an image and its metadata (axes, pixel sizes in micrometres).

    Parameters
    ----------
    path : str or PathLike
        Image file: ``.tif``/``.tiff`` (plain, ImageJ hyperstack or OME), ``.ome.tif``,
        ``.zarr``/``.ome.zarr`` folder (OME-Zarr, NGFF 0.4 or 0.5), ``.npy`` or ``.png``.
    axes : str, optional
        Axes of the stored array, one letter of ``"STCZYX"`` per dimension. Overrides the
        file's axes (pixel sizes are kept only for letters on the same dimension); required
        where the file stores none and the data is not 2D (``YX``) or 3D (``ZYX``).
    lazy : bool
        If true, return without reading the pixels: a read-only :class:`numpy.memmap` for
        ``.npy`` and uncompressed contiguous TIFF, else a :class:`dask.array.Array` (zarr
        chunks, TIFF pages, or a deferred PNG decode).
    check_finite : bool, optional
        Scan float data for NaN and infinity. Default: true for eager reads, false for lazy
        ones (a scan reads the whole file).

    Returns
    -------
    array : numpy.ndarray, numpy.memmap or dask.array.Array
        The pixels in the file's dtype (never rescaled), shape as the axes say.
    meta : ImageMeta
        Axes, pixel sizes (µm) for Z/Y/X where the file records them, time interval (s),
        channel names, and ``extra`` (format details such as ``tiff_kind`` or ``ngff``).

    Raises
    ------
    InputFileError
        Missing, empty, truncated or corrupt file, wrong suffix, or not an image.
    DataError
        Unsupported dtype (complex, object, ...), empty array, NaN/inf (when checked).
    AxesError
        ``axes`` invalid or not matching the data; no axes stored for 4D+ data.

    Notes
    -----
    Axes are returned in the order stored; singleton dimensions of OME-TIFF and ImageJ
    files are squeezed (Y and X are always kept). See :mod:`fluorecon.io.tiff`,
    :mod:`fluorecon.io.ome_zarr`, :mod:`fluorecon.io.npy` and :mod:`fluorecon.io.png` for
    each format's rules.

    Examples
    --------
    >>> data, meta = read_image("nuclei.tif")  # doctest: +SKIP
    >>> meta.axes, meta.pixel_size  # doctest: +SKIP
    ('ZYX', {'Z': 0.3, 'Y': 0.13, 'X': 0.13})
    """
    header = _header(path)
    p = Path(path)
    # dtype, dimensionality and emptiness from metadata alone, before any pixel is read
    check_array(_Shape(header.shape, header.dtype), name=f"'{p.name}'", finite=False)
    meta = _resolve_meta(header, axes, p)
    data = header.load(lazy)
    if not lazy:
        data = native(np.asarray(data))
    if check_finite if check_finite is not None else not lazy:
        check_array(data, name=f"'{p.name}'", finite=True)
    return data, meta


class _Shape:
    """Stand-in carrying only shape and dtype, for checks before reading pixels."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape, self.dtype = shape, dtype


def image_info(path: PathLike) -> dict[str, Any]:
    """Describe an image from its metadata only (no pixel is read).

    Returns
    -------
    dict
        ``path``, ``format`` (``"tiff"``, ``"ome-tiff"``, ``"ome-zarr"``, ``"npy"``,
        ``"png"``), ``shape``, ``dtype``, ``axes`` (``None`` when the file stores none and
        the shape is not 2D/3D), ``pixel_size`` (µm per spatial axis), ``time_interval``
        (s), ``channel_names``, ``size_bytes`` (on disk; summed over a ``.zarr`` folder),
        ``nbytes`` (uncompressed) and ``extra``.
    """
    header = _header(path)
    p = Path(path)
    if p.is_dir():
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    else:
        size = p.stat().st_size
    return {
        "path": str(p), "format": header.format, "shape": tuple(header.shape),
        "dtype": header.dtype.name, "axes": header.axes, "pixel_size": dict(header.pixel_size),
        "time_interval": header.time_interval, "channel_names": header.channel_names,
        "size_bytes": int(size), "nbytes": int(np.prod(header.shape)) * header.dtype.itemsize,
        "extra": dict(header.extra),
    }


def write_image(path: PathLike, array: Any, meta: ImageMeta, *, overwrite: bool = False,
                inputs: Sequence[PathLike] = (), compression: str | None = None,
                chunks: Sequence[int] | None = None, levels: int = 1,
                progress: Progress | None = None) -> Path:
    """Write an image with its metadata, atomically.

    Parameters
    ----------
    path : str or PathLike
        Output path (missing parent folders are created). The suffix picks the format:
        ``.ome.tif``/``.ome.tiff`` OME-TIFF; ``.tif``/``.tiff`` ImageJ hyperstack when
        the axes are in ImageJ order (a subsequence of ``TZCYX``) and the dtype is uint8,
        uint16 or float32, else OME-TIFF; ``.zarr``/``.ome.zarr`` OME-Zarr (NGFF 0.4,
        zarr v2); ``.npy`` NumPy with a ``<name>.npy.json`` metadata sidecar.
    array : array-like
        NumPy, memmap, dask or zarr array; lazy arrays are read and written slab by slab.
    meta : ImageMeta
        Axes (must match ``array.ndim``) and pixel sizes to store.
    overwrite : bool
        Replace an existing ``path``. Never replaces a path listed in ``inputs``.
    inputs : sequence of path
        Paths this output must not replace (or contain), compared after resolving links.
    compression : str, optional
        TIFF: a tifffile codec (``"zlib"``, ``"zstd"``, ``"lzw"``, ...); default none, so
        the file can be memory-mapped. OME-Zarr: Blosc ``"zstd"`` (default), ``"lz4"``,
        ``"zlib"``, ``"gzip"`` or ``"none"``. Not allowed for ``.npy``.
    chunks : sequence of int, optional
        OME-Zarr chunk shape, in ``meta.axes`` order. Default about 16 x 256 x 256 (3D) or
        512 x 512 (2D), 1 along T/C/S.
    levels : int
        OME-Zarr pyramid levels (1 = full resolution only); each halves Y and X (2x2 mean).
    progress : callable, optional
        ``progress(done, total)`` after each written plane or slab.

    Returns
    -------
    Path
        The absolute output path.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false, or ``path`` is one of ``inputs``.
    OutputPathError
        Unsupported suffix, uncreatable folder, or the file system refused the write.
    DataError, AxesError, ConfigError
        Bad array (dtype, empty), axes not matching, or options the format cannot honour.

    Notes
    -----
    TIFF stores Y and X last and OME-Zarr orders axes time, channel, space: other orders
    are transposed on writing (``"YXC"`` is written as ``"CYX"``), and read back in that
    order. The file appears at ``path`` only when complete: data goes to a hidden sibling
    ``.<name>.tmp-<random>`` first, then :func:`os.replace` moves it into place; on any
    error the sibling is removed and an existing file is left untouched.
    """
    out, fmt = check_output_path(path, overwrite=overwrite, inputs=inputs)
    check_array(array, name="image to write", finite=False)
    if not isinstance(meta, ImageMeta):
        raise ConfigError(message(f"meta of type {type(meta).__name__}", "an ImageMeta",
                                  "Pass the ImageMeta returned by read_image or build one."))
    meta.check_shape(tuple(array.shape))
    if chunks is not None and fmt != "ome-zarr":
        raise ConfigError(message(f"chunks={tuple(chunks)} for a {fmt} output",
                                  "chunks only with OME-Zarr (.zarr)", "Drop chunks."))
    if chunks is not None and len(chunks) != array.ndim:
        raise ConfigError(message(f"chunks={tuple(chunks)} for {array.ndim} axes",
                                  "one chunk size per axis", "Pass one size per axis."))
    if not isinstance(levels, int) or levels < 1 or (levels > 1 and fmt != "ome-zarr"):
        raise ConfigError(message(f"levels={levels!r} for a {fmt} output",
                                  "levels >= 1, and > 1 only with OME-Zarr", "Pass levels=1."))
    if compression is not None and fmt == "npy":
        raise ConfigError(message(f"compression={compression!r} for a .npy output",
                                  "no compression (.npy is raw)",
                                  "Write .zarr or .tif to compress."))
    try:
        if fmt in ("tiff", "ome-tiff"):
            _write_tiff(out, fmt, array, meta, compression, progress)
        elif fmt == "ome-zarr":
            order = ome_zarr.ngff_order(meta.axes)
            array, meta = _transpose(array, meta, order)
            with atomic_output(out) as tmp:
                ome_zarr.write_ome_zarr(tmp, array, meta, compression=compression,
                                        chunks=None if chunks is None else tuple(chunks),
                                        levels=levels, progress=progress)
        else:
            _write_npy(out, array, meta, progress)
    except OSError as exc:
        raise OutputPathError(message(f"an error writing '{out}' ({exc.strerror or exc})",
                                      "a writable folder with free space",
                                      "Check permissions and disk space.")) from None
    return out


def _transpose(array: Any, meta: ImageMeta, order: str) -> tuple[Any, ImageMeta]:
    if order == meta.axes:
        return array, meta
    perm = [meta.axes.index(a) for a in order]
    if hasattr(array, "transpose") and not _is_zarr(array):
        moved = array.transpose(perm)
    else:
        import dask.array as da

        moved = da.from_zarr(array).transpose(perm) if _is_zarr(array) else \
            np.transpose(np.asarray(array), perm)
    return moved, meta.model_copy(update={"axes": order})


def _is_zarr(array: Any) -> bool:
    return type(array).__module__.startswith("zarr")


def _write_tiff(out: Path, fmt: str, array: Any, meta: ImageMeta, compression: str | None,
                progress: Progress | None) -> None:
    order = "".join(a for a in meta.axes if a not in "YX") + "YX"
    array, meta = _transpose(array, meta, order)
    ome = fmt == "ome-tiff" or not tiff.imagej_compatible(meta, np.dtype(array.dtype))
    if "S" in meta.axes and not ome:
        ome = True
    try:
        with atomic_output(out) as tmp:
            tiff.write_tiff(tmp, array, meta, ome=ome, compression=compression,
                            progress=progress)
    except (ValueError, KeyError, TypeError) as exc:
        # tifffile rejects unknown codecs and layouts it cannot store with these
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DataError(message(f"an image tifffile cannot write as {'OME-' if ome else ''}"
                                f"TIFF with axes {meta.axes!r}, dtype {np.dtype(array.dtype)}"
                                f", compression {compression!r} ({first})",
                                "a layout and codec TIFF supports",
                                "Write .zarr or .npy, or pick another compression.")) from None


def _write_npy(out: Path, array: Any, meta: ImageMeta, progress: Progress | None) -> None:
    side = npy.sidecar_path(out)
    side_tmp = temporary_sibling(side)
    try:
        with atomic_output(out) as tmp:
            npy.write_npy(tmp, side_tmp, array, meta, progress=progress)
        replace_path(side_tmp, side)
    finally:
        remove_path(side_tmp)
