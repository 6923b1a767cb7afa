"""Linear unmixing with known reference spectra: least squares, with or without
non-negativity, batched over all pixels.

Per pixel, with channel intensities :math:`y \\in \\mathbb{R}^C`, a per-channel background
:math:`b` and reference spectra :math:`M \\in \\mathbb{R}^{C \\times K}` (one column per
fluorophore),

.. math::

    \\hat a = \\arg\\min_{a \\ge 0} \\lVert M a - (y - b) \\rVert_2^2 .

``method="ls"`` drops the constraint (the unbiased, linear estimator: noise stays
zero-mean, abundances can go negative in background regions); ``method="nnls"`` keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import DataError, message
from fluorecon.methods.classical.unmixing._common import (
    UnmixingResult,
    background_vector,
    channel_image,
    check_spectra,
    residual_rms,
)

__all__ = ["LinearUnmixing", "LinearUnmixingConfig", "linear_unmix", "nnls_batch"]

#: Pixels solved together (bounds the memory of the batched solver).
CHUNK = 1 << 18


def nnls_batch(gram: np.ndarray, rhs: np.ndarray, *, max_iter: int = 500, tol: float = 1e-6,
               init: np.ndarray | None = None) -> tuple[np.ndarray, int, float]:
    """Solve many small non-negative least-squares problems sharing one matrix.

    Minimises :math:`\\tfrac12 a^T G a - h^T a` subject to :math:`a \\ge 0` for every column
    ``h`` of ``rhs``, which is NNLS :math:`\\min_{a\\ge0}\\lVert Ma-y\\rVert^2` with
    :math:`G = M^T M`, :math:`h = M^T y`.

    Parameters
    ----------
    gram : ndarray, ``(K, K)``
        Symmetric positive (semi-)definite Gram matrix ``M.T @ M``.
    rhs : ndarray, ``(K, P)``
        ``M.T @ y`` for ``P`` pixels.
    max_iter : int
        Maximum sweeps over the ``K`` coordinates.
    tol : float
        Stop when the largest violation of the KKT conditions (see Notes), relative to
        ``max |h|``, is below ``tol``.
    init : ndarray, ``(K, P)``, optional
        Starting point (clipped at 0). Default: the unconstrained solution, clipped.

    Returns
    -------
    a : ndarray, ``(K, P)``
        float64 solutions.
    iterations : int
        Sweeps done.
    violation : float
        Final relative KKT violation.

    Notes
    -----
    Sequential coordinate-wise descent (Franc, Hlaváč and Navara [1]_): each sweep updates
    every coordinate exactly, :math:`a_k \\leftarrow \\max(0, a_k - g_k / G_{kk})` with the
    gradient :math:`g = Ga - h`, for all pixels at once. The objective decreases
    monotonically and converges to the unique minimiser when :math:`G` is positive
    definite. Optimality (KKT): :math:`g_k = 0` where :math:`a_k > 0` and :math:`g_k \\ge 0`
    where :math:`a_k = 0`; the violation is the largest :math:`|g_k|` resp.
    :math:`\\max(-g_k, 0)`. Only unconverged pixels are updated.

    References
    ----------
    .. [1] V. Franc, V. Hlaváč, M. Navara, "Sequential coordinate-wise algorithm for the
       non-negative least squares problem", CAIP 2005, LNCS 3691, 407-414.
    """
    g = np.asarray(gram, dtype=np.float64)
    h = np.asarray(rhs, dtype=np.float64)
    k = g.shape[0]
    diag = np.diag(g).copy()
    if np.any(diag <= 0):
        raise DataError(message("spectra with an all-zero column", "non-zero spectra",
                                "Remove the empty spectrum."))
    if init is None:
        a = np.linalg.lstsq(g, h, rcond=None)[0]
    else:
        a = np.array(init, dtype=np.float64)
    np.clip(a, 0.0, None, out=a)
    scale = max(float(np.abs(h).max(initial=0.0)), 1e-30)
    active = np.arange(h.shape[1])
    it = 0
    viol = 0.0
    for it in range(1, max_iter + 1):
        aa, hh = a[:, active], h[:, active]
        grad = g @ aa - hh
        for j in range(k):
            new = np.maximum(aa[j] - grad[j] / diag[j], 0.0)
            step = new - aa[j]
            aa[j] = new
            grad += np.outer(g[:, j], step)
        a[:, active] = aa
        v = np.where(aa > 0, np.abs(grad), np.maximum(-grad, 0.0)).max(axis=0) / scale
        keep = v > tol
        viol = float(v.max(initial=0.0))
        active = active[keep]
        if active.size == 0:
            break
    return a, it, viol


def linear_unmix(image: Any, spectra: Any, axes: str, *, method: Literal["nnls", "ls"] = "nnls",
                 background: Any = None, max_iter: int = 500, tol: float = 1e-6,
                 progress: Callable[[int, int], None] | None = None) -> UnmixingResult:
    """Unmix a multi-channel image with known reference spectra.

    Parameters
    ----------
    image : array_like
        Image with a channel axis ``C`` (e.g. ``"CYX"``, ``"TCZYX"``), intensities linear in
        photons (camera offset removed, or given as ``background``). Not modified.
    spectra : array_like, ``(C, K)``
        Reference spectra, one column per fluorophore, in the image's channels (e.g.
        :func:`~fluorecon.simulate.spectra.mixing_matrix`, or measured single-label
        controls). Their scale sets the abundances' unit: area-normalised columns give the
        total photons of each fluorophore.
    axes : str
        Axes of ``image``.
    method : {"nnls", "ls"}
        Non-negative (default) or plain least squares.
    background : float or array_like ``(C,)``, optional
        Per-channel background subtracted first (e.g. camera offset in ADU).
    max_iter, tol
        Solver settings of :func:`nnls_batch`.
    progress : callable, optional
        ``progress(done, total)`` per chunk of pixels.

    Returns
    -------
    UnmixingResult
        ``abundances`` with ``K`` along C, same axes as the input.

    Examples
    --------
    >>> m = np.array([[1.0, 0.2], [0.3, 1.0], [0.0, 0.4]])
    >>> truth = np.array([[[2.0]], [[5.0]]])                  # (K, 1, 1)
    >>> y = np.tensordot(m, truth, axes=(1, 0))               # (C, 1, 1)
    >>> res = linear_unmix(y, m, "CYX")
    >>> np.round(res.abundances[:, 0, 0], 6).tolist()
    [2.0, 5.0]
    """
    arr, lay = channel_image(image, axes)
    m = check_spectra(spectra, lay.n_channels)
    b = background_vector(background, lay.n_channels)
    if m.shape[1] > m.shape[0]:
        raise DataError(message(f"{m.shape[1]} spectra for {m.shape[0]} channels",
                                "no more components than channels",
                                "Use fewer fluorophores or more channels (or phasor/NMF "
                                "with priors)."))
    y = lay.to_matrix(arr)
    p = y.shape[1]
    out = np.empty((m.shape[1], p), np.float32)
    res = np.empty(p, np.float32)
    gram = m.T @ m
    if np.linalg.matrix_rank(gram) < m.shape[1]:
        raise DataError(message("reference spectra that are linearly dependent",
                                "independent spectra", "Remove duplicate fluorophores."))
    pinv = np.linalg.pinv(m)
    its, worst = 0, 0.0
    n_chunks = max(1, -(-p // CHUNK))
    for i, s in enumerate(range(0, p, CHUNK)):
        yc = y[:, s:s + CHUNK].astype(np.float64) - b[:, None]
        if method == "ls":
            a = pinv @ yc
        else:
            a, it, v = nnls_batch(gram, m.T @ yc, max_iter=max_iter, tol=tol)
            its, worst = max(its, it), max(worst, v)
        out[:, s:s + CHUNK] = a
        res[s:s + CHUNK] = residual_rms(yc, m, a, np.zeros_like(b))
        if progress is not None:
            progress(i + 1, n_chunks)
    info: dict[str, Any] = {"method": method}
    if method == "nnls":
        info.update(iterations=its, kkt_violation=worst, converged=worst <= tol)
    return UnmixingResult(abundances=lay.from_matrix(out), axes=lay.axes, spectra=m,
                          residual=lay.from_pixels(res), info=info)


class LinearUnmixingConfig(BaseConfig):
    """Settings of :class:`LinearUnmixing`."""

    version: int = Field(default=1, ge=1, description="Schema version.")
    method: Literal["nnls", "ls"] = Field(default="nnls", description="nnls: non-negative "
                                          "least squares; ls: unconstrained (unbiased).")
    max_iter: int = Field(default=500, ge=1, description="NNLS coordinate sweeps (maximum).")
    tol: float = Field(default=1e-6, gt=0, lt=1, description="NNLS relative KKT tolerance.")


class LinearUnmixing:
    """Linear unmixing with known spectra (see :func:`linear_unmix`).

    Parameters
    ----------
    spectra : array_like, ``(C, K)``
        Reference spectra, one column per fluorophore.
    background : float or array_like, optional
        Per-channel background.
    config : LinearUnmixingConfig, optional
    **kwargs
        Config fields instead of ``config``.
    """

    name = "nnls"
    Config = LinearUnmixingConfig

    def __init__(self, spectra: Any, *, background: Any = None,
                 config: LinearUnmixingConfig | None = None, **kwargs: Any) -> None:
        self.config = config if config is not None else LinearUnmixingConfig.build(**kwargs)
        self.spectra = check_spectra(spectra)
        self.background = background

    def fit(self, image: Any, axes: str) -> "LinearUnmixing":
        """Nothing to learn: the spectra are given. Returns ``self``."""
        return self

    def predict(self, image: Any, axes: str, *,
                progress: Callable[[int, int], None] | None = None) -> UnmixingResult:
        """Unmix ``image`` (axes with ``C``)."""
        c = self.config
        return linear_unmix(image, self.spectra, axes, method=c.method,
                            background=self.background, max_iter=c.max_iter, tol=c.tol,
                            progress=progress)
