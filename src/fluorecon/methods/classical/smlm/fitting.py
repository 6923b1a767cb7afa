"""Batched maximum-likelihood fitting of single-molecule images (Poisson and sCMOS noise).

Every candidate's region of interest (ROI) is fitted at once: the models, their Jacobians,
the Fisher matrices and the Levenberg-Marquardt steps are arrays over all ROIs, so the
whole batch costs a few dozen NumPy operations per iteration.

Models (pixel-integrated Gaussians, Smith et al. 2010), in ROI pixel units where pixel
``k`` spans ``[k, k + 1)``:

- ``"gaussian"``: ``theta = (x, y, N, b)``, fixed sigma;
- ``"gaussian_sigma"``: ``(x, y, N, b, sigma)``, isotropic sigma fitted;
- ``"elliptical"``: ``(x, y, N, b, sigma_x, sigma_y)`` (used by the astigmatic calibration);
- ``"astigmatic"``: ``(x, y, z, N, b)``, the widths given by an
  :class:`~fluorecon.simulate.smlm.AstigmaticCalibration` (``z`` in pixel units inside the
  fit, nanometres outside).

References
----------
.. [1] C. S. Smith, N. Joseph, B. Rieger, K. A. Lidke, "Fast, single-molecule localization
   that achieves theoretically minimum uncertainty", Nat. Methods 7, 373-375 (2010).
.. [2] K. I. Mortensen, L. S. Churchman, J. A. Spudich, H. Flyvbjerg, "Optimized localization
   analysis for single-molecule tracking and super-resolution microscopy", Nat. Methods 7,
   377-381 (2010).
.. [3] F. Huang et al., "Video-rate nanoscopy using sCMOS camera-specific single-molecule
   localization algorithms", Nat. Methods 10, 653-658 (2013).
.. [4] T. A. Laurence, B. A. Chromy, "Efficient maximum likelihood estimator fitting of
   histograms", Nat. Methods 7, 338-339 (2010).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import erf

from fluorecon.core.errors import ConfigError, message
from fluorecon.simulate.smlm import AstigmaticCalibration

__all__ = ["FitResult", "FitModel", "fit_rois", "PARAMETERS"]

FitModel = Literal["gaussian", "gaussian_sigma", "elliptical", "astigmatic"]

#: Parameter names of each model, in order.
PARAMETERS: dict[str, tuple[str, ...]] = {
    "gaussian": ("x", "y", "photons", "background"),
    "gaussian_sigma": ("x", "y", "photons", "background", "sigma"),
    "elliptical": ("x", "y", "photons", "background", "sigma_x", "sigma_y"),
    "astigmatic": ("x", "y", "z", "photons", "background"),
}

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class FitResult:
    """Fitted parameters of every ROI.

    Attributes
    ----------
    theta : ndarray, shape (n, P)
        Parameters in ROI pixel units (``z`` in pixels for the astigmatic model; photons and
        background in photons), order :data:`PARAMETERS` ``[model]``.
    crlb : ndarray, shape (n, P)
        Cramér-Rao lower bound of the variance of each parameter (units squared), the
        diagonal of the inverse Fisher information at ``theta`` (times the excess noise
        factor for EMCCD data).
    log_likelihood_ratio : ndarray, shape (n,)
        ``2 * (L_saturated - L(theta))``, approximately chi-square with ``K - P`` degrees of
        freedom for a good fit.
    converged : ndarray of bool, shape (n,)
        The damping stayed bounded (no run of rejected steps) and the Fisher matrix at the
        result is invertible with positive variances.
    iterations : int
        Iterations run (the batch stops when every ROI has converged).
    model : str
    """

    theta: np.ndarray
    crlb: np.ndarray
    log_likelihood_ratio: np.ndarray
    converged: np.ndarray
    iterations: int
    model: str


def _profile(centre: np.ndarray, sigma: np.ndarray, k: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrated 1D Gaussian ``E``, ``dE/dcentre`` and ``dE/dsigma`` over pixels ``k``.

    ``centre``, ``sigma``: (n,); ``k``: (w,). Returns three (n, w) arrays.
    """
    c = centre[:, None]
    s = sigma[:, None]
    a = k[None, :] - c          # left pixel edge relative to the centre
    b = a + 1.0                 # right edge
    e = 0.5 * (erf(b * _INV_SQRT2 / s) - erf(a * _INV_SQRT2 / s))
    ga = np.exp(-0.5 * (a / s) ** 2)
    gb = np.exp(-0.5 * (b / s) ** 2)
    de_dc = _INV_SQRT2PI / s * (ga - gb)
    de_ds = _INV_SQRT2PI / s ** 2 * (a * ga - b * gb)
    return e, de_dc, de_ds


def _model(theta: np.ndarray, model: str, ky: np.ndarray, kx: np.ndarray, sigma: float,
           calib: AstigmaticCalibration | None, pixel_size: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """Expected photons ``mu`` (n, h, w) and Jacobian (n, P, h, w) of ``model``."""
    n = theta.shape[0]
    x, y = theta[:, 0], theta[:, 1]
    dsx_dz = dsy_dz = None
    if model == "gaussian":
        n_ph, bg = theta[:, 2], theta[:, 3]
        sx = sy = np.full(n, sigma)
    elif model == "gaussian_sigma":
        n_ph, bg = theta[:, 2], theta[:, 3]
        sx = sy = theta[:, 4]
    elif model == "elliptical":
        n_ph, bg = theta[:, 2], theta[:, 3]
        sx, sy = theta[:, 4], theta[:, 5]
    else:
        assert calib is not None
        z, n_ph, bg = theta[:, 2], theta[:, 3], theta[:, 4]
        sxn, syn, dxn, dyn = calib.sigmas_and_derivatives(z * pixel_size)
        sx, sy = sxn / pixel_size, syn / pixel_size
        dsx_dz, dsy_dz = dxn, dyn  # nm/nm == px/px
    ex, dex_dx, dex_ds = _profile(x, sx, kx)
    ey, dey_dy, dey_ds = _profile(y, sy, ky)
    psf = ey[:, :, None] * ex[:, None, :]
    mu = n_ph[:, None, None] * psf + bg[:, None, None]
    p = theta.shape[1]
    jac = np.empty((n, p) + psf.shape[1:])
    nn = n_ph[:, None, None]
    jac[:, 0] = nn * ey[:, :, None] * dex_dx[:, None, :]
    jac[:, 1] = nn * dey_dy[:, :, None] * ex[:, None, :]
    d_sx = nn * ey[:, :, None] * dex_ds[:, None, :]
    d_sy = nn * dey_ds[:, :, None] * ex[:, None, :]
    if model == "astigmatic":
        assert dsx_dz is not None and dsy_dz is not None
        jac[:, 2] = d_sx * dsx_dz[:, None, None] + d_sy * dsy_dz[:, None, None]
        jac[:, 3] = psf
        jac[:, 4] = 1.0
    else:
        jac[:, 2] = psf
        jac[:, 3] = 1.0
        if model == "gaussian_sigma":
            jac[:, 4] = d_sx + d_sy
        elif model == "elliptical":
            jac[:, 4] = d_sx
            jac[:, 5] = d_sy
    return mu, jac


def _nll(data: np.ndarray, mu: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Poisson negative log-likelihood per ROI (up to a data-only constant)."""
    safe = np.maximum(mu, 1e-9)
    return np.sum(weight * (safe - data * np.log(safe)), axis=(1, 2))


def _clamp(theta: np.ndarray, model: str, h: int, w: int, sigma: float,
           calib: AstigmaticCalibration | None, pixel_size: float) -> None:
    theta[:, 0] = np.clip(theta[:, 0], -1.0, w + 1.0)
    theta[:, 1] = np.clip(theta[:, 1], -1.0, h + 1.0)
    i_n = 3 if model == "astigmatic" else 2
    theta[:, i_n] = np.maximum(theta[:, i_n], 1e-3)
    theta[:, i_n + 1] = np.maximum(theta[:, i_n + 1], 1e-6)
    if model == "gaussian_sigma":
        theta[:, 4] = np.clip(theta[:, 4], 0.25 * sigma, 4.0 * sigma)
    elif model == "elliptical":
        theta[:, 4:6] = np.clip(theta[:, 4:6], 0.3, max(h, w))
    elif model == "astigmatic":
        assert calib is not None
        zmax = 2.0 * (abs(calib.c) + calib.d) / pixel_size
        theta[:, 2] = np.clip(theta[:, 2], -zmax, zmax)


def fit_rois(rois: np.ndarray, theta0: np.ndarray, *, model: FitModel = "gaussian",
             sigma: float = 1.3, calibration: AstigmaticCalibration | None = None,
             pixel_size: float = 100.0, readout_variance: np.ndarray | None = None,
             weights: np.ndarray | None = None, excess_noise: float = 1.0,
             max_iterations: int = 50, tolerance: float = 1e-6) -> FitResult:
    """Maximum-likelihood fit of a pixel-integrated Gaussian to every ROI at once.

    Parameters
    ----------
    rois : ndarray, shape (n, h, w)
        Pixel values in photons (camera data converted with ``camera_inverse``).
    theta0 : ndarray, shape (n, P)
        Initial parameters (ROI pixel units), order :data:`PARAMETERS` ``[model]``.
    model : {"gaussian", "gaussian_sigma", "elliptical", "astigmatic"}
    sigma : float
        PSF sigma in pixels (fixed for ``"gaussian"``, the scale of the bounds otherwise).
    calibration : AstigmaticCalibration, optional
        Required by ``"astigmatic"`` (nanometres).
    pixel_size : float
        Nanometres per pixel (converts ``z`` and the calibration).
    readout_variance : ndarray, shape (n, h, w), optional
        sCMOS per-pixel readout variance in photons^2, ``var_ADU / (gain * QE)^2``. Adds
        Huang et al.'s ``gamma = var`` to data and model, the Poisson approximation of a
        Poisson + Gaussian pixel.
    weights : ndarray, shape (n, h, w), optional
        0/1 mask of valid pixels (0 outside the frame for ROIs cut at its edge).
    excess_noise : float
        Multiplies the CRLB variances: 2 for EMCCD data (excess noise factor ``F^2``).
    max_iterations : int
    tolerance : float
        Convergence when the relative decrease of the negative log-likelihood and the
        relative parameter step are below it.

    Returns
    -------
    FitResult

    Notes
    -----
    Negative Poisson log-likelihood (with :math:`\\gamma_k` the sCMOS variance, 0 else)

    .. math::

        \\mathcal L(\\theta) = \\sum_k w_k\\,[\\mu_k + \\gamma_k - (d_k + \\gamma_k)
        \\log(\\mu_k + \\gamma_k)],\\qquad \\mu_k = N\\,E_x(k)\\,E_y(k) + b,

    minimised by Levenberg-Marquardt on the Fisher scoring system
    :math:`(I + \\lambda\\,\\mathrm{diag}\\,I)\\,\\Delta = -\\nabla\\mathcal L` with
    :math:`I = \\sum_k w_k J_k J_k^T / (\\mu_k + \\gamma_k)` and
    :math:`\\nabla\\mathcal L = \\sum_k w_k J_k (1 - (d_k + \\gamma_k)/(\\mu_k + \\gamma_k))`,
    :math:`\\lambda` divided by 10 after an accepted step and multiplied by 10 after a
    rejected one, per ROI. The CRLB is :math:`\\mathrm{diag}(I^{-1})` at the optimum.
    """
    if model not in PARAMETERS:
        raise ConfigError(message(f"fit model {model!r}", f"one of {sorted(PARAMETERS)}",
                                  "Pick one of those."))
    if model == "astigmatic" and calibration is None:
        raise ConfigError(message("the astigmatic model without a calibration",
                                  "an AstigmaticCalibration", "Pass calibration=..."))
    data = np.asarray(rois, np.float64)
    n, h, w = data.shape
    p = len(PARAMETERS[model])
    theta = np.array(theta0, np.float64, copy=True).reshape(n, p)
    if n == 0:
        z = np.zeros((0, p))
        return FitResult(z, z.copy(), np.zeros(0), np.zeros(0, bool), 0, model)
    gamma = np.zeros_like(data) if readout_variance is None else np.broadcast_to(
        np.asarray(readout_variance, np.float64), data.shape)
    wt = np.ones_like(data) if weights is None else np.broadcast_to(
        np.asarray(weights, np.float64), data.shape)
    d = np.maximum(data + gamma, 0.0)  # Poisson counts cannot be negative
    ky, kx = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    args = (model, ky, kx, sigma, calibration, pixel_size)
    _clamp(theta, model, h, w, sigma, calibration, pixel_size)
    mu, jac = _model(theta, *args)
    cur = _nll(d, mu + gamma, wt)
    lam = np.full(n, 1e-3)
    active = np.ones(n, bool)
    eye = np.eye(p)
    it = 0
    for it in range(1, max_iterations + 1):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            it -= 1
            break
        m = mu[idx] + gamma[idx]
        jj = jac[idx]
        r = wt[idx] * (1.0 - d[idx] / m)
        grad = np.einsum("npk,nk->np", jj.reshape(idx.size, p, -1), r.reshape(idx.size, -1))
        fw = (wt[idx] / m).reshape(idx.size, 1, -1)
        jf = jj.reshape(idx.size, p, -1)
        fisher = np.einsum("npk,nqk->npq", jf * fw, jf)
        damp = fisher + lam[idx, None, None] * (fisher * eye + 1e-12 * eye)
        try:
            step = -np.linalg.solve(damp, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:  # a degenerate ROI: pseudo-inverse for the batch
            step = -(np.linalg.pinv(damp) @ grad[:, :, None])[:, :, 0]
        trial = theta[idx] + step
        _clamp(trial, model, h, w, sigma, calibration, pixel_size)
        mu_t, jac_t = _model(trial, *args)
        new = _nll(d[idx], mu_t + gamma[idx], wt[idx])
        better = new <= cur[idx]
        acc = idx[better]
        rel_f = np.abs(cur[idx] - new) / np.maximum(np.abs(cur[idx]), 1.0)
        rel_x = np.max(np.abs(trial - theta[idx]) / np.maximum(np.abs(theta[idx]), 1.0), 1)
        theta[acc] = trial[better]
        mu[acc] = mu_t[better]
        jac[acc] = jac_t[better]
        cur[acc] = new[better]
        lam[acc] = np.maximum(lam[acc] / 10.0, 1e-7)
        rej = idx[~better]
        lam[rej] = lam[rej] * 10.0
        done = (better & (rel_f < tolerance) & (rel_x < tolerance * 100)) | (lam[idx] > 1e8)
        active[idx[done]] = False
    converged = lam < 1e8
    m = mu + gamma
    jf = jac.reshape(n, p, -1)
    fw = (wt / m).reshape(n, 1, -1)
    fisher = np.einsum("npk,nqk->npq", jf * fw, jf)
    crlb = np.full((n, p), np.inf)
    ok = np.linalg.cond(fisher) < 1e12
    if ok.any():
        crlb[ok] = np.diagonal(np.linalg.inv(fisher[ok]), axis1=1, axis2=2) * excess_noise
    bad = ~np.all(np.isfinite(crlb) & (crlb > 0), axis=1)
    converged &= ~bad
    with np.errstate(divide="ignore", invalid="ignore"):
        sat = np.where(d > 0, d * np.log(d / np.maximum(m, 1e-12)), 0.0)
    llr = 2.0 * np.sum(wt * (m - d + sat), axis=(1, 2))
    return FitResult(theta=theta, crlb=crlb, log_likelihood_ratio=llr, converged=converged,
                     iterations=it, model=model)
