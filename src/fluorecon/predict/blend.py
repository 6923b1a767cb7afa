"""Overlapping tiles averaged with smooth weights, for outputs that cannot be stitched exactly.

Crop-and-stitch (:func:`~fluorecon.predict.predict_tiled`) is exact for functions with a
bounded receptive field and is the default. Where a function's output depends on the
whole tile (unbounded receptive field: group-normalised networks, per-tile statistics,
iterative deconvolution), every tiling leaves seams; averaging overlapping tiles with
weights that taper to ~0 at interior tile edges hides them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from fluorecon.core.errors import ConfigError, message
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
    Tile,
    _as_tuple,
    _Axis,
    _axis_read,
    _roundup,
    check_pad_mode,
)

BlendKind = Literal["linear", "cosine"]


def ramp(length: int, kind: BlendKind = "cosine") -> np.ndarray:
    """Rising weights of ``length`` pixels, sampled at pixel centres, in (0, 1).

    ``"linear"``: :math:`r_j = (j + 1/2)/L`; ``"cosine"``: :math:`r_j = \\sin^2(\\pi
    (j + 1/2) / (2L))`. Both satisfy :math:`r_j + r_{L-1-j} = 1`, so a rising and a
    falling ramp over the same pixels sum to one.
    """
    if kind not in ("linear", "cosine"):
        raise ConfigError(message(f"blend={kind!r}", "'linear' or 'cosine'",
                                  "Use predict_tiled for exact crop-and-stitch."))
    t = (np.arange(length, dtype=np.float64) + 0.5) / max(length, 1)
    return t if kind == "linear" else np.sin(0.5 * np.pi * t) ** 2


def _axis_windows(n: int, window: int, overlap: int, d: int) -> _Axis:
    n_pad = _roundup(n, d)
    p = min(_roundup(window, d), n_pad)
    if p >= n_pad:
        return _Axis(n, n_pad, n_pad, (0,), (0, n))
    step = (p - overlap) // d * d
    if step < d:
        raise ConfigError(message(f"overlap={overlap} for windows of {p} pixels "
                                  f"(divisible_by={d})", f"overlap <= {p - d}",
                                  "Lower the overlap or enlarge the tiles."))
    m = (n_pad - p) // d
    k = 1 + -(-(n_pad - p) // step)
    starts = tuple(d * ((i * m) // (k - 1)) for i in range(k))
    return _Axis(n, n_pad, p, starts, ())


def _axis_weights(ax: _Axis, kind: BlendKind) -> list[np.ndarray]:
    """Weights of each window along one axis: ramps over the overlaps with neighbours."""
    out = []
    for i, s in enumerate(ax.starts):
        w = np.ones(ax.window, dtype=np.float64)
        if i > 0:
            ov = ax.starts[i - 1] + ax.window - s
            w[:ov] = np.minimum(w[:ov], ramp(ov, kind))
        if i < len(ax.starts) - 1:
            ov = s + ax.window - ax.starts[i + 1]
            w[ax.window - ov:] = np.minimum(w[ax.window - ov:], ramp(ov, kind)[::-1])
        out.append(w)
    return out


def predict_blended(fn: BatchFn, image: Any, axes: str, *, tile_shape: int | Sequence[int],
                    overlap: int | Sequence[int], blend: BlendKind = "cosine",
                    divisible_by: int | Sequence[int] = 1, batch_size: int = 1,
                    pad_mode: PadMode = "reflect", out: Any = None,
                    progress: Progress | None = None) -> Any:
    """Apply ``fn`` on overlapping tiles and average them with tapering weights.

    Parameters
    ----------
    fn : callable
        ``fn(batch) -> prediction`` on float32 ``(B, *window)`` arrays, same shape out.
    image : array_like
        NumPy, memmap, dask or zarr array; read one window at a time. Not modified.
    axes : str
        Axes of ``image``; non-spatial axes are looped over.
    tile_shape : int or sequence of int
        Network-input window per spatial axis (rounded up to ``divisible_by``; capped by
        the image padded to a multiple of it).
    overlap : int or sequence of int
        Least overlap of neighbouring windows, in pixels; the blending ramps span the
        actual overlaps. ``overlap <= window - divisible_by``.
    blend : {"cosine", "linear"}, default "cosine"
        Shape of the ramps (see :func:`ramp`).
    divisible_by, batch_size, pad_mode, out, progress
        As in :func:`~fluorecon.predict.predict_tiled`. ``out`` is zeroed, then
        accumulated into (read-modify-write).

    Returns
    -------
    array
        ``out`` or a new float32 array shaped like ``image``.

    Notes
    -----
    Windows :math:`[s_i, s_i + P)` start on the ``divisible_by`` grid, the first at 0
    and the last ending at the padded image end, with steps of at most
    :math:`P - \\text{overlap}`. Window :math:`i` has separable weights
    :math:`w_t(x) = \\prod_a w_{i_a}(x_a - s_{i_a})`, 1 inside and ramping from ~0 over
    its overlap with each neighbour (not at the image border). The output is

    .. math::

        y(x) = \\frac{\\sum_t w_t(x)\\, f_t(x)}{\\sum_t w_t(x)}
             = \\sum_t f_t(x) \\prod_a \\frac{w_{i_a}(x_a - s_{i_a})}{W_a(x_a)},
        \\qquad W_a(x_a) = \\sum_i w_i(x_a - s_i),

    a convex combination at every pixel, so constant predictions stay constant and
    tiles that agree give back their common value; the normaliser factorises over
    axes, so it is computed per axis and nothing but ``out`` is held in memory.
    Where two windows overlap, their ramps are complementary (:math:`r_j + r_{L-1-j} =
    1`), so the weight shifts continuously from one tile to the next: differences
    between tiles are spread over the overlap instead of appearing as a step. Not
    exact: use :func:`~fluorecon.predict.predict_tiled` when the receptive field is
    bounded.

    References
    ----------
    .. [1] S. Preibisch, S. Saalfeld, P. Tomancak, "Globally optimal stitching of tiled
       3D microscopic image acquisitions", Bioinformatics 25, 1463-1465 (2009)
       (linear blending of overlapping tiles).
    """
    up, lead, spatial = check_layout(image, axes)
    shape = tuple(int(s) for s in image.shape)
    sp_shape = tuple(shape[d] for d in spatial)
    nd = len(spatial)
    wins = _as_tuple(tile_shape, nd, "tile_shape", minimum=1)
    ovs = _as_tuple(overlap, nd, "overlap", minimum=0)
    divs = _as_tuple(divisible_by, nd, "divisible_by", minimum=1)
    mode = check_pad_mode(pad_mode)
    ramp(1, blend)  # validates ``blend``
    bs = check_batch_size(batch_size)
    axes_ = [_axis_windows(n, w, o, d) for n, w, o, d in zip(sp_shape, wins, ovs, divs)]
    weights = [_axis_weights(ax, blend) for ax in axes_]
    norms = []
    for ax, ws in zip(axes_, weights):
        total = np.zeros(ax.n_padded, dtype=np.float64)
        for s, w in zip(ax.starts, ws):
            total[s:s + ax.window] += w
        norms.append(total)
    per_axis = []
    for ax, ws, tot in zip(axes_, weights, norms):
        entries = []
        for i, s in enumerate(ax.starts):
            read, pad, inp = _axis_read(ax, s, mode)
            stop = min(s + ax.window, ax.n)
            # this window's share of each pixel, already divided by the axis normaliser
            share = (ws[i] / tot[s:s + ax.window])[: stop - s]
            entries.append((i, read, pad, inp, slice(0, stop - s), slice(s, stop), share))
        per_axis.append(entries)
    tiles: list[Tile] = []
    shares: dict[tuple[int, ...], np.ndarray] = {}
    for combo in itertools.product(*per_axis):
        idx, read, pad, inp, crop, write, share = zip(*combo)
        tiles.append(Tile(tuple(idx), tuple(read), tuple(pad), tuple(inp), tuple(crop),
                          tuple(write)))
        prod = share[0]
        for sh in share[1:]:
            prod = np.multiply.outer(prod, sh)
        shares[tuple(idx)] = prod.astype(np.float32)
    if out is None:
        result = np.zeros(shape, dtype=np.float32)
    else:
        result = check_out(out, shape)
        for li in itertools.product(*(range(shape[d]) for d in lead)):
            result[full_index(len(shape), lead, li, spatial,
                              [slice(None)] * nd)] = 0
    total_tiles = len(tiles) * math.prod(shape[d] for d in lead)
    done = 0
    for jobs, pred in iter_batches(fn, image, lead, spatial, tiles, batch_size=bs,
                                   pad_mode=mode):
        for (li, tile), p in zip(jobs, pred):
            where = full_index(len(shape), lead, li, spatial, tile.write_slices)
            result[where] = result[where] + p[tile.crop_slices] * shares[tile.index]
        done += len(jobs)
        if progress is not None:
            progress(done, total_tiles)
    return result
