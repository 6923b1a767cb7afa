"""Exact crop-and-stitch prediction of large images, tile by tile, with a memory budget."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fluorecon.core.errors import AxesError, ConfigError, message
from fluorecon.core.heap import heap_reuse
from fluorecon.predict._stream import (
    BatchFn,
    Progress,
    check_batch_size,
    check_layout,
    check_out,
    full_index,
    iter_batches,
)
from fluorecon.predict.tiling import (
    PadMode,
    _as_tuple,
    auto_budget_cap,
    auto_tile_shape,
    check_pad_mode,
    choose_tile_shape,
    plan_tiles,
    window_size,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fluorecon.methods.base import Method

#: Memory allowed for one batch of tiles (bytes) when none is given; automatic sizing
#: raises it where tiles that small would be mostly halo (see ``auto_tile_shape``).
DEFAULT_MEMORY_BUDGET = 1 << 28
#: Default working memory per network-input voxel (bytes): a conservative figure for a
#: small U-Net in float32; pass the real one for large networks.
DEFAULT_BYTES_PER_VOXEL = 256.0


@heap_reuse()
def predict_tiled(fn: BatchFn, image: Any, axes: str, *,
                  tile_shape: int | Sequence[int] | None = None,
                  halo: int | Sequence[int], divisible_by: int | Sequence[int] = 1,
                  memory_budget_bytes: float | None = None,
                  bytes_per_voxel: float = DEFAULT_BYTES_PER_VOXEL, batch_size: int = 1,
                  pad_mode: PadMode = "reflect", out: Any = None,
                  progress: Progress | None = None, joint_channels: bool = False,
                  out_channels: int | None = None) -> Any:
    """Apply a batch function to ``image`` tile by tile and stitch the crops exactly.

    Parameters
    ----------
    fn : callable
        ``fn(batch) -> prediction`` on a float32 array ``(B, *spatial)`` of equally shaped
        network inputs, returning an array of the same shape (any float dtype; stored as
        float32). Called once per batch; must not keep a reference to ``batch``.
    image : array_like
        NumPy array, :class:`numpy.memmap`, dask or zarr array (anything with ``shape``,
        ``dtype`` and NumPy slicing). Read lazily: only one tile (plus halo) at a time.
        Not modified. Integer data are converted to float32 by value.
    axes : str
        Axes of ``image`` (e.g. ``"YX"``, ``"ZYX"``, ``"TCZYX"``). Non-spatial axes are
        looped over; their tiles are batched together.
    tile_shape : int or sequence of int, optional
        Region written per tile, per spatial axis (see :func:`plan_tiles`). Default: the
        largest that fits ``memory_budget_bytes`` (:func:`choose_tile_shape`).
    halo : int or sequence of int
        Receptive-field half-width of ``fn`` in pixels (per spatial axis).
    divisible_by : int or sequence of int, default 1
        Required multiple of the network-input size (``2**depth`` for a U-Net).
    memory_budget_bytes : float, optional
        Memory allowed for one batch when ``tile_shape`` is chosen automatically. Default
        (None): ``DEFAULT_MEMORY_BUDGET`` (256 MiB), raised (doubled, up to a quarter of
        the available memory) only where tiles that small would compute more than
        ``AUTO_MAX_OVERHEAD`` (1.3) voxels per image voxel or where no tile fits
        (:func:`~fluorecon.predict.tiling.auto_tile_shape`; typical of 3D networks,
        whose halos make small tiles mostly halo). A number is a hard limit.
    bytes_per_voxel : float, default 256
        Working memory of ``fn`` per spatial voxel of its input (network activations
        included; with ``joint_channels``, for all channels together).
    batch_size : int, default 1
        Tiles per call of ``fn``.
    pad_mode : {"reflect", "symmetric", "edge"}, default "reflect"
        How the image end is extended to a multiple of ``divisible_by`` (NumPy names).
    out : array_like, optional
        Writable array shaped like ``image`` (NumPy, memmap, zarr) to write into; by
        default a new float32 NumPy array.
    progress : callable, optional
        ``progress(done, total)`` after each batch, counting tiles over all non-spatial
        indices.
    joint_channels : bool, default False
        Pass the ``C`` axis to ``fn`` jointly instead of looping over it: batches are then
        ``(B, C_in, *spatial)`` and ``fn`` returns ``(B, out_channels, *spatial)`` (for
        multi-channel networks, e.g. in-silico labelling with other output channels).
    out_channels : int, optional
        Output channels with ``joint_channels`` (default: as many as the input has). The
        result has this size along ``C``.

    Returns
    -------
    array
        ``out`` (or the new float32 array), same axes as ``image`` and the same shape
        (except along ``C`` with ``out_channels``).

    Raises
    ------
    ConfigError
        Bad tile shape, halo, divisibility, batch size, pad mode, ``out`` or budget;
        ``joint_channels`` without a ``C`` axis.
    AxesError, DataError
        Invalid axes; unsupported dtype, empty image, or NaN/inf in a tile.

    Notes
    -----
    The result equals the whole-image prediction
    ``fn(np.pad(block, [(0, roundup(n, d) - n)], pad_mode)[None])[0][:n]`` of every
    spatial block, up to the floating-point behaviour of ``fn`` on different input
    sizes, whenever ``fn``'s output at a pixel depends only on input within ``halo`` and
    on the distance to the array border (see :func:`plan_tiles`, Notes). With
    ``divisible_by=1`` this is ``fn`` applied to the whole block: no padding is
    introduced at all, since windows are shifted inwards at the image borders rather
    than padded. Tiles never overlap in the output, so nothing is averaged.

    The tiles run under :func:`~fluorecon.core.heap.heap_reuse`: freed large blocks stay
    in the heap for the next tile instead of being mapped and zero-filled afresh (faster
    on glibc), at a peak the ``bytes_per_voxel`` of a learned method accounts for.

    Examples
    --------
    >>> from scipy import ndimage
    >>> img = np.random.default_rng(0).random((37, 53), dtype=np.float32)
    >>> f = lambda b: ndimage.uniform_filter(b, size=(1, 5, 5), mode="nearest")
    >>> tiled = predict_tiled(f, img, "YX", tile_shape=16, halo=2)
    >>> bool(np.array_equal(tiled, f(img[None])[0]))
    True
    """
    up, lead, spatial = check_layout(image, axes)
    shape = tuple(int(s) for s in image.shape)
    sp_shape = tuple(shape[d] for d in spatial)
    joint: int | None = None
    out_shape = shape
    if joint_channels:
        if "C" not in up:
            raise ConfigError(message(f"joint_channels=True with axes {up!r}", "a C axis",
                                      "Pass axes with C, or joint_channels=False."))
        joint = up.index("C")
        lead = [d for d in lead if d != joint]
        n_out = shape[joint] if out_channels is None else int(out_channels)
        if n_out < 1:
            raise ConfigError(message(f"out_channels={out_channels!r}", "a positive integer",
                                      "Pass the network's output channel count."))
        out_shape = shape[:joint] + (n_out,) + shape[joint + 1:]
    elif out_channels is not None:
        raise ConfigError(message(f"out_channels={out_channels} without joint_channels",
                                  "joint_channels=True", "Pass joint_channels=True."))
    mode = check_pad_mode(pad_mode)
    bs = check_batch_size(batch_size)
    if not callable(fn):
        raise ConfigError(message(f"fn of type {type(fn).__name__}", "a callable batch -> "
                                  "prediction", "Pass a function of one array."))
    if tile_shape is None and memory_budget_bytes is None:
        tile_shape, _ = auto_tile_shape(sp_shape, bytes_per_voxel=bytes_per_voxel,
                                        base_budget_bytes=DEFAULT_MEMORY_BUDGET, halo=halo,
                                        divisible_by=divisible_by, batch_size=bs)
    elif tile_shape is None:
        tile_shape = choose_tile_shape(sp_shape, bytes_per_voxel=bytes_per_voxel,
                                       memory_budget_bytes=memory_budget_bytes, halo=halo,
                                       divisible_by=divisible_by, batch_size=bs)
    tiles = plan_tiles(sp_shape, tile_shape=tile_shape, halo=halo,
                       divisible_by=divisible_by, pad_mode=mode)
    result = check_out(out, out_shape)
    total = len(tiles) * math.prod(shape[d] for d in lead)
    done = 0
    channel_pos = None if joint is None else sum(1 for d in spatial if d < joint)
    for jobs, pred in iter_batches(fn, image, lead, spatial, tiles, batch_size=bs,
                                   pad_mode=mode, joint=joint, out_channels=out_shape[joint]
                                   if joint is not None else None):
        for (li, tile), p in zip(jobs, pred):
            index = full_index(len(shape), lead, li, spatial, tile.write_slices)
            if channel_pos is None:
                result[index] = p[tile.crop_slices]
            else:
                result[index] = np.moveaxis(p[(slice(None),) + tile.crop_slices], 0,
                                            channel_pos)
        done += len(jobs)
        if progress is not None:
            progress(done, total)
    return result


def predict_method_tiled(method: Method, image: Any, axes: str, *,
                         tile_shape: int | Sequence[int] | None = None,
                         memory_budget_bytes: float | None = None,
                         bytes_per_voxel: float | None = None,
                         pad_mode: PadMode = "reflect", out: Any = None,
                         progress: Progress | None = None, batch_size: int = 1) -> Any:
    """Run a :class:`~fluorecon.methods.Method` tile by tile through ``predict_block``.

    The halo is ``method.receptive_field`` and the divisibility ``method.divisible_by``
    (1 if the method has none). Each tile is passed to ``predict_block`` as a
    ``"YX"``/``"ZYX"`` block, or, for methods with a ``predict_batch(batch, axes)``
    (learned methods), ``batch_size`` tiles at a time in one call. Methods whose
    ``channel_counts`` is ``(c_in, c_out)`` (multi-channel networks) get the ``C`` axis
    jointly as ``"CYX"``/``"CZYX"`` blocks and return ``c_out`` channels.

    Parameters
    ----------
    method : Method
        A ready (fitted or trained, where needed) method.
    image, axes, tile_shape, memory_budget_bytes, pad_mode, out, progress
        As in :func:`predict_tiled`.
    bytes_per_voxel : float, optional
        Working memory per input voxel; default the method's own ``bytes_per_voxel``
        estimate (learned methods have one), else ``DEFAULT_BYTES_PER_VOXEL``.
    batch_size : int, default 1
        Tiles per call of ``predict_batch`` (ignored for methods without it).

    Returns
    -------
    array
        float32 result (or ``out``), same axes as ``image``; same shape, except along
        ``C`` for multi-channel methods mapping ``c_in`` to ``c_out`` channels.

    Raises
    ------
    ConfigError
        The method's receptive field is unbounded (``None``) while tiling is needed (a
        ``tile_shape`` smaller than the image, or a memory budget too small for one
        tile): exact stitching is impossible then.
    AxesError
        The method does not support the image's spatial dimensionality.

    Notes
    -----
    Exactness needs ``predict_block`` to be local: methods that estimate parameters
    from the whole block (self-calibration, noise estimation, percentile
    normalisation) report ``receptive_field=None`` and run untiled here. A method's
    ``receptive_field`` may be a practical rather than strict bound (e.g. iterative
    deconvolution), in which case tiles agree with the whole image only approximately.
    """
    up, lead, spatial = check_layout(image, axes)
    if bytes_per_voxel is None:
        bytes_per_voxel = float(getattr(method, "bytes_per_voxel", None)
                                or DEFAULT_BYTES_PER_VOXEL)
    nsp = len(spatial)
    if nsp not in method.spatial_dims:
        dims = " or ".join(f"{d}D" for d in method.spatial_dims)
        raise AxesError(message(f"a {nsp}D image (axes {up!r}) for method {method.name!r}",
                                f"{dims} spatial data", "Choose another method or axes."))
    sp_axes = "".join(up[d] for d in spatial)
    sp_shape = tuple(int(image.shape[d]) for d in spatial)
    div = int(getattr(method, "divisible_by", 1) or 1)
    rf = method.receptive_field
    if rf is None:
        n_pads = tuple(-(-n // div) * div for n in sp_shape)
        if tile_shape is None:
            need = bytes_per_voxel * math.prod(n_pads)
            if memory_budget_bytes is None:  # auto: up to a quarter of what is available
                memory_budget_bytes = auto_budget_cap(DEFAULT_MEMORY_BUDGET)
            if need > memory_budget_bytes:
                raise ConfigError(message(
                    f"method {method.name!r} with an unbounded receptive field and an image "
                    f"of {sp_shape} needing {need:.3g} bytes > memory_budget_bytes="
                    f"{memory_budget_bytes:.3g}", "a bounded receptive field to tile exactly",
                    "Raise the memory budget to process whole blocks, or use a method with "
                    "a bounded receptive field."))
        else:
            tiles_ = _as_tuple(tile_shape, nsp, "tile_shape", minimum=1)
            if any(window_size(n, t, 0, div) < npd for n, t, npd in
                   zip(sp_shape, tiles_, n_pads)):
                raise ConfigError(message(
                    f"tile_shape={tile_shape!r} smaller than the image {sp_shape} for method "
                    f"{method.name!r}, whose receptive field is unbounded",
                    "whole-block prediction (tiles cannot be stitched exactly)",
                    "Omit tile_shape, or use method.predict."))
        tile_shape, halo = n_pads, 0
    else:
        halo = int(rf)

    counts = getattr(method, "channel_counts", None)
    if counts is not None and "C" not in up:
        raise AxesError(message(f"axes {up!r} for a model with {counts[0]} input channels",
                                "a C axis", "Pass axes with C, e.g. 'CYX'."))
    block_axes = ("C" if counts is not None else "") + sp_axes
    batched = getattr(method, "predict_batch", None)

    def fn(batch: np.ndarray) -> np.ndarray:
        if batched is not None:
            return np.asarray(batched(batch, block_axes), dtype=np.float32)
        return np.stack([np.asarray(method.predict_block(b, block_axes), dtype=np.float32)
                         for b in batch])

    return predict_tiled(fn, image, up, tile_shape=tile_shape, halo=halo, divisible_by=div,
                         memory_budget_bytes=memory_budget_bytes,
                         bytes_per_voxel=bytes_per_voxel,
                         batch_size=batch_size if batched is not None else 1,
                         pad_mode=pad_mode, out=out, progress=progress,
                         joint_channels=counts is not None,
                         out_channels=None if counts is None else counts[1])
