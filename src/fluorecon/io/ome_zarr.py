"""OME-Zarr (NGFF 0.4) reading and writing with zarr-python.

Format choice
-------------
fluorecon writes NGFF **0.4**: a zarr **v2** group (``.zgroup``/``.zattrs``, arrays with
``.zarray`` and ``"/"`` dimension separator) whose ``.zattrs`` hold ``multiscales``. This is
the version napari-ome-zarr, Fiji (n5-zarr / MoBIE) and most tools read today; NGFF 0.5
(zarr v3) is read but not written. The ``ome-zarr`` package is not required.

Layout written::

    image.zarr/
        .zgroup  .zattrs      # {"multiscales": [...], "omero": {...}, "fluorecon": {...}}
        0/ .zarray  t/c/z/y/x  # full resolution, chunked, Blosc-zstd compressed
        1/ ...                 # optional pyramid levels, Y and X halved (2x2 mean)

NGFF 0.4 allows 2-5 axes ordered time, channel (or one custom axis), space; fluorecon's
sample axis ``S`` is written as a custom axis named ``"s"`` and cannot be combined with
``C``. Axes are written in that order (``"ZCYX"`` data is stored as ``"CZYX"``). Spatial
axes with a known pixel size carry unit ``"micrometer"`` and their size as scale; spatial
axes of unknown size are written with scale 1 and no unit, and an axis read without a
unit is taken as having unknown size.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.core.errors import DataError, InputFileError, message
from fluorecon.core.meta import ImageMeta
from fluorecon.io._blocks import slab_bounds
from fluorecon.io._header import Header
from fluorecon.io._units import NGFF_LENGTH_UNIT, NGFF_TIME_UNIT, length_to_um, time_to_s

NGFF_VERSION = "0.4"
_AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
_NGFF_ORDER = "TCSZYX"  # C and S are exclusive


def _bad_zarr(path: Path, what: str) -> InputFileError:
    return InputFileError(message(f"'{path}' {what}", "an OME-Zarr image (NGFF multiscales) "
                                  "or a zarr array", "Check the folder is a complete OME-Zarr."))


def read_header(path: Path, fmt: str) -> Header:
    """Read NGFF multiscales metadata (0.4 or 0.5) and return level 0 as a :class:`Header`."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise _bad_zarr(path, f"which zarr cannot open ({first})") from None
    if isinstance(node, zarr.Array):
        arr = node
        axes = {2: "YX", 3: "ZYX"}.get(arr.ndim)
        return Header(format=fmt, shape=tuple(arr.shape), dtype=np.dtype(arr.dtype), axes=axes,
                      load=_loader(arr), extra={"ngff": None},
                      axes_note="a zarr array without NGFF metadata stores no axes")
    attrs = dict(node.attrs)
    ome = attrs.get("ome", attrs) if isinstance(attrs.get("ome"), dict) else attrs
    multiscales = ome.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales:
        raise _bad_zarr(path, "which has no 'multiscales' metadata")
    try:
        ms = multiscales[0]
        version = ms.get("version", ome.get("version"))
        dataset = ms["datasets"][0]
        arr = node[dataset["path"]]
        names, types, units = _axes_fields(ms.get("axes"), arr.ndim)
        scale = _scale(dataset.get("coordinateTransformations"), arr.ndim)
        top = _scale(ms.get("coordinateTransformations"), arr.ndim)
        scale = [a * b for a, b in zip(scale, top, strict=True)]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise _bad_zarr(path, f"with invalid multiscales metadata ({type(exc).__name__}: "
                              f"{str(exc)[:80]})") from None
    if not isinstance(arr, zarr.Array):
        raise _bad_zarr(path, f"whose dataset '{dataset['path']}' is not an array")

    letters, note = [], ""
    for name, typ in zip(names, types, strict=True):
        letter = _letter(name, typ)
        if letter is None or letter in letters:
            note = f"the file stores axis '{name}' (type {typ!r}) that has no fluorecon meaning"
            letters = []
            break
        letters.append(letter)
    axes = "".join(letters) or None
    pixel_size: dict[str, float] = {}
    time_interval = None
    if axes is not None:
        for letter, value, unit in zip(axes, scale, units, strict=True):
            if letter in "ZYX":
                um = length_to_um(value, unit)
                if um is not None:
                    pixel_size[letter] = um
            elif letter == "T":
                time_interval = time_to_s(value, unit)
    own = attrs.get("fluorecon", {}) if isinstance(attrs.get("fluorecon"), dict) else {}
    channel_names = _channel_names(attrs.get("omero"), axes, tuple(arr.shape))
    return Header(format=fmt, shape=tuple(int(s) for s in arr.shape), dtype=np.dtype(arr.dtype),
                  axes=axes, load=_loader(arr), pixel_size=pixel_size,
                  time_interval=time_interval, channel_names=channel_names,
                  extra={"ngff": version, **(own.get("extra") or {})}, axes_note=note)


def _loader(arr: Any) -> Callable[[bool], Any]:
    def load(lazy: bool) -> Any:
        if lazy:
            import dask.array as da

            return da.from_zarr(arr)
        return np.asarray(arr[...])
    return load


def _axes_fields(axes: Any, ndim: int) -> tuple[list[str], list[str | None], list[str | None]]:
    if axes is None:  # NGFF <= 0.3 without axes: 5D tczyx
        axes = ["t", "c", "z", "y", "x"][-ndim:]
    if len(axes) != ndim:
        raise ValueError(f"{len(axes)} axes for a {ndim}-dimensional array")
    names, types, units = [], [], []
    for ax in axes:
        if isinstance(ax, str):
            names.append(ax)
            types.append(None)
            units.append(None)
        else:
            names.append(str(ax["name"]))
            types.append(ax.get("type"))
            units.append(ax.get("unit"))
    return names, types, units


def _scale(transforms: Any, ndim: int) -> list[float]:
    out = [1.0] * ndim
    for tr in transforms or []:
        if tr.get("type") == "scale":
            values = [float(v) for v in tr["scale"]]
            if len(values) != ndim:
                raise ValueError(f"scale of length {len(values)} for {ndim} axes")
            out = [a * b for a, b in zip(out, values, strict=True)]
    return out


def _letter(name: str, typ: str | None) -> str | None:
    up = name.upper()
    if up in "TCZYX" and len(up) == 1:
        return up
    if typ == "time":
        return "T"
    if typ == "channel":
        return "C"
    if up in ("S", "SAMPLE"):
        return "S"
    return None


def _channel_names(omero: Any, axes: str | None, shape: tuple[int, ...]) -> list[str] | None:
    if not isinstance(omero, dict) or axes is None or "C" not in axes:
        return None
    channels = omero.get("channels")
    if not isinstance(channels, list) or len(channels) != shape[axes.index("C")]:
        return None
    labels = [ch.get("label") if isinstance(ch, dict) else None for ch in channels]
    return [str(x) for x in labels] if all(labels) else None


# --------------------------------------------------------------------------- writing


def ngff_order(axes: str) -> str:
    """Return ``axes`` reordered as NGFF 0.4 requires (time, channel/custom, space).

    Raises
    ------
    DataError
        More than 5 axes, or both ``C`` and ``S`` (NGFF 0.4 allows one of them).
    """
    if "C" in axes and "S" in axes:
        raise DataError(message(f"axes {axes!r} with both C and S",
                                "at most one channel or sample axis in OME-Zarr (NGFF 0.4)",
                                "Write .tif or .npy, or write each sample separately."))
    return "".join(a for a in _NGFF_ORDER if a in axes)


def default_chunks(shape: tuple[int, ...], axes: str) -> tuple[int, ...]:
    """Chunks of about 0.25-4 MiB: 1 along T/C/S, up to 16 x 256 x 256 in 3D, 512 x 512 in 2D."""
    three_d = "Z" in axes
    out = []
    for n, a in zip(shape, axes, strict=True):
        if a in "TCS":
            out.append(1)
        elif a == "Z":
            out.append(min(n, 16))
        else:
            out.append(min(n, 256 if three_d else 512))
    return tuple(out)


def _compressor(compression: str | None) -> Any:
    import numcodecs

    name = (compression or "zstd").lower()
    if name == "none":
        return None
    if name in ("zstd", "lz4", "zlib", "blosclz", "lz4hc"):
        return numcodecs.Blosc(cname=name, clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    if name == "gzip":
        return numcodecs.GZip(level=5)
    from fluorecon.core.errors import ConfigError

    raise ConfigError(message(f"compression {compression!r} for OME-Zarr",
                              "one of zstd, lz4, zlib, gzip, none",
                              "Pass compression='zstd' (the default) or 'none'."))


def write_ome_zarr(tmp: Path, array: Any, meta: ImageMeta, *, compression: str | None,
                   chunks: tuple[int, ...] | None, levels: int,
                   progress: Callable[[int, int], None] | None) -> None:
    """Write ``array`` (already in NGFF axis order) as an NGFF 0.4 image folder at ``tmp``."""
    import zarr

    axes = meta.axes
    shape = tuple(int(s) for s in array.shape)
    if chunks is None:
        chunks = default_chunks(shape, axes)
    chunks = tuple(max(1, min(int(c), n)) for c, n in zip(chunks, shape, strict=True))
    compressor = _compressor(compression)
    dtype = np.dtype(array.dtype).newbyteorder("=")
    level_shapes = [shape]
    for _ in range(1, levels):
        prev = level_shapes[-1]
        nxt = tuple(n // 2 if a in "YX" else n for n, a in zip(prev, axes, strict=True))
        if min(nxt[axes.index("Y")], nxt[axes.index("X")]) < 1:
            break
        level_shapes.append(nxt)
    group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
    outs = [group.create_array(
        str(level), shape=lshape, dtype=dtype,
        chunks=tuple(min(c, n) for c, n in zip(chunks, lshape, strict=True)),
        compressors=compressor, fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"})
        for level, lshape in enumerate(level_shapes)]
    # level 0 follows the input's chunks; level k is computed from level k-1 on disk
    slabs = [slab_bounds(array, align=chunks[0])]
    slabs += [slab_bounds(_Shaped(out.shape, dtype), align=out.chunks[0]) for out in outs[1:]]
    total, done = sum(len(s) for s in slabs), 0
    for level, (out, bounds) in enumerate(zip(outs, slabs, strict=True)):
        for start, stop in bounds:
            if level == 0:
                block = np.asarray(array[start:stop]).astype(dtype, copy=False)
            else:
                region = (slice(start, stop),) + tuple(slice(0, n) for n in out.shape[1:])
                block = _downsample(outs[level - 1], region, axes, dtype)
            out[start:stop] = block
            done += 1
            if progress is not None:
                progress(done, total)
    group.attrs.update(ngff_attrs(meta, len(level_shapes)))


class _Shaped:
    """Shape and dtype only, for planning slabs of an array not yet written."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape, self.dtype = shape, dtype


def _downsample(src: Any, slc: tuple[slice, ...], axes: str, dtype: np.dtype) -> np.ndarray:
    """2x2 mean in Y and X of ``src`` for the output region ``slc`` (odd edges dropped)."""
    src_slc = tuple(slice(2 * s.start, 2 * s.stop) if a in "YX" else s
                    for s, a in zip(slc, axes, strict=True))
    block = np.asarray(src[src_slc], dtype=np.float64)
    iy, ix = axes.index("Y"), axes.index("X")
    ny, nx = (slc[iy].stop - slc[iy].start), (slc[ix].stop - slc[ix].start)
    block = block.take(range(2 * ny), axis=iy).take(range(2 * nx), axis=ix)
    shape = list(block.shape)
    shape[iy:iy + 1] = [ny, 2]
    ix2 = ix + 1
    shape[ix2:ix2 + 1] = [nx, 2]
    mean = block.reshape(shape).mean(axis=(iy + 1, ix2 + 1))
    if np.issubdtype(dtype, np.integer):
        mean = np.rint(mean)
    elif dtype == np.bool_:
        mean = mean >= 0.5
    return mean.astype(dtype)


def ngff_attrs(meta: ImageMeta, levels: int) -> dict[str, Any]:
    """Group attributes: NGFF 0.4 ``multiscales`` (+ ``omero`` channel labels, provenance)."""
    axes_meta = []
    base = []
    for a in meta.axes:
        entry: dict[str, Any] = {"name": "sample" if a == "S" else a.lower()}
        if a in _AXIS_TYPES:
            entry["type"] = _AXIS_TYPES[a]
        scale = 1.0
        if a in meta.pixel_size:
            entry["unit"] = NGFF_LENGTH_UNIT
            scale = float(meta.pixel_size[a])
        elif a == "T" and meta.time_interval is not None:
            entry["unit"] = NGFF_TIME_UNIT
            scale = float(meta.time_interval)
        axes_meta.append(entry)
        base.append(scale)
    datasets = []
    for level in range(levels):
        factor = [2.0 ** level if a in "YX" else 1.0 for a in meta.axes]
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [b * f for b, f in zip(base, factor, strict=True)]}]})
    attrs: dict[str, Any] = {
        "multiscales": [{
            "version": NGFF_VERSION, "name": "image", "axes": axes_meta, "datasets": datasets,
            "type": "mean", "metadata": {"method": "2x2 mean in Y and X",
                                         "software": "fluorecon"}}],
    }
    if meta.channel_names is not None:
        attrs["omero"] = {"version": NGFF_VERSION, "channels": [
            {"label": name, "active": True, "color": "FFFFFF"} for name in meta.channel_names]}
    attrs["fluorecon"] = {"extra": json.loads(json.dumps(meta.extra, default=str))}
    return attrs


# --------------------------------------------------------------------------- streaming


def create_ome_zarr(path: Path, *, shape: tuple[int, ...], dtype: Any, meta: ImageMeta,
                    chunks: tuple[int, ...] | None = None,
                    compression: str | None = None) -> Any:
    """Create an empty single-level NGFF 0.4 image at ``path`` and return its level-0 array.

    For writers that fill an image chunk by chunk (:mod:`fluorecon.predict.stream`): the
    group metadata (``multiscales``, ``omero``, provenance) is written at once, the array
    holds only its fill value (0) until chunks are written, and nothing is read back.

    Parameters
    ----------
    path : Path
        Folder to create (must not exist; callers write to a temporary sibling and move
        it into place with :func:`fluorecon.io.atomic.replace_path` when complete).
    shape : tuple of int
        Array shape, in ``meta.axes`` order, which must already be the NGFF order
        (:func:`ngff_order`).
    dtype : dtype-like
        Stored dtype (native byte order).
    meta : ImageMeta
        Axes, pixel sizes and provenance written to the group attributes.
    chunks : tuple of int, optional
        Chunk shape; default :func:`default_chunks`. Clipped to ``shape``.
    compression : str, optional
        As in :func:`fluorecon.io.write_image` for OME-Zarr (default Blosc zstd).

    Returns
    -------
    zarr.Array
        The level-0 array, opened for writing.

    Raises
    ------
    DataError
        ``meta.axes`` not in NGFF order or not matching ``shape``.
    ConfigError
        Unknown compression.
    """
    import zarr

    shape = tuple(int(s) for s in shape)
    meta.check_shape(shape)
    if ngff_order(meta.axes) != meta.axes:
        raise DataError(message(f"axes {meta.axes!r} for an OME-Zarr array",
                                f"NGFF order {ngff_order(meta.axes)!r}",
                                "Transpose the data to NGFF order first."))
    if chunks is None:
        chunks = default_chunks(shape, meta.axes)
    chunks = tuple(max(1, min(int(c), n)) for c, n in zip(chunks, shape, strict=True))
    group = zarr.open_group(str(path), mode="w-", zarr_format=2)
    arr = group.create_array("0", shape=shape, dtype=np.dtype(dtype).newbyteorder("="),
                             chunks=chunks, compressors=_compressor(compression),
                             fill_value=0, chunk_key_encoding={"name": "v2", "separator": "/"})
    group.attrs.update(ngff_attrs(meta, 1))
    return arr


def open_ome_zarr_array(path: Path, *, level: int = 0, mode: str = "r+") -> Any:
    """Open level ``level`` of an NGFF image written by fluorecon (``mode`` ``"r"``/``"r+"``).

    Raises
    ------
    InputFileError
        ``path`` is not such an image.
    """
    import zarr

    try:
        return zarr.open_array(str(Path(path) / str(level)), mode=mode, zarr_format=2)
    except Exception as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise _bad_zarr(Path(path), f"whose level {level} zarr cannot open ({first})") from None
