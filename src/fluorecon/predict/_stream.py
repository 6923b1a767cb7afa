"""Shared machinery of the tiled runners: validation, lazy tile reads, batched calls."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import AxesError, ConfigError, DataError, message
from fluorecon.predict.tiling import Tile

BatchFn = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int], None]


def check_layout(image: Any, axes: str) -> tuple[str, list[int], list[int]]:
    """Validate ``image``/``axes`` without reading data; return axes, lead and spatial dims."""
    check_image_array(image, finite=False)
    up = check_axes(axes, ndim=len(image.shape))
    sp = spatial_axes(up)
    if len(sp) not in (2, 3):
        raise AxesError(message(f"axes {up!r} with spatial axes {sp!r}",
                                "2 or 3 spatial axes (YX or ZYX)", "Check the axes string."))
    spatial = [i for i, a in enumerate(up) if a in sp]
    lead = [i for i, a in enumerate(up) if a not in sp]
    return up, lead, spatial


def check_out(out: Any, shape: tuple[int, ...]) -> Any:
    """Return ``out`` or a new float32 array; check the shape of a supplied one."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    oshape = tuple(int(s) for s in getattr(out, "shape", ()))
    if oshape != shape or not hasattr(out, "__setitem__"):
        raise ConfigError(message(f"out of type {type(out).__name__} with shape {oshape}",
                                  f"a writable array of shape {shape}",
                                  "Pass a NumPy, memmap or zarr array shaped like the image."))
    return out


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ConfigError(message(f"batch_size={batch_size!r}", "a positive integer",
                                  "Pass e.g. batch_size=4."))
    return int(batch_size)


def full_index(ndim: int, lead: list[int], lead_idx: tuple[int, ...], spatial: list[int],
               spatial_slices: Sequence[slice]) -> tuple[int | slice, ...]:
    """Index tuple in the image's own axis order (no transposes, so zarr/dask stay lazy)."""
    index: list[int | slice] = [slice(None)] * ndim
    for dim, i in zip(lead, lead_idx):
        index[dim] = i
    for dim, s in zip(spatial, spatial_slices):
        index[dim] = s
    return tuple(index)


def read_tile(image: Any, index: tuple[int | slice, ...], tile: Tile, pad_mode: str
              ) -> np.ndarray:
    """Read one tile lazily (only ``read_slices``) and pad it into the network input."""
    arr = as_float32(image[index])
    if not np.isfinite(arr).all():
        raise DataError(message(f"NaN or infinite values in the tile at "
                                f"{[(s.start, s.stop) for s in tile.read_slices]}",
                                "finite values", "Replace or mask the invalid pixels first."))
    return np.ascontiguousarray(tile.read_input(arr, pad_mode))


def read_joint_tile(image: Any, index: tuple[int | slice, ...], tile: Tile, pad_mode: str,
                    channel_pos: int) -> np.ndarray:
    """Read one tile of all channels: ``(C, *input_shape)``, the channel axis first.

    ``channel_pos`` is the position of the channel axis among the dimensions that
    ``image[index]`` keeps (the channel and spatial axes, in the image's order).
    """
    arr = np.moveaxis(as_float32(image[index]), channel_pos, 0)
    if not np.isfinite(arr).all():
        raise DataError(message(f"NaN or infinite values in the tile at "
                                f"{[(s.start, s.stop) for s in tile.read_slices]}",
                                "finite values", "Replace or mask the invalid pixels first."))
    return np.ascontiguousarray(np.stack([tile.read_input(a, pad_mode) for a in arr]))


def iter_batches(fn: BatchFn, image: Any, lead: list[int], spatial: list[int],
                 tiles: list[Tile], *, batch_size: int, pad_mode: str,
                 joint: int | None = None, out_channels: int | None = None
                 ) -> Iterator[tuple[list[tuple[tuple[int, ...], Tile]], np.ndarray]]:
    """Yield ``(jobs, predictions)`` batch by batch over all non-spatial indices and tiles.

    Every tile of a plan has the same input shape, so tiles of different ``S``/``T``/``C``
    indices batch together. ``predictions`` is float32 ``(len(jobs), *input_shape)``.
    With ``joint`` (the dimension of a channel axis processed jointly, not in ``lead``),
    batches are ``(B, C_in, *input_shape)`` and predictions
    ``(B, out_channels, *input_shape)``.
    """
    ndim = len(image.shape)
    lead_ranges = [range(int(image.shape[d])) for d in lead]
    jobs = ((li, t) for li in itertools.product(*lead_ranges) for t in tiles)
    channel_pos = None if joint is None else sum(1 for d in spatial if d < joint)
    while True:
        chunk = list(itertools.islice(jobs, batch_size))
        if not chunk:
            return
        if channel_pos is None:
            batch = np.stack([read_tile(image, full_index(ndim, lead, li, spatial,
                                                          t.read_slices), t, pad_mode)
                              for li, t in chunk])
            expected = batch.shape
        else:
            batch = np.stack([read_joint_tile(image, full_index(ndim, lead, li, spatial,
                                                                t.read_slices), t, pad_mode,
                                              channel_pos) for li, t in chunk])
            expected = (batch.shape[0], int(out_channels or batch.shape[1])) + batch.shape[2:]
        pred = np.asarray(fn(batch))
        if pred.shape != expected:
            keep = "keep the shape" if channel_pos is None else f"return {expected}"
            raise RuntimeError(f"the tile function returned shape {pred.shape} for a batch "
                               f"of shape {batch.shape}; it must {keep}")
        yield chunk, pred.astype(np.float32, copy=False)
