"""Split an array into slabs along its first axis for streaming writes.

Slab boundaries follow the chunks of lazy inputs (dask, zarr) so each input chunk is
computed or decompressed once, are multiples of ``align`` (the output chunk size) so
chunked outputs are written whole, and hold about ``max_bytes`` for plain arrays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DEFAULT_SLAB_BYTES = 64 << 20


def _input_boundaries(array: Any, n: int) -> set[int] | None:
    chunks = getattr(array, "chunks", None)
    if chunks is None or not len(chunks):
        return None
    first = chunks[0]
    if isinstance(first, tuple):  # dask: sizes of every chunk
        return set(np.cumsum((0, *first)).tolist())
    step = int(first)  # zarr: one chunk size
    return set(range(0, n, step)) | {n}


def slab_bounds(array: Any, *, align: int = 1,
                max_bytes: int = DEFAULT_SLAB_BYTES) -> list[tuple[int, int]]:
    """Return ``[(start, stop), ...]`` covering ``range(array.shape[0])``.

    Examples
    --------
    >>> slab_bounds(np.zeros((10, 4)), align=4)
    [(0, 10)]
    """
    n = int(array.shape[0])
    row_bytes = max(1, math.prod(int(s) for s in array.shape[1:]) * np.dtype(array.dtype).itemsize)
    inputs = _input_boundaries(array, n)
    if inputs is None:
        rows = max(align, (max_bytes // row_bytes) // align * align)
        return [(a, min(a + rows, n)) for a in range(0, n, rows)]
    bounds, start = [], 0
    while start < n:
        stop = start + 1
        # smallest stop that ends an input chunk and an output chunk (or the array)
        while stop < n and not (stop in inputs and stop % align == 0):
            stop += 1
        bounds.append((start, stop))
        start = stop
    return bounds
