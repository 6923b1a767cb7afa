"""Blind spectral unmixing by non-negative matrix factorisation (NMF), when spectra are
unknown (or only some of them are known).

The channel-by-pixel matrix :math:`Y \\in \\mathbb{R}_{\\ge 0}^{C \\times P}` is factorised as

.. math::

    \\min_{W \\ge 0,\\, H \\ge 0} \\lVert Y - W H \\rVert_F^2, \\qquad
    \\textstyle\\sum_c W_{ck} = 1,

with spectra :math:`W` (``C x K``, each column summing to 1, so :math:`H` is in the
input's intensity units summed over channels) and abundances :math:`H` (``K x P``).
Optimisation by hierarchical alternating least squares (HALS, [1]_), started from the
successive projection algorithm (SPA, [2]_), which picks the purest pixels as initial
spectra: deterministic, and exact when every component has pure pixels and noise is low.
Columns of ``W`` given in ``known_spectra`` stay fixed (semi-blind unmixing: known dyes
plus unknown autofluorescence).

NMF recovers spectra only up to the ambiguities of the factorisation: without pure pixels
mixtures of the true spectra are also solutions. Check the estimated spectra.

References
----------
.. [1] A. Cichocki, A.-H. Phan, "Fast local algorithms for large scale nonnegative matrix
   and tensor factorizations", IEICE Trans. Fundamentals E92-A, 708-721 (2009).
.. [2] N. Gillis, S. A. Vavasis, "Fast and robust recursive algorithms for separable
   nonnegative matrix factorization", IEEE TPAMI 36, 698-714 (2014).
.. [3] R. Neher et al., "Blind source separation techniques for the decomposition of
   multiply labeled fluorescence images", Biophys. J. 96, 3791-3800 (2009).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.rng import SeedLike, make_rng
from fluorecon.methods.classical.unmixing._common import (
    UnmixingResult,
    background_vector,
    channel_image,
    check_spectra,
    residual_rms,
)
from fluorecon.methods.classical.unmixing.linear import nnls_batch

__all__ = ["NMFUnmixing", "NMFUnmixingConfig", "nmf_unmix", "spa_endmembers"]


def spa_endmembers(y: np.ndarray, k: int, *, fixed: np.ndarray | None = None) -> np.ndarray:
    """Successive projection algorithm: ``k`` columns of ``y`` (``C x P``) that are purest.

    Pixels are normalised to unit channel sum; the one with the largest norm is taken,
    every pixel is projected onto the orthogonal complement of it, and so on. Columns of
    ``fixed`` (``C x F``) are projected out first and count towards ``k``.

    Returns
    -------
    ndarray, ``(C, k - F)``
        The selected (sum-normalised) pixel spectra.
    """
    total = y.sum(axis=0)
    z = y[:, total > 0] / total[total > 0]
    if z.shape[1] == 0:
        raise DataError(message("an image with no positive pixels", "signal to unmix",
                                "Check the background subtraction."))
    picked = []
    r = z.copy()
    basis = []
    if fixed is not None:
        for col in (fixed / fixed.sum(axis=0)).T:
            v = col.copy()
            for b in basis:
                v -= (b @ v) * b
            if np.linalg.norm(v) > 0:
                basis.append(v / np.linalg.norm(v))
        for b in basis:
            r -= np.outer(b, b @ r)
    n_free = k - (0 if fixed is None else fixed.shape[1])
    for _ in range(n_free):
        j = int(np.argmax((r * r).sum(axis=0)))
        picked.append(z[:, j].copy())
        v = r[:, j] / max(float(np.linalg.norm(r[:, j])), 1e-30)
        r -= np.outer(v, v @ r)
    return np.array(picked).T.reshape(y.shape[0], n_free)


def nmf_unmix(image: Any, axes: str, n_components: int, *, known_spectra: Any = None,
              background: Any = None, max_iter: int = 300, tol: float = 1e-5,
              max_pixels: int = 200_000, seed: SeedLike = 0,
              progress: Callable[[int, int], None] | None = None) -> UnmixingResult:
    """Blind (or semi-blind) unmixing: estimate spectra and abundances by NMF.

    Parameters
    ----------
    image : array_like
        Image with a ``C`` axis; intensities linear in photons, offset removed or passed as
        ``background``. Negative values (noise around zero) are clipped for the spectra
        estimate only.
    axes : str
    n_components : int
        Number of components ``K`` (including known ones), ``K <= C``.
    known_spectra : array_like ``(C, F)``, optional
        Spectra known beforehand; kept fixed (normalised to sum 1).
    background : float or array_like ``(C,)``, optional
    max_iter : int
        HALS iterations (maximum).
    tol : float
        Stop when the relative decrease of the objective over an iteration is below it.
    max_pixels : int
        Spectra are estimated on at most this many pixels (a seeded random subset of the
        pixels above the median intensity, where the signal is); abundances are then
        solved for every pixel by NNLS with the spectra fixed.
    seed : int or Generator
        Seed of the pixel subset.
    progress : callable, optional
        ``progress(done, total)`` per HALS iteration.

    Returns
    -------
    UnmixingResult
        ``spectra`` the estimated ``(C, K)`` (columns sum to 1, ordered by their spectral
        centroid, known ones first in their given order), ``abundances`` and ``residual``.
        ``info`` has ``iterations``, ``objective`` (per iteration, on the subset) and
        ``converged``.
    """
    arr, lay = channel_image(image, axes)
    c = lay.n_channels
    if not 1 <= n_components <= c:
        raise ConfigError(message(f"n_components={n_components} for {c} channels",
                                  f"1 <= n_components <= {c}", "Choose fewer components."))
    fixed = None
    if known_spectra is not None:
        fixed = check_spectra(known_spectra, c, name="known_spectra")
        fixed = fixed / fixed.sum(axis=0)
        if fixed.shape[1] > n_components:
            raise ConfigError(message(f"{fixed.shape[1]} known spectra for n_components="
                                      f"{n_components}", "no more known spectra than "
                                      "components", "Raise n_components."))
    nf = 0 if fixed is None else fixed.shape[1]
    b = background_vector(background, c)
    y_all = lay.to_matrix(arr).astype(np.float64) - b[:, None]
    total = y_all.sum(axis=0)
    cand = np.flatnonzero(total > np.median(total))
    if cand.size < n_components:
        cand = np.arange(total.size)
    g = make_rng(seed)
    if cand.size > max_pixels:
        cand = np.sort(g.choice(cand, max_pixels, replace=False))
    y = np.clip(y_all[:, cand], 0.0, None)
    free = spa_endmembers(y, n_components, fixed=fixed)
    w = free if fixed is None else np.hstack([fixed, free])
    w = np.maximum(w, 1e-9)
    w /= w.sum(axis=0)
    h, _, _ = nnls_batch(w.T @ w, w.T @ y, max_iter=50, tol=1e-4)
    norm_y = float((y * y).sum())
    history: list[float] = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        # H: one exact coordinate sweep (HALS) for all pixels.
        wtw, wty = w.T @ w, w.T @ y
        for k in range(n_components):
            h[k] = np.maximum(h[k] + (wty[k] - wtw[k] @ h) / max(wtw[k, k], 1e-30), 0.0)
        # W: one sweep over the free columns, then renormalise (scale moves to H).
        hht, yht = h @ h.T, y @ h.T
        for k in range(nf, n_components):
            if hht[k, k] <= 0:
                continue
            w[:, k] = np.maximum(w[:, k] + (yht[:, k] - w @ hht[:, k]) / hht[k, k], 1e-12)
            s = w[:, k].sum()
            w[:, k] /= s
            h[k] *= s
        r = y - w @ h
        obj = float((r * r).sum()) / max(norm_y, 1e-30)
        history.append(obj)
        if progress is not None:
            progress(it, max_iter)
        if len(history) > 1 and history[-2] - obj <= tol * max(history[-2], 1e-30):
            converged = True
            break
    if nf < n_components:
        lam = np.arange(c)
        order = nf + np.argsort((lam @ w[:, nf:]), kind="stable")
        w = np.hstack([w[:, :nf], w[:, order]])
    a, _, _ = nnls_batch(w.T @ w, w.T @ y_all)
    return UnmixingResult(abundances=lay.from_matrix(a.astype(np.float32)), axes=lay.axes,
                          spectra=w, residual=lay.from_pixels(
                              residual_rms(y_all, w, a, 0 * b).astype(np.float32)),
                          info={"method": "nmf", "iterations": it, "converged": converged,
                                "objective": history, "fit_pixels": int(cand.size)})


class NMFUnmixingConfig(BaseConfig):
    """Settings of :class:`NMFUnmixing`."""

    version: int = Field(default=1, ge=1, description="Schema version.")
    n_components: int = Field(ge=1, le=64, description="Number of components (known + "
                                                         "unknown).")
    max_iter: int = Field(default=300, ge=1, description="HALS iterations (maximum).")
    tol: float = Field(default=1e-5, gt=0, lt=1, description="Relative objective decrease "
                                                             "that stops HALS.")
    max_pixels: int = Field(default=200_000, ge=100, description="Pixels used to estimate "
                                                                 "the spectra.")
    seed: int = Field(default=0, ge=0, description="Seed of the pixel subset.")


class NMFUnmixing:
    """Blind unmixing: :meth:`fit` estimates spectra by NMF, :meth:`predict` unmixes with
    them (NNLS), so spectra learned on one image can be applied to others."""

    name = "nmf"
    Config = NMFUnmixingConfig

    def __init__(self, *, known_spectra: Any = None, background: Any = None,
                 config: NMFUnmixingConfig | None = None, **kwargs: Any) -> None:
        self.config = config if config is not None else NMFUnmixingConfig.build(**kwargs)
        self.known_spectra = known_spectra
        self.background = background
        self.spectra_: np.ndarray | None = None
        self.result_: UnmixingResult | None = None

    def fit(self, image: Any, axes: str, *,
            progress: Callable[[int, int], None] | None = None) -> "NMFUnmixing":
        """Estimate the spectra on ``image``; they are kept in :attr:`spectra_`."""
        c = self.config
        self.result_ = nmf_unmix(image, axes, c.n_components, known_spectra=self.known_spectra,
                                 background=self.background, max_iter=c.max_iter, tol=c.tol,
                                 max_pixels=c.max_pixels, seed=c.seed, progress=progress)
        self.spectra_ = self.result_.spectra
        return self

    def predict(self, image: Any, axes: str, *,
                progress: Callable[[int, int], None] | None = None) -> UnmixingResult:
        """Unmix with the fitted spectra (fits on ``image`` first if not fitted)."""
        if self.spectra_ is None:
            self.fit(image, axes, progress=progress)
            assert self.result_ is not None
            return self.result_
        from fluorecon.methods.classical.unmixing.linear import linear_unmix

        return linear_unmix(image, self.spectra_, axes, background=self.background,
                            progress=progress)
