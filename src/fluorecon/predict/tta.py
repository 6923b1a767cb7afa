"""Test-time augmentation over the eight in-plane flips and rotations (dihedral group D4),
or over its four mirror images for models trained without 90-degree turns."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fluorecon.core.errors import ConfigError, DataError, message

BatchFn = Callable[[np.ndarray], np.ndarray]

#: The 8 in-plane transforms as ``(k, flip)``: rotate by ``k * 90`` degrees in the YX
#: plane, then (if ``flip``) mirror X.
TRANSFORMS: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True)
                                                 for k in range(4))
#: The 4 transforms that keep the Y and X axes apart (identity, the two mirrors, the half
#: turn): for models trained on data whose Y and X differ (``rotate=False``).
MIRRORS: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in (0, 2))


def _forward(x: np.ndarray, k: int, flip: bool) -> np.ndarray:
    y = np.rot90(x, k, axes=(-2, -1))
    return y[..., ::-1] if flip else y


def _inverse(y: np.ndarray, k: int, flip: bool) -> np.ndarray:
    if flip:
        y = y[..., ::-1]
    return np.rot90(y, -k, axes=(-2, -1))


def tta_predict(fn: BatchFn, batch: np.ndarray, *, ndim_spatial: int,
                channels: bool = False, rotations: bool = True) -> np.ndarray:
    """Average ``fn`` over the 8 in-plane flips/rotations, mapping each output back.

    Parameters
    ----------
    fn : callable
        ``fn(batch) -> prediction`` on float32 ``(B, *spatial)`` arrays, same shape out.
        For non-square YX planes it is also called with Y and X swapped.
    batch : ndarray
        ``(B, Y, X)`` or ``(B, Z, Y, X)``.
    ndim_spatial : {2, 3}
        Number of spatial axes of ``batch`` (after the batch axis). In 3D only the YX
        plane is transformed: Z is usually sampled differently, so rotations mixing Z
        with Y or X would show the network data unlike its training data.
    channels : bool, default False
        ``batch`` is ``(B, C, *spatial)`` and ``fn`` may return another number of
        channels ``(B, C_out, *spatial)`` (multi-channel networks).
    rotations : bool, default True
        False: average over the 4 :data:`MIRRORS` only (no 90-degree turns), for models
        trained without them (e.g. structN2V on row or column noise).

    Returns
    -------
    ndarray, float32
        :math:`\\frac18 \\sum_{g \\in D_4} g^{-1} f(g x)`, same shape as ``batch``.

    Notes
    -----
    For a function equivariant to the group (:math:`f(gx) = g f(x)`, e.g. a filter with a
    kernel symmetric under 90-degree rotations and mirrors) every term equals
    :math:`f(x)`, so TTA returns :math:`f(x)` (up to rounding). For any other function it
    returns the projection of :math:`f` onto the equivariant functions, the usual
    variance-reducing ensemble of CARE / Noise2Void predictions. Exactly 8 calls of
    ``fn`` (one per transform, each on the whole batch; 4 with ``rotations=False``);
    outputs are accumulated in float64.

    Examples
    --------
    >>> shift = lambda b: np.roll(b, 1, axis=-1)      # not equivariant
    >>> x = np.zeros((1, 5, 5), np.float32); x[0, 2, 2] = 8
    >>> tta_predict(shift, x, ndim_spatial=2)[0, 1:4, 1:4]
    array([[0., 2., 0.],
           [2., 0., 2.],
           [0., 2., 0.]], dtype=float32)
    """
    if ndim_spatial not in (2, 3) or isinstance(ndim_spatial, bool):
        raise ConfigError(message(f"ndim_spatial={ndim_spatial!r}", "2 or 3",
                                  "Pass the number of spatial axes of the batch."))
    arr = np.asarray(batch)
    lead = 2 if channels else 1
    if arr.ndim != ndim_spatial + lead:
        want = "(B, C, *spatial)" if channels else "(B, *spatial)"
        raise DataError(message(f"a batch of shape {arr.shape} for ndim_spatial="
                                f"{ndim_spatial}", f"{ndim_spatial + lead} dimensions "
                                f"{want}", "Add the batch axis, e.g. batch[None]."))
    arr = arr.astype(np.float32, copy=False)
    acc: np.ndarray | None = None
    group = TRANSFORMS if rotations else MIRRORS
    for k, flip in group:
        x = np.ascontiguousarray(_forward(arr, k, flip))
        y = np.asarray(fn(x))
        ok = (y.shape[0] == x.shape[0] and y.shape[2:] == x.shape[2:] and y.ndim == x.ndim
              if channels else y.shape == x.shape)
        if not ok:
            raise RuntimeError(f"the function returned shape {y.shape} for a batch of shape "
                               f"{x.shape}; it must keep the shape")
        back = _inverse(y, k, flip)
        acc = back.astype(np.float64) if acc is None else acc + back
    assert acc is not None
    return (acc / len(group)).astype(np.float32)


def with_tta(fn: BatchFn, *, ndim_spatial: int, channels: bool = False,
             rotations: bool = True) -> BatchFn:
    """Wrap ``fn`` so every call averages over the 8 in-plane transforms (4 mirror
    images with ``rotations=False``).

    The result plugs into :func:`~fluorecon.predict.predict_tiled`; since each tile is
    augmented with its own halo, tiled TTA equals whole-image TTA for a local ``fn``.
    """
    if ndim_spatial not in (2, 3) or isinstance(ndim_spatial, bool):
        raise ConfigError(message(f"ndim_spatial={ndim_spatial!r}", "2 or 3",
                                  "Pass the number of spatial axes of the batch."))

    def wrapped(batch: np.ndarray) -> np.ndarray:
        return tta_predict(fn, batch, ndim_spatial=ndim_spatial, channels=channels,
                           rotations=rotations)

    return wrapped
