"""Bounded-memory, resumable prediction of images larger than memory into OME-Zarr.

The output is cut into *blocks*: boxes of whole output chunks along the spatial axes, one
index along every looped axis (``S``, ``T``, and ``C`` unless a multi-channel model takes
it jointly). For each block the input is read lazily over the block grown by the method's
receptive field (the *halo*, start aligned to ``divisible_by``), predicted tile by tile
with :func:`~fluorecon.predict.predict_method_tiled` (exact crop-and-stitch), cropped to
the block and written to the output chunks it covers. Peak memory is therefore set by the
block, tile and batch sizes, never by the size of the image.

Blocks never share an output chunk, so a block's write touches nothing another block
writes: blocks can run in any order, in parallel (see :mod:`fluorecon.predict.distributed`)
and twice (a retried task rewrites the same bytes). After a block is written, an empty
marker file ``done/<block>`` is created; an interrupted run (Ctrl-C, a killed process, a
lost worker) is resumed by skipping the blocks that have a marker. A block killed half-way
has no marker and is recomputed, so a half-written chunk is never taken as done.

Layout while running (hidden sibling of the output, same file system)::

    .<name>.partial/
        stream.json     # plan fingerprint: method, input, chunks, blocks; checked on resume
        image.zarr/     # the NGFF 0.4 output being filled
        done/<id>       # one empty file per finished block

When every block has its marker, ``image.zarr`` is moved onto the output path (one
rename; a TIFF output is instead written from it slab by slab, atomically) and the
partial folder is removed: the output path only ever holds a complete image.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fluorecon.core.errors import (
    AxesError,
    ConfigError,
    InputFileError,
    OutputExistsError,
    message,
)
from fluorecon.core.meta import ImageMeta
from fluorecon.io.atomic import remove_path, replace_path
from fluorecon.io.ome_zarr import create_ome_zarr, default_chunks, ngff_order, open_ome_zarr_array
from fluorecon.io.validate import check_output_path
from fluorecon.predict._stream import check_batch_size, check_layout
from fluorecon.predict.tiled import (
    DEFAULT_BYTES_PER_VOXEL,
    DEFAULT_MEMORY_BUDGET,
    predict_method_tiled,
)
from fluorecon.predict.tiling import PadMode, _as_tuple, check_pad_mode

if TYPE_CHECKING:
    from fluorecon.methods.base import Method

Progress = Callable[[int, int], None]

#: Format name and version of ``stream.json``.
STREAM_FORMAT = "fluorecon-stream"
STREAM_VERSION = 1
#: Name of the zarr folder inside the partial folder.
PARTIAL_IMAGE = "image.zarr"


@dataclass(frozen=True)
class Block:
    """One unit of streamed work (see :func:`plan_stream`).

    Attributes
    ----------
    id : int
        Position in the plan (the name of its ``done/`` marker).
    lead : tuple of int
        Index along each looped (non-spatial) axis, in :attr:`StreamPlan.lead` order.
    read : tuple of slice
        Spatial region of the input read (block plus halo, clipped to the image, start a
        multiple of ``divisible_by``).
    write : tuple of slice
        Spatial region of the output written: whole output chunks (the image end cuts
        the last ones).
    """

    id: int
    lead: tuple[int, ...]
    read: tuple[slice, ...]
    write: tuple[slice, ...]

    @property
    def crop(self) -> tuple[slice, ...]:
        """:attr:`write` relative to :attr:`read` (what is kept of the block's prediction)."""
        return tuple(slice(w.start - r.start, w.stop - r.start)
                     for w, r in zip(self.write, self.read))


@dataclass(frozen=True)
class StreamPlan:
    """How an image is cut into blocks and where each one goes in the output.

    Attributes
    ----------
    axes : str
        Axes of the input image.
    shape : tuple of int
        Input shape.
    out_shape : tuple of int
        Output shape in input axes order (differs along ``C`` for multi-channel models).
    out_axes : str
        Axes of the stored output: ``axes`` in NGFF order (time, channel, space).
    chunks : tuple of int
        Output chunk shape, in ``out_axes`` order.
    lead : tuple of int
        Input dimensions looped over, one block index each.
    spatial : tuple of int
        Input dimensions of the spatial axes.
    joint : int or None
        Input dimension of a channel axis taken jointly by a multi-channel model.
    halo : int
        Receptive-field half-width used to grow blocks (0 for whole-extent blocks).
    divisible_by : int
        Grid on which block reads start.
    block_shape : tuple of int
        Spatial size of the written region of interior blocks.
    blocks : tuple of Block
        All blocks, in C order of (lead index, spatial block grid).
    """

    axes: str
    shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    out_axes: str
    chunks: tuple[int, ...]
    lead: tuple[int, ...]
    spatial: tuple[int, ...]
    joint: int | None
    halo: int
    divisible_by: int
    block_shape: tuple[int, ...]
    blocks: tuple[Block, ...]

    def input_index(self, block: Block) -> tuple[slice, ...]:
        """Index of ``image`` (all slices, so every axis stays) read for ``block``."""
        index = [slice(None)] * len(self.shape)
        for d, i in zip(self.lead, block.lead):
            index[d] = slice(i, i + 1)
        for d, s in zip(self.spatial, block.read):
            index[d] = s
        return tuple(index)

    def output_index(self, block: Block) -> tuple[slice, ...]:
        """Index of the stored output (``out_axes`` order) written for ``block``."""
        index = [slice(None)] * len(self.shape)
        for d, i in zip(self.lead, block.lead):
            index[d] = slice(i, i + 1)
        for d, s in zip(self.spatial, block.write):
            index[d] = s
        return tuple(index[self.axes.index(a)] for a in self.out_axes)

    def crop_index(self, block: Block) -> tuple[slice, ...]:
        """Index of a block's prediction (input axes order) kept for the output."""
        index = [slice(None)] * len(self.shape)
        for d, s in zip(self.spatial, block.crop):
            index[d] = s
        return tuple(index)

    @property
    def permutation(self) -> tuple[int, ...]:
        """Transpose from input axes order to ``out_axes`` order."""
        return tuple(self.axes.index(a) for a in self.out_axes)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary (part of the resume fingerprint)."""
        return {"axes": self.axes, "shape": list(self.shape), "out_shape": list(self.out_shape),
                "out_axes": self.out_axes, "chunks": list(self.chunks), "halo": self.halo,
                "divisible_by": self.divisible_by, "block_shape": list(self.block_shape),
                "n_blocks": len(self.blocks)}


#: Default limit of the voxels read per block (halo included): 2**24 float32 voxels are
#: 64 MiB, so the three copies a block needs stay near 200 MiB.
DEFAULT_BLOCK_VOXELS = 1 << 24


def _default_block(shape: Sequence[int], chunks: Sequence[int], halo: int,
                   max_voxels: int = DEFAULT_BLOCK_VOXELS) -> list[int]:
    """Whole chunks per block: at least ``4 * halo`` long, then grown while the read
    region (block plus halo) stays under ``max_voxels``.

    Growing matters: a block's halo reaches into the neighbouring chunks, which are read
    and decompressed whole, so the read volume per axis is about ``(B + 2c) / B`` of the
    written one for blocks of ``B`` and chunks of ``c`` pixels. The axis grown next is the
    one with the largest such ratio.
    """
    caps = [-(-n // c) * c for n, c in zip(shape, chunks)]
    block = [min(-(-max(c, 4 * halo) // c) * c, cap) for c, cap in zip(chunks, caps)]

    def read_voxels(b: list[int]) -> int:
        return math.prod(min(x + 2 * halo, n) for x, n in zip(b, shape))

    while True:
        order = sorted((i for i in range(len(block)) if block[i] < caps[i]),
                       key=lambda i: -(block[i] + 2 * chunks[i]) / block[i])
        for i in order:
            trial = list(block)
            trial[i] = min(block[i] * 2, caps[i])
            if read_voxels(trial) <= max_voxels:
                block = trial
                break
        else:
            return block


def _block_bounds(n: int, step: int) -> list[tuple[int, int]]:
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def plan_stream(method: Method, shape: Sequence[int], axes: str, *,
                chunks: Sequence[int] | None = None,
                block_shape: int | Sequence[int] | None = None) -> StreamPlan:
    """Cut an image of ``shape`` into chunk-aligned blocks for streamed prediction.

    Parameters
    ----------
    method : Method
        The method to run; its ``receptive_field`` sets the halo, ``divisible_by`` the
        read grid, ``channel_counts`` (multi-channel models) the output channels.
    shape : sequence of int
        Input shape.
    axes : str
        Input axes (e.g. ``"ZYX"``, ``"TCZYX"``).
    chunks : sequence of int, optional
        Output chunk shape in NGFF axes order (``ngff_order(axes)``); default
        :func:`~fluorecon.io.ome_zarr.default_chunks` (16 x 256 x 256 in 3D, 512 x 512 in
        2D, 1 along T/C/S). Chunks along a looped axis must be 1, and along a jointly
        processed channel axis all channels.
    block_shape : int or sequence of int, optional
        Spatial size written per block, per spatial axis, rounded up to whole chunks.
        Default: at least ``4 * halo``, grown by whole chunks while the read region stays
        under :data:`DEFAULT_BLOCK_VOXELS` (64 MiB of float32), which keeps the extra
        reads of halos small; the whole extent for methods with an unbounded receptive
        field.

    Returns
    -------
    StreamPlan

    Raises
    ------
    ConfigError, AxesError
        Invalid axes, chunks or block shape, or a method that does not support the
        image's dimensionality.

    Notes
    -----
    A block writing ``[w_0, w_1)`` along an axis of ``n`` pixels reads
    ``[r_0, r_1) = [d \\lfloor \\max(w_0 - h, 0) / d \\rfloor, \\min(w_1 + h, n))`` with halo
    ``h`` and ``d = divisible_by``, and predicts it with the exact tile planner. Every
    written pixel then has its receptive field inside the read region or at the image
    border, and the read region starts on the same ``d``-grid as whole-image prediction,
    so the streamed result equals whole-image prediction wherever tiled prediction does
    (see :func:`~fluorecon.predict.plan_tiles`, Notes).
    """
    class _Shaped:
        def __init__(self, shape: tuple[int, ...]) -> None:
            self.shape, self.dtype = shape, np.dtype(np.float32)

    shp = tuple(int(s) for s in shape)
    up, lead, spatial = check_layout(_Shaped(shp), axes)
    nsp = len(spatial)
    if nsp not in method.spatial_dims:
        dims = " or ".join(f"{d}D" for d in method.spatial_dims)
        raise AxesError(message(f"a {nsp}D image (axes {up!r}) for method {method.name!r}",
                                f"{dims} spatial data", "Choose another method or axes."))
    counts = getattr(method, "channel_counts", None)
    joint = None
    out_shape = shp
    if counts is not None:
        if "C" not in up:
            raise AxesError(message(f"axes {up!r} for a model with {counts[0]} input "
                                    "channels", "a C axis", "Pass axes with C, e.g. 'CYX'."))
        joint = up.index("C")
        lead = [d for d in lead if d != joint]
        out_shape = shp[:joint] + (int(counts[1]),) + shp[joint + 1:]
    out_axes = ngff_order(up)
    out_in_order = tuple(out_shape[up.index(a)] for a in out_axes)
    if chunks is None:
        chk = list(default_chunks(out_in_order, out_axes))
        if joint is not None:
            chk[out_axes.index("C")] = out_in_order[out_axes.index("C")]
    else:
        chk = list(_as_tuple(chunks, len(out_axes), "chunks", minimum=1))
    chk = [min(c, n) for c, n in zip(chk, out_in_order)]
    for a, c, n in zip(out_axes, chk, out_in_order):
        dim = up.index(a)
        if dim in lead and c != 1:
            raise ConfigError(message(f"chunks={tuple(chk)} with {c} along the looped axis "
                                      f"{a!r}", f"chunk size 1 along {a!r}",
                                      f"Pass chunks with 1 along {a!r}."))
        if dim == joint and c != n:
            raise ConfigError(message(f"chunks={tuple(chk)} with {c} of {n} channels for a "
                                      "multi-channel model", "all output channels in one "
                                      "chunk", f"Pass {n} along 'C'."))
    sp_chunks = [chk[out_axes.index(up[d])] for d in spatial]
    sp_shape = [shp[d] for d in spatial]
    rf = method.receptive_field
    div = int(getattr(method, "divisible_by", 1) or 1)
    if rf is None:
        halo = 0
        blocks_sp = list(sp_shape)
        if block_shape is not None and any(
                -(-b // c) * c < n for b, c, n in
                zip(_as_tuple(block_shape, nsp, "block_shape", minimum=1), sp_chunks,
                    sp_shape)):
            raise ConfigError(message(
                f"block_shape={block_shape!r} smaller than the image {tuple(sp_shape)} for "
                f"method {method.name!r}, whose receptive field is unbounded",
                "whole-extent blocks", "Omit block_shape (each block is then one whole "
                "image plane or volume)."))
    else:
        halo = int(rf)
        if block_shape is None:
            blocks_sp = _default_block(sp_shape, sp_chunks, halo)
        else:
            want = list(_as_tuple(block_shape, nsp, "block_shape", minimum=1))
            blocks_sp = [min(-(-w // c) * c, -(-n // c) * c)
                         for w, c, n in zip(want, sp_chunks, sp_shape)]
    per_axis = []
    for n, b in zip(sp_shape, blocks_sp):
        entries = []
        for w0, w1 in _block_bounds(n, b):
            r0 = (max(w0 - halo, 0) // div) * div
            r1 = min(w1 + halo, n)
            entries.append((slice(r0, r1), slice(w0, w1)))
        per_axis.append(entries)
    lead_ranges = [range(shp[d]) for d in lead]
    blocks = []
    for li in itertools.product(*lead_ranges):
        for combo in itertools.product(*per_axis):
            read, write = zip(*combo)
            blocks.append(Block(len(blocks), tuple(li), tuple(read), tuple(write)))
    return StreamPlan(axes=up, shape=shp, out_shape=out_shape, out_axes=out_axes,
                      chunks=tuple(chk), lead=tuple(lead), spatial=tuple(spatial),
                      joint=joint, halo=halo, divisible_by=div, block_shape=tuple(blocks_sp),
                      blocks=tuple(blocks))


#: Default capacity of the decoded-chunk cache of lazy inputs (bytes).
DEFAULT_CACHE_BYTES = 256 * 2**20


class ChunkCache:
    """Read a chunked lazy array (dask) through an LRU cache of decoded chunks.

    A block's halo reaches into neighbouring chunks, which a chunked store decodes whole;
    without a cache every chunk next to a block boundary is decoded several times (up to
    ``3**ndim`` for blocks of one chunk). Blocks are visited in C order, so chunks shared
    with the previous blocks are still cached when a capacity holds one layer of chunks.

    Parameters
    ----------
    array : dask.array.Array
        Lazy input; its dask chunks are the units read and cached.
    max_bytes : int
        Capacity of the cache; the least recently used chunks are dropped beyond it.

    Notes
    -----
    Only basic indexing by slices with step 1 (what :class:`StreamPlan` produces) and
    integers is supported. Thread-safe.
    """

    def __init__(self, array: Any, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        import threading
        from collections import OrderedDict

        self.array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.max_bytes = int(max_bytes)
        self._bounds = [np.cumsum((0, *c)) for c in array.chunks]
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self.decoded = 0  # chunks read from the array (for tests and benchmarks)

    def _chunk(self, key: tuple[int, ...]) -> np.ndarray:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        data = np.asarray(self.array.blocks[key])
        with self._lock:
            self.decoded += 1
            if key not in self._cache:
                self._cache[key] = data
                self._nbytes += data.nbytes
            while self._nbytes > self.max_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._nbytes -= old.nbytes
        return data

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (self.ndim - len(index))
        spans, squeeze = [], []
        for d, (ix, n) in enumerate(zip(index, self.shape)):
            if isinstance(ix, (int, np.integer)):
                i = int(ix) + (n if ix < 0 else 0)
                spans.append((i, i + 1))
                squeeze.append(d)
            else:
                start, stop, step = ix.indices(n)
                if step != 1:
                    raise IndexError("ChunkCache supports slices with step 1 only")
                spans.append((start, max(start, stop)))
        out = np.empty([b - a for a, b in spans], self.dtype)
        ranges = []
        for (a, b), bounds in zip(spans, self._bounds):
            lo = int(np.searchsorted(bounds, a, side="right")) - 1
            hi = int(np.searchsorted(bounds, b, side="left"))
            ranges.append(range(lo, max(lo + 1, hi)) if b > a else range(0))
        for key in itertools.product(*ranges):
            src, dst = [], []
            for k, (a, b), bounds in zip(key, spans, self._bounds):
                c0, c1 = int(bounds[k]), int(bounds[k + 1])
                lo, hi = max(a, c0), min(b, c1)
                src.append(slice(lo - c0, hi - c0))
                dst.append(slice(lo - a, hi - a))
            out[tuple(dst)] = self._chunk(key)[tuple(src)]
        return out.squeeze(axis=tuple(squeeze)) if squeeze else out


def cached_reader(image: Any, max_bytes: int = DEFAULT_CACHE_BYTES) -> Any:
    """``image`` wrapped in a :class:`ChunkCache` when it is a chunked dask array."""
    if hasattr(image, "blocks") and hasattr(image, "chunks") and hasattr(image, "dask"):
        return ChunkCache(image, max_bytes)
    return image


@dataclass(frozen=True)
class TileOptions:
    """How each block is tiled (see :func:`~fluorecon.predict.predict_method_tiled`)."""

    tile_shape: int | tuple[int, ...] | None = None
    memory_budget_bytes: float = DEFAULT_MEMORY_BUDGET
    bytes_per_voxel: float = DEFAULT_BYTES_PER_VOXEL
    batch_size: int = 1
    pad_mode: str = "reflect"


def predict_block_region(method: Method, image: Any, plan: StreamPlan, block: Block,
                         options: TileOptions = TileOptions()) -> np.ndarray:
    """Predict one block: read its region lazily, tile it, crop to the written region.

    Returns
    -------
    ndarray
        float32, the block's output region in ``plan.out_axes`` order (the shape of
        ``out[plan.output_index(block)]``).
    """
    region = np.asarray(image[plan.input_index(block)])
    pred = predict_method_tiled(method, region, plan.axes, tile_shape=options.tile_shape,
                                memory_budget_bytes=options.memory_budget_bytes,
                                bytes_per_voxel=options.bytes_per_voxel,
                                pad_mode=options.pad_mode,  # type: ignore[arg-type]
                                batch_size=options.batch_size)
    kept = np.asarray(pred, np.float32)[plan.crop_index(block)]
    return np.ascontiguousarray(np.transpose(kept, plan.permutation))


# --- the partial output folder -----------------------------------------------------------
def partial_dir_for(output: Path) -> Path:
    """The hidden folder in which ``output`` is built: ``.<name>.partial`` beside it."""
    output = Path(output).absolute()
    return output.parent / f".{output.name}.partial"


def _fingerprint(method: Method, plan: StreamPlan, source: str, tile: TileOptions) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(method.name.encode())
    h.update(method.config.model_dump_json().encode())
    model_config = getattr(method, "model_config", None)
    if model_config is not None:
        h.update(model_config.model_dump_json().encode())
    h.update(json.dumps(plan.describe(), sort_keys=True).encode())
    h.update(source.encode())
    h.update(json.dumps([repr(tile.tile_shape), tile.pad_mode], sort_keys=True).encode())
    return h.hexdigest()


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class StreamTarget:
    """The partial output of a streamed run: where chunks go and which blocks are done.

    ``fmt`` is the output format: ``"ome-zarr"`` (the finished zarr is moved into place)
    or ``"tiff"``/``"ome-tiff"`` (the finished zarr is converted slab by slab).
    """

    output: Path
    partial: Path
    plan: StreamPlan
    fmt: str = "ome-zarr"

    @property
    def image_path(self) -> Path:
        return self.partial / PARTIAL_IMAGE

    @property
    def done_dir(self) -> Path:
        return self.partial / "done"

    def array(self, mode: str = "r+") -> Any:
        """The output's level-0 zarr array (open it once per process or task)."""
        return open_ome_zarr_array(self.image_path, mode=mode)

    def done(self) -> set[int]:
        """Ids of blocks recorded as completely written."""
        found: set[int] = set()
        if self.done_dir.is_dir():
            for entry in os.scandir(self.done_dir):
                if entry.name.isdigit():
                    found.add(int(entry.name))
        return found

    def mark_done(self, block_id: int) -> None:
        """Record ``block_id`` as written (call only after its chunks are written)."""
        marker = self.done_dir / str(int(block_id))
        fd = os.open(marker, os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)

    def write_block(self, out: Any, block: Block, data: np.ndarray) -> None:
        """Write a block's output region (all its chunks), then its ``done`` marker."""
        out[self.plan.output_index(block)] = data
        self.mark_done(block.id)

    def finalize(self, *, overwrite: bool, progress: Progress | None = None) -> Path:
        """Put the complete image at the output path and remove the partial folder.

        OME-Zarr: one rename. TIFF: an atomic slab-by-slab conversion (memory of one
        slab), reporting ``progress(done, total)`` in slabs.
        """
        missing = len(self.plan.blocks) - len(self.done())
        if missing:
            raise RuntimeError(f"{missing} blocks of {self.output} are not written yet")
        if self.output.exists() and not overwrite:
            raise OutputExistsError(message(f"an existing output {self.output}",
                                            "a new path", "Pass overwrite=True."))
        if self.fmt == "ome-zarr":
            replace_path(self.image_path, self.output)
        else:
            from fluorecon.io import read_image, write_image

            array, meta = read_image(self.image_path, lazy=True)
            write_image(self.output, array, meta, overwrite=True, progress=progress)
        remove_path(self.partial)
        return self.output


def open_stream_target(output: str | os.PathLike[str], method: Method, plan: StreamPlan,
                       meta: ImageMeta, *, source: str, tile: TileOptions, resume: bool,
                       overwrite: bool, inputs: Sequence[str | os.PathLike[str]] = (),
                       compression: str | None = None) -> StreamTarget:
    """Create (or, with ``resume``, reopen) the partial output of a streamed run.

    Raises
    ------
    OutputExistsError
        ``output`` exists (without ``overwrite``) or is an input; a partial output of an
        interrupted run exists and neither ``resume`` nor ``overwrite`` is given.
    InputFileError
        ``resume`` with a partial output planned for other data, method or options.
    OutputPathError
        ``output`` is neither OME-Zarr (``.zarr``) nor TIFF (``.tif``, ``.ome.tif``).
    """
    out, fmt = check_output_path(output, overwrite=overwrite, inputs=inputs)
    if fmt not in ("ome-zarr", "tiff", "ome-tiff"):
        from fluorecon.io.validate import OutputPathError

        raise OutputPathError(message(f"streamed output '{out.name}'",
                                      "an OME-Zarr (.zarr) or TIFF (.tif, .ome.tif) path",
                                      "Write the streamed result to a .zarr folder."))
    partial = partial_dir_for(out)
    target = StreamTarget(out, partial, plan, fmt)
    record = partial / "stream.json"
    fp = _fingerprint(method, plan, source, tile)
    if partial.exists():
        if resume and record.is_file():
            try:
                saved = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = {}
            if saved.get("fingerprint") != fp:
                raise InputFileError(message(
                    f"a partial output in {partial} from a run with other data, method or "
                    "options", "the same input, model, chunks and tiling to resume",
                    "Rerun with the original options, or pass overwrite to start afresh."))
            if target.image_path.is_dir():
                return target
        elif not overwrite and not resume:
            raise OutputExistsError(message(
                f"a partial output of an interrupted run in {partial}",
                "resume to continue it, or overwrite to start afresh",
                "Rerun with --resume (same options) or --overwrite."))
        remove_path(partial)
    partial.mkdir(parents=True)
    (partial / "done").mkdir()
    out_meta = meta.model_copy(update={"axes": plan.out_axes})
    if plan.joint is not None and plan.out_shape[plan.joint] != plan.shape[plan.joint]:
        out_meta = out_meta.model_copy(update={"channel_names": None})
    out_meta = _ngff_meta(out_meta, meta, plan)
    shape = tuple(plan.out_shape[plan.axes.index(a)] for a in plan.out_axes)
    create_ome_zarr(target.image_path, shape=shape, dtype=np.float32, meta=out_meta,
                    chunks=plan.chunks, compression=compression)
    _write_json_atomic(record, {"format": STREAM_FORMAT, "version": STREAM_VERSION,
                                "fingerprint": fp, "output": str(out), "source": source,
                                "plan": plan.describe()})
    return target


def _ngff_meta(out_meta: ImageMeta, meta: ImageMeta, plan: StreamPlan) -> ImageMeta:
    """Pixel sizes and channel names follow their axes into NGFF order."""
    names = out_meta.channel_names
    return ImageMeta(axes=plan.out_axes, pixel_size=dict(meta.pixel_size),
                     time_interval=meta.time_interval, channel_names=names,
                     extra=dict(out_meta.extra))


def stream_predict(method: Method, image: Any, axes: str, output: str | os.PathLike[str], *,
                   meta: ImageMeta | None = None, chunks: Sequence[int] | None = None,
                   block_shape: int | Sequence[int] | None = None,
                   tile_shape: int | Sequence[int] | None = None,
                   memory_budget_bytes: float = DEFAULT_MEMORY_BUDGET,
                   bytes_per_voxel: float = DEFAULT_BYTES_PER_VOXEL, batch_size: int = 1,
                   pad_mode: PadMode = "reflect", compression: str | None = None,
                   resume: bool = False, overwrite: bool = False,
                   inputs: Sequence[str | os.PathLike[str]] = (), source: str | None = None,
                   progress: Progress | None = None) -> Path:
    """Predict ``image`` block by block into an OME-Zarr output, with bounded memory.

    Parameters
    ----------
    method : Method
        A ready (fitted or trained) method with a bounded ``receptive_field`` (methods
        without one are run on whole planes or volumes, one block per looped index).
    image : array_like
        NumPy array, :class:`numpy.memmap`, dask or zarr array (e.g. from
        ``read_image(path, lazy=True)``); only one block plus its halo is read at a time.
    axes : str
        Axes of ``image``.
    output : path
        OME-Zarr folder (``.zarr`` / ``.ome.zarr``; axes in NGFF order) or TIFF file
        (``.tif`` / ``.ome.tif``; written at the end from the finished OME-Zarr, slab by
        slab, uncompressed so it can be memory-mapped), float32.
    meta : ImageMeta, optional
        Metadata of the input (pixel sizes, channel names, provenance in ``extra``);
        default: axes only.
    chunks : sequence of int, optional
        Output chunk shape, NGFF axes order (see :func:`plan_stream`).
    block_shape : int or sequence of int, optional
        Spatial size written per block (see :func:`plan_stream`).
    tile_shape, memory_budget_bytes, bytes_per_voxel, batch_size, pad_mode
        Tiling within a block, as in :func:`~fluorecon.predict.predict_method_tiled`.
    compression : str, optional
        OME-Zarr compression (default Blosc zstd).
    resume : bool, default False
        Continue an interrupted run into the same ``output``: blocks already recorded as
        written are skipped. The plan (input, method, chunks, tiling) must be the same.
    overwrite : bool, default False
        Replace an existing ``output`` and discard a partial one.
    inputs : sequence of path
        Paths the output must never replace (the input file, the model folder).
    source : str, optional
        Identifies the input in the resume fingerprint (e.g. its path); default: shape
        and dtype only.
    progress : callable, optional
        ``progress(done, total)`` in blocks, after each block (skipped ones included).

    Returns
    -------
    Path
        The output path.

    Raises
    ------
    OutputExistsError, OutputPathError, InputFileError, ConfigError, AxesError, DataError
        See :func:`open_stream_target` and :func:`plan_stream`; NaN/inf in the input.

    Notes
    -----
    Peak memory is at most ``memory_budget_bytes`` (one batch of tiles) plus three
    float32 copies of one block grown by its halo (read region, its prediction, the
    cropped output; :data:`DEFAULT_BLOCK_VOXELS`), plus the decoded-chunk cache of a
    dask input (:data:`DEFAULT_CACHE_BYTES`, :class:`ChunkCache`), plus the chunks zarr
    compresses at once; it does not grow with the image.
    The result equals :func:`~fluorecon.predict.predict_method_tiled` on the whole image
    (see :func:`plan_stream`, Notes); an interrupted and resumed run equals an
    uninterrupted one because blocks are independent and deterministic.

    Examples
    --------
    >>> from fluorecon.io import read_image  # doctest: +SKIP
    >>> image, meta = read_image("big.ome.zarr", lazy=True)  # doctest: +SKIP
    >>> stream_predict(method, image, meta.axes, "restored.ome.zarr", meta=meta,
    ...                resume=True)  # doctest: +SKIP
    """
    plan = plan_stream(method, tuple(int(s) for s in image.shape), axes, chunks=chunks,
                       block_shape=block_shape)
    tile = make_tile_options(tile_shape=tile_shape, memory_budget_bytes=memory_budget_bytes,
                             bytes_per_voxel=bytes_per_voxel, batch_size=batch_size,
                             pad_mode=pad_mode)
    meta = meta if meta is not None else ImageMeta(axes=plan.axes)
    src = source if source is not None else describe_source(image)
    target = open_stream_target(output, method, plan, meta, source=src, tile=tile,
                                resume=resume, overwrite=overwrite, inputs=inputs,
                                compression=compression)
    done = target.done()
    out = target.array()
    reader = cached_reader(image)
    total = len(plan.blocks)
    count = len(done)
    if progress is not None:
        progress(count, total)
    for block in plan.blocks:
        if block.id in done:
            continue
        target.write_block(out, block, predict_block_region(method, reader, plan, block, tile))
        count += 1
        if progress is not None:
            progress(count, total)
    return target.finalize(overwrite=overwrite)


def make_tile_options(*, tile_shape: int | Sequence[int] | None,
                      memory_budget_bytes: float, bytes_per_voxel: float, batch_size: int,
                      pad_mode: str) -> TileOptions:
    """Validate the tiling options shared by the streamed and distributed runners."""
    check_pad_mode(pad_mode)
    check_batch_size(batch_size)
    for name, val in (("memory_budget_bytes", memory_budget_bytes),
                      ("bytes_per_voxel", bytes_per_voxel)):
        if isinstance(val, bool) or not isinstance(val, (int, float, np.integer,
                                                         np.floating)) \
                or not math.isfinite(float(val)) or float(val) <= 0:
            raise ConfigError(message(f"{name}={val!r}", "a positive finite number",
                                      f"Pass {name} in bytes, e.g. 2**30."))
    ts = tile_shape if tile_shape is None or isinstance(tile_shape, int) \
        else tuple(int(t) for t in tile_shape)
    return TileOptions(tile_shape=ts, memory_budget_bytes=float(memory_budget_bytes),
                       bytes_per_voxel=float(bytes_per_voxel), batch_size=int(batch_size),
                       pad_mode=pad_mode)


def describe_source(image: Any) -> str:
    """A resume-fingerprint description of an in-memory input: shape and dtype."""
    return f"array{tuple(int(s) for s in image.shape)}:{np.dtype(image.dtype).str}"
