"""Non-rigid registration of deforming samples by optical flow (scikit-image).

Wraps :func:`skimage.registration.optical_flow_tvl1` (TV-L1, [1]_) and
:func:`skimage.registration.optical_flow_ilk` (iterative Lucas-Kanade, [2]_), both 2D and
3D, with what microscopy needs around them: a joint robust intensity normalisation of the
two images (flow solvers assume comparable intensities), an optional affine pre-alignment
(large global motion first, the flow then only explains the residual deformation), and the
conventions of :mod:`fluorecon.simulate.motion`: the returned field ``u`` satisfies
``reference(x) ~ moving(x + u(x))``.

References
----------
.. [1] A. Wedel, T. Pock, C. Zach, H. Bischof, D. Cremers, "An improved algorithm for
   TV-L1 optical flow", Statistical and Geometrical Approaches to Visual Motion Analysis,
   LNCS 5604, 23-45 (2009).
.. [2] G. Le Besnerais, F. Champagnat, "Dense optical flow by iterative local window
   registration", IEEE ICIP 2005.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import DataError, message

__all__ = ["register_flow", "matrix_field", "compose_field"]


def matrix_field(matrix: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Displacement field ``u(x) = M x - x`` of an affine matrix on a grid of ``shape``."""
    m = np.asarray(matrix, dtype=np.float64)
    d = len(shape)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape],
                                indexing="ij"))
    y = np.tensordot(m[:d, :d], grid, axes=(1, 0)) + m[:d, d].reshape((d,) + (1,) * d)
    return (y - grid).astype(np.float32)


def compose_field(matrix: Any, field: Any) -> np.ndarray:
    """Field of ``x -> M (x + w(x))``: an affine map after a displacement ``w``.

    If ``a(x) = moving(M x)`` and ``reference(x) = a(x + w(x))``, then
    ``reference(x) = moving(x + u(x))`` with the returned ``u``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    w = np.asarray(field, dtype=np.float64)
    d = w.shape[0]
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in w.shape[1:]],
                                indexing="ij"))
    p = grid + w
    y = np.tensordot(m[:d, :d], p, axes=(1, 0)) + m[:d, d].reshape((d,) + (1,) * d)
    return (y - grid).astype(np.float32)


def _normalise_pair(ref: np.ndarray, mov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map both images to about [0, 1] with one robust range (bleaching kept apart: each
    image gets its own percentiles, so a global intensity loss does not look like flow)."""
    out = []
    for img in (ref, mov):
        lo, hi = np.percentile(img, (0.5, 99.5))
        out.append(((img - lo) / max(float(hi - lo), 1e-12)).astype(np.float32))
    return out[0], out[1]


def register_flow(reference: Any, moving: Any, *, method: Literal["tvl1", "ilk"] = "tvl1",
                  init: Any = None, attachment: float = 15.0, tightness: float = 0.3,
                  num_warp: int = 5, num_iter: int = 10, radius: int = 7) -> np.ndarray:
    """Dense displacement field registering ``moving`` onto ``reference`` (2D or 3D).

    Parameters
    ----------
    reference, moving : array_like
        Images of one shape. Not modified.
    method : {"tvl1", "ilk"}
        TV-L1 (edge-preserving, robust; slower) or iterative Lucas-Kanade (fast, smooth).
    init : array_like ``(d+1, d+1)``, optional
        Affine pre-alignment matrix (e.g. from
        :func:`~fluorecon.methods.classical.registration.register_affine`); the flow is
        estimated on ``moving`` resampled by it and composed with it.
    attachment, tightness, num_warp, num_iter
        TV-L1 settings (scikit-image's meaning): data attachment weight (larger: less
        smoothing), coupling, warps per pyramid level, iterations per warp.
    radius : int
        ILK window radius, pixels.

    Returns
    -------
    ndarray, float32, ``(d, *shape)``
        ``u`` with ``reference(x) ~ moving(x + u(x))``.
    """
    from scipy import ndimage
    from skimage.registration import optical_flow_ilk, optical_flow_tvl1

    for name, img in (("reference", reference), ("moving", moving)):
        check_image_array(img, name=name)
    ref = as_float32(reference)
    mov = as_float32(moving)
    if ref.shape != mov.shape or ref.ndim not in (2, 3):
        raise DataError(message(f"reference {ref.shape} and moving {mov.shape}",
                                "two 2D or 3D images of one shape", "Crop them alike."))
    pre = mov
    if init is not None:
        pre = ndimage.affine_transform(mov, np.asarray(init, dtype=np.float64), order=3,
                                       mode="nearest").astype(np.float32)
    r, m = _normalise_pair(ref, pre)
    if method == "tvl1":
        w = optical_flow_tvl1(r, m, attachment=attachment, tightness=tightness,
                              num_warp=num_warp, num_iter=num_iter)
    else:
        w = optical_flow_ilk(r, m, radius=radius, num_warp=num_warp)
    w = np.asarray(w, dtype=np.float32)
    if init is not None:
        return compose_field(init, w)
    return w
