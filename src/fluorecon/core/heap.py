"""Reuse freed heap memory during heavy array work (glibc malloc tuning, scoped).

glibc's ``malloc`` serves every block above ``M_MMAP_THRESHOLD`` (at most 32 MiB with its
dynamic threshold) by a fresh ``mmap`` and returns it with ``munmap`` when freed. A network
forward pass or training step allocates and frees tensors of tens to hundreds of MiB
(a 32-channel float32 feature map of one megapixel is 128 MiB), so every call page-faults
and zero-fills all of its working memory again. Measured on the 2-core machine of
``docs/benchmarks.md`` (``benchmarks/bench_heap.py``, ``bench_learned.py``): N2V training
steps of 128 patches 1.3x faster, and a fresh process predicting a 1024x1024 image in two
tiles 1.6x faster (0.47 -> 0.77 MPix/s). This is the effect tcmalloc/jemalloc preloading has (Intel's
PyTorch CPU tuning guide recommends them) without preloading anything.

:func:`heap_reuse` raises both thresholds for the duration of a ``with`` block, so freed
blocks stay in the heap and are reused, then restores glibc's defaults (128 KiB) and
returns the freed memory to the system with ``malloc_trim(0)``. Nested and concurrent
uses share one setting (the outermost exit restores). The process's peak resident memory
can be higher than with ``mmap`` (freed blocks are reused, not released, and the heap can
fragment); resident memory after the block is back to what is in use. Elsewhere than
glibc (macOS, Windows, musl) it does nothing. ``FLUORECON_HEAP_REUSE=0`` turns it off.

Notes
-----
Only the main thread's arena grows without bound; blocks larger than an arena heap
(64 MiB) allocated from other threads are still served by ``mmap``, so work run in a
worker thread (e.g. napari's) gains less.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Iterator

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_GLIBC_DEFAULT = 128 * 1024
_LARGE = 2**31 - 1

_lock = threading.Lock()
_depth = 0
_libc: ctypes.CDLL | None | bool = False  # False: not looked up yet


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is False:
        _libc = None
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.gnu_get_libc_version  # noqa: B018  (glibc only; musl lacks it)
                lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                lib.mallopt.restype = ctypes.c_int
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                _libc = lib
            except (OSError, AttributeError):
                _libc = None
    return _libc  # type: ignore[return-value]


def heap_reuse_enabled() -> bool:
    """Whether :func:`heap_reuse` changes anything here (glibc, not switched off)."""
    return os.environ.get("FLUORECON_HEAP_REUSE", "1") != "0" and _glibc() is not None


@contextlib.contextmanager
def heap_reuse() -> Iterator[None]:
    """Keep freed large blocks in the heap for the duration of the block.

    Examples
    --------
    >>> import numpy as np
    >>> with heap_reuse():
    ...     total = sum(float(np.ones(1 << 22).sum()) for _ in range(3))
    >>> total
    12582912.0
    """
    global _depth
    lib = None if os.environ.get("FLUORECON_HEAP_REUSE", "1") == "0" else _glibc()
    if lib is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            lib.mallopt(_M_MMAP_THRESHOLD, _LARGE)
            lib.mallopt(_M_TRIM_THRESHOLD, _LARGE)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                lib.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT)
                lib.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT)
                lib.malloc_trim(0)
