"""Intensity-based rigid, similarity and affine registration (2D/3D) by Gauss-Newton.

Finds the matrix ``M`` (module conventions of :mod:`fluorecon.simulate.motion`:
``reference(x) = moving(M x)``) that minimises, over the pixels that map inside the moving
image,

.. math::

    E(p, \\alpha, \\beta) = \\sum_x \\bigl(\\alpha\\, I(M_p x) + \\beta - T(x)\\bigr)^2,

with ``T`` the reference, ``I`` the moving image and a gain ``alpha`` and offset ``beta``
fitted jointly, so bleaching and background changes are not mistaken for motion. The
matrix acts about the image centre, ``M_p x = A_p (x - c) + c + t_p``; ``p`` holds the
parameters of the chosen model (translation: ``t``; rigid: angles and ``t``; similarity:
plus a scale; affine: all of ``A`` and ``t``).

Gauss-Newton (forward-additive Lucas-Kanade, [1]_): each iteration resamples ``I`` and its
gradient at ``M_p x`` (cubic splines), forms the Jacobian
:math:`\\partial I(M_p x)/\\partial p = \\nabla I(M_p x)^T\\, \\partial (M_p x)/\\partial p`
and solves the normal equations for the update. Coarse-to-fine over a 2x pyramid widens
the capture range; an initial translation from phase correlation widens it further.

References
----------
.. [1] S. Baker, I. Matthews, "Lucas-Kanade 20 years on: a unifying framework", Int. J.
   Comput. Vision 56, 221-255 (2004).
.. [2] P. Thévenaz, U. E. Ruttimann, M. Unser, "A pyramid approach to subpixel registration
   based on intensity", IEEE Trans. Image Process. 7, 27-41 (1998) (StackReg).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.simulate.motion import affine_matrix, rigid_matrix

__all__ = ["AffineResult", "MODELS", "n_parameters", "register_affine"]

Model = Literal["translation", "rigid", "similarity", "affine"]
MODELS: tuple[str, ...] = ("translation", "rigid", "similarity", "affine")


def n_parameters(model: str, ndim: int) -> int:
    """Degrees of freedom of ``model`` in ``ndim`` dimensions."""
    n_rot = 1 if ndim == 2 else 3
    return {"translation": ndim, "rigid": n_rot + ndim, "similarity": n_rot + ndim + 1,
            "affine": ndim * ndim + ndim}[model]


def _linear(model: str, p: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear part ``A`` and translation ``t`` (centred coordinates) from parameters."""
    if model == "translation":
        return np.eye(d), p[:d]
    n_rot = 1 if d == 2 else 3
    if model in ("rigid", "similarity"):
        scale = 1.0 + (p[n_rot + d] if model == "similarity" else 0.0)
        rot = rigid_matrix(d, angles=p[:n_rot] if d == 3 else float(p[0]))[:d, :d]
        return scale * rot, p[n_rot:n_rot + d]
    return np.eye(d) + p[:d * d].reshape(d, d), p[d * d:d * d + d]


def _params_from_matrix(model: str, lin: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Parameters closest to a given centred (A, t) (exact for translation / affine)."""
    d = lin.shape[0]
    if model == "translation":
        return t.copy()
    if model == "affine":
        return np.concatenate([(lin - np.eye(d)).ravel(), t])
    # rotation by polar decomposition; angles by a small least-squares fit
    u, s, vt = np.linalg.svd(lin)
    rot = u @ vt
    if d == 2:
        angles = np.array([math.atan2(rot[1, 0], rot[0, 0])])
    else:
        angles = _fit_angles(rot)
    out = np.concatenate([angles, t])
    if model == "similarity":
        out = np.append(out, float(s.mean()) - 1.0)
    return out


def _fit_angles(rot: np.ndarray) -> np.ndarray:
    from scipy.optimize import least_squares

    def res(a: np.ndarray) -> np.ndarray:
        return (rigid_matrix(3, angles=a)[:3, :3] - rot).ravel()

    return least_squares(res, np.zeros(3)).x


@dataclass(frozen=True)
class AffineResult:
    """Outcome of :func:`register_affine`.

    Attributes
    ----------
    matrix : ndarray, ``(d+1, d+1)``
        ``reference(x) ~ moving(matrix @ x)`` (homogeneous pixel coordinates, ZYX).
    parameters : ndarray
        Model parameters (centred coordinates; angles in radians).
    gain, offset : float
        Intensity map ``gain * moving + offset`` fitted to the reference.
    iterations : int
        Gauss-Newton iterations over all pyramid levels.
    converged : bool
        The finest level stopped on ``tol`` rather than ``max_iter``.
    error : float
        Final RMS residual relative to the reference's standard deviation (0 is perfect,
        1 is no better than a constant).
    """

    matrix: np.ndarray
    parameters: np.ndarray
    gain: float
    offset: float
    iterations: int
    converged: bool
    error: float


def _downsample(img: np.ndarray) -> np.ndarray:
    """2x block mean (odd trailing pixels dropped)."""
    d = img.ndim
    sl = tuple(slice(0, (n // 2) * 2) for n in img.shape)
    a = img[sl]
    shape = []
    for n in a.shape:
        shape += [n // 2, 2]
    return a.reshape(shape).mean(axis=tuple(range(1, 2 * d, 2)))


def register_affine(reference: Any, moving: Any, *, model: Model = "rigid",
                    init: Any = None, levels: int | None = None, max_iter: int = 60,
                    tol: float = 1e-3, smooth: float = 0.7, min_size: int = 24) -> AffineResult:
    """Register ``moving`` onto ``reference`` with a translation/rigid/similarity/affine map.

    Parameters
    ----------
    reference, moving : array_like
        2D or 3D images of one shape. Not modified.
    model : {"translation", "rigid", "similarity", "affine"}
    init : array_like ``(d+1, d+1)``, optional
        Starting matrix (e.g. a phase-correlation translation); default identity.
    levels : int, optional
        Pyramid levels (1: full resolution only). Default: halve while the smallest axis
        stays >= ``2 * min_size``.
    max_iter : int
        Gauss-Newton iterations per level (maximum).
    tol : float
        Stop a level when the update moves no image corner by more than ``tol`` pixels (of
        that level).
    smooth : float
        Gaussian smoothing (sigma, pixels of each level) before differentiation; it
        tempers noise and the non-convexity of the cost.
    min_size : int
        Smallest axis length of the coarsest level.

    Returns
    -------
    AffineResult
    """
    for name, img in (("reference", reference), ("moving", moving)):
        check_image_array(img, name=name)
    ref = as_float32(reference).astype(np.float64)
    mov = as_float32(moving).astype(np.float64)
    d = ref.ndim
    if ref.shape != mov.shape or d not in (2, 3):
        raise DataError(message(f"reference {ref.shape} and moving {mov.shape}",
                                "two 2D or 3D images of one shape", "Crop them alike."))
    if model not in MODELS:
        raise ConfigError(message(f"model {model!r}", f"one of {', '.join(MODELS)}",
                                  "Pick a listed model."))
    # robust common scale so that gain starts near 1
    scale = max(float(np.percentile(ref, 99.5) - np.percentile(ref, 0.5)), 1e-12)
    ref_n = (ref - float(np.median(ref))) / scale
    mov_n = (mov - float(np.median(mov))) / scale
    if levels is None:
        levels = 1
        while min(ref.shape) // (2 ** levels) >= min_size:
            levels += 1
    pyr_r, pyr_m = [ref_n], [mov_n]
    for _ in range(levels - 1):
        pyr_r.append(_downsample(pyr_r[-1]))
        pyr_m.append(_downsample(pyr_m[-1]))
    m_full = np.eye(d + 1) if init is None else np.asarray(init, dtype=np.float64)
    n_p = n_parameters(model, d)
    gain, offset = 1.0, 0.0
    total_it, converged, err = 0, False, math.nan
    params = np.zeros(n_p)
    for lev in range(levels - 1, -1, -1):
        s = 2 ** lev
        o = (s - 1) / 2.0
        to_full = np.eye(d + 1)
        to_full[:d, :d] *= s
        to_full[:d, d] = o
        m_lev = np.linalg.inv(to_full) @ m_full @ to_full
        r_img = ndimage.gaussian_filter(pyr_r[lev], smooth) if smooth > 0 else pyr_r[lev]
        m_img = ndimage.gaussian_filter(pyr_m[lev], smooth) if smooth > 0 else pyr_m[lev]
        c = (np.array(r_img.shape) - 1) / 2.0
        lin_c = m_lev[:d, :d]
        t_c = m_lev[:d, :d] @ c + m_lev[:d, d] - c
        params = _params_from_matrix(model, lin_c, t_c)
        res = _gauss_newton(r_img, m_img, model, params, c, gain, offset, max_iter, tol)
        params, gain, offset, its, converged, err = res
        total_it += its
        lin, t = _linear(model, params, d)
        m_lev = affine_matrix(lin, t, centre=c)
        m_full = to_full @ m_lev @ np.linalg.inv(to_full)
    return AffineResult(matrix=m_full, parameters=params, gain=float(gain),
                        offset=float(offset * scale + np.median(ref) - gain * np.median(mov)),
                        iterations=total_it, converged=converged, error=float(err))


def _gauss_newton(ref: np.ndarray, mov: np.ndarray, model: str, p: np.ndarray, c: np.ndarray,
                  gain: float, offset: float, max_iter: int, tol: float
                  ) -> tuple[np.ndarray, float, float, int, bool, float]:
    d = ref.ndim
    coeffs = ndimage.spline_filter(mov, order=3, mode="mirror")
    grads = [ndimage.spline_filter(g, order=3, mode="mirror")
             for g in np.gradient(mov)]
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in ref.shape],
                                indexing="ij")).reshape(d, -1)
    xc = grid - c[:, None]
    t_flat = ref.ravel()
    corners = np.array(np.meshgrid(*[[0.0, n - 1.0] for n in ref.shape], indexing="ij")
                       ).reshape(d, -1) - c[:, None]
    sd_ref = max(float(t_flat.std()), 1e-12)
    n_p = p.size
    eps = 1e-6
    converged, err, it = False, math.nan, 0
    for it in range(1, max_iter + 1):
        lin, t = _linear(model, p, d)
        y = lin @ xc + (c + t)[:, None]
        valid = np.all((y >= 0) & (y <= (np.array(ref.shape) - 1)[:, None]), axis=0)
        if valid.sum() < max(16, 4 * (n_p + 2)):
            raise DataError(message("registration that moved the image out of view",
                                    "overlapping images", "Give a better initial estimate "
                                    "or a smaller motion."))
        yv = y[:, valid]
        iw = ndimage.map_coordinates(coeffs, yv, order=3, prefilter=False)
        gw = np.stack([ndimage.map_coordinates(g, yv, order=3, prefilter=False)
                       for g in grads])
        xv = xc[:, valid]
        # dy/dp numerically from the (cheap) parametrisation, exact for these linear maps
        dy = np.empty((n_p, d, xv.shape[1]))
        for k in range(n_p):
            dp = np.zeros(n_p)
            dp[k] = eps
            l2, t2 = _linear(model, p + dp, d)
            l1, t1 = _linear(model, p - dp, d)
            dy[k] = ((l2 - l1) @ xv + (t2 - t1)[:, None]) / (2 * eps)
        jac = np.empty((xv.shape[1], n_p + 2))
        jac[:, :n_p] = gain * np.einsum("dn,kdn->nk", gw, dy)
        jac[:, n_p] = iw
        jac[:, n_p + 1] = 1.0
        r = gain * iw + offset - t_flat[valid]
        err = float(np.sqrt(np.mean(r * r))) / sd_ref
        h = jac.T @ jac
        try:
            step = -np.linalg.solve(h, jac.T @ r)
        except np.linalg.LinAlgError:
            step = -np.linalg.lstsq(h, jac.T @ r, rcond=None)[0]
        p_new = p + step[:n_p]
        gain += step[n_p]
        offset += step[n_p + 1]
        l_old, t_old = _linear(model, p, d)
        l_new, t_new = _linear(model, p_new, d)
        move = np.abs((l_new - l_old) @ corners + (t_new - t_old)[:, None]).max()
        p = p_new
        if move < tol:
            converged = True
            break
    return p, gain, offset, it, converged, err
