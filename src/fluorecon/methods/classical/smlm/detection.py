"""Candidate detection for single-molecule localisation: band-pass filter + local maxima.

Two filters, both applied frame by frame to an image in photoelectrons:

- ``"wavelet"`` (ThunderSTORM's default, Izeddin et al. 2012): the undecimated ("a trous")
  B3-spline wavelet transform; the second wavelet plane ``F2 = V1 - V2`` keeps spots of a
  few pixels and removes both pixel noise (``F1 = I - V1``) and slowly varying background.
  The threshold is ``threshold`` times the noise of ``F1`` per frame: ThunderSTORM's
  ``std(Wave.F1)``, but sigma-clipped (3 sigma), because with a PSF narrower than about a
  pixel bright molecules leak into ``F1`` and inflate its plain standard deviation, which
  then hides the dimmer molecules of the same frame.
- ``"dog"``: difference of Gaussians ``G(sigma) - G(1.6 sigma)``, an approximation of the
  matched Laplacian-of-Gaussian; the threshold is ``threshold`` times the sigma-clipped
  standard deviation of the filtered frame.

A candidate is a pixel larger than its 8 (2D) neighbours in the filtered frame and above the
threshold.

References
----------
.. [1] I. Izeddin et al., "Wavelet analysis for single molecule localization microscopy",
   Opt. Express 20, 2081-2095 (2012).
.. [2] M. Ovesný et al., "ThunderSTORM: a comprehensive ImageJ plug-in for PALM and STORM
   data analysis and super-resolution imaging", Bioinformatics 30, 2389-2390 (2014).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from fluorecon.core.errors import ConfigError, message

__all__ = ["DetectionFilter", "band_pass", "detect_candidates"]

DetectionFilter = Literal["wavelet", "dog"]

_B3 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _robust_std(flat: np.ndarray, *, clip: float = 3.0, iterations: int = 3) -> np.ndarray:
    """Per-row sigma-clipped standard deviation (values beyond ``clip`` sigma of the row's
    mean are left out, ``iterations`` times): the plain std of the noise, without the
    sparse bright spots. Unlike the MAD it stays right for skewed, low-count noise."""
    keep = np.ones(flat.shape, bool)
    std = flat.std(axis=1)
    for _ in range(iterations):
        n = np.maximum(keep.sum(axis=1), 1)
        mean = np.where(keep, flat, 0.0).sum(axis=1) / n
        var = np.where(keep, (flat - mean[:, None]) ** 2, 0.0).sum(axis=1) / n
        std = np.sqrt(var)
        keep = np.abs(flat - mean[:, None]) <= clip * np.maximum(std, 1e-12)[:, None]
    return std


def _separable(stack: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    out = ndimage.correlate1d(stack, kernel, axis=-1, mode="reflect")
    return ndimage.correlate1d(out, kernel, axis=-2, mode="reflect")


def band_pass(frames: np.ndarray, *, filter: DetectionFilter = "wavelet", sigma: float = 1.3
              ) -> tuple[np.ndarray, np.ndarray]:
    """Band-pass filter every frame and estimate the noise of the filtered frames.

    Parameters
    ----------
    frames : ndarray, shape (T, Y, X)
        Frames (photoelectrons or photons; any offset is removed by the filter).
    filter : {"wavelet", "dog"}
    sigma : float
        PSF sigma in pixels (``"dog"`` only).

    Returns
    -------
    filtered : ndarray of float64, shape (T, Y, X)
    noise : ndarray, shape (T,)
        Per-frame noise scale the threshold multiplies: the sigma-clipped standard
        deviation of ``F1`` (wavelet) or of the filtered frame (dog).
    """
    x = np.asarray(frames, np.float64)
    if filter == "wavelet":
        v1 = _separable(x, _B3)
        k2 = np.zeros(9)
        k2[::2] = _B3
        v2 = _separable(v1, k2)
        f1 = (x - v1).reshape(x.shape[0], -1)
        return v1 - v2, _robust_std(f1)
    if filter == "dog":
        g1 = ndimage.gaussian_filter(x, (0, sigma, sigma), mode="reflect")
        g2 = ndimage.gaussian_filter(x, (0, 1.6 * sigma, 1.6 * sigma), mode="reflect")
        f = g1 - g2
        return f, _robust_std(f.reshape(x.shape[0], -1))
    raise ConfigError(message(f"detection filter {filter!r}", "'wavelet' or 'dog'",
                              "Pick one of those."))


def detect_candidates(frames: np.ndarray, *, filter: DetectionFilter = "wavelet",
                      sigma: float = 1.3, threshold: float = 1.0, border: int = 0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima of the band-passed frames above ``threshold`` times the noise.

    Parameters
    ----------
    frames : ndarray, shape (T, Y, X)
        Frames in photoelectrons or photons.
    filter : {"wavelet", "dog"}
    sigma : float
        PSF sigma in pixels.
    threshold : float
        Multiple of the per-frame noise scale (see :func:`band_pass`).
    border : int
        Ignore maxima closer than this to the frame edge (0 keeps all: the fitter masks
        the pixels outside the frame).

    Returns
    -------
    frame, y, x : ndarray of int64, shape (n,)
        Candidate pixels, ordered by frame.
    score : ndarray of float64, shape (n,)
        Filtered value at the candidate, in units of the frame's noise scale.
    """
    if threshold <= 0:
        raise ConfigError(message(f"threshold {threshold}", "a positive multiple of the noise",
                                  "Use e.g. threshold=1.0."))
    filtered, noise = band_pass(frames, filter=filter, sigma=sigma)
    peak = ndimage.maximum_filter(filtered, size=(1, 3, 3), mode="nearest")
    level = threshold * np.maximum(noise, 1e-12)[:, None, None]
    mask = (filtered == peak) & (filtered > level)
    if border > 0:
        mask[:, :border] = False
        mask[:, -border:] = False
        mask[:, :, :border] = False
        mask[:, :, -border:] = False
    t, y, x = np.nonzero(mask)
    score = filtered[t, y, x] / np.maximum(noise[t], 1e-12)
    return t.astype(np.int64), y.astype(np.int64), x.astype(np.int64), score
