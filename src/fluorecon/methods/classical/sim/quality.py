"""Image-based quality checks of a SIM reconstruction: resolution and pattern artefacts.

Two checks that need no ground truth and no second acquisition, as used to judge real
SIM data (HiFi-SIM, fairSIM):

- :func:`decorrelation_resolution`: the decorrelation analysis of Descloux et al. (2019),
  the highest frequency at which the image's phase spectrum still correlates with its own
  amplitude-weighted spectrum (a resolution estimate from one image);
- :func:`pattern_peak_ratio`: the residual spectral peak at given wave vectors (the pattern
  frequencies ``+-k_a`` or their multiples) relative to the median of its ring. Every
  separated band carries the sample's DC term, by far its largest value; wrong phases leak
  it between the bands, and a misplaced band puts it at ``+-k_a`` or ``+-2 k_a`` of the
  reconstruction, where it shows up as a sharp peak many times its ring's level (the
  periodic "honeycomb" artefact of Wiener-SIM).

References
----------
.. [1] A. Descloux, K. S. Grußmayer, A. Radenovic, "Parameter-free image resolution
   estimation based on decorrelation analysis", Nat. Methods 16, 918-924, 2019.
.. [2] G. Wen et al., "High-fidelity structured illumination microscopy by point-spread-
   function engineering", Light Sci. Appl. 10, 70, 2021 (HiFi-SIM).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.methods.classical.sim.bands import fade_borders

__all__ = ["decorrelation_resolution", "pattern_peak_ratio"]


def _spectrum(image: Any, fade: int) -> np.ndarray:
    check_image_array(image, name="image", finite=True)
    x = as_float32(image).astype(np.float64)
    if x.ndim != 2 or min(x.shape) < 32:
        raise DataError(message(f"an image of shape {x.shape}", "a 2D image of >= 32x32",
                                "Pass one 2D reconstruction."))
    x = x - x.mean()
    return np.fft.fft2(fade_borders(x, fade))


def decorrelation_resolution(image: Any, *, pixel_size: float, n_radii: int = 50,
                             n_filters: int = 10, fade: int = 20) -> float:
    """Resolution estimate from one image by decorrelation analysis, micrometres.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        2D image (any units; the mean is removed and the borders faded).
    pixel_size : float
        Pixel size, micrometres.
    n_radii : int
        Number of mask radii between 0 and the Nyquist frequency.
    n_filters : int
        Number of Gaussian high-pass filters (their widths spaced geometrically).
    fade : int
        Border apodisation width, pixels.

    Returns
    -------
    float
        ``1 / k_c`` with ``k_c`` the highest decorrelation peak frequency found (cycles/um);
        ``inf`` when no peak is found.

    Notes
    -----
    With ``I`` the image spectrum and ``I_n = I / |I|`` its phase, the correlation
    ``d(r) = Re sum I conj(I_n M_r) / sqrt(sum |I|^2 sum |I_n M_r|^2)`` (``M_r`` a disc of
    radius ``r``) rises while ``M_r`` adds frequencies carrying signal and falls once it
    adds only noise; the radius of its maximum is a cut-off. Repeating on the image
    high-pass filtered by ``1 - exp(-k^2 / (2 sigma^2))`` for decreasing ``sigma`` and taking
    the largest peak radius gives ``k_c`` (Descloux et al. 2019).
    """
    if pixel_size <= 0 or n_radii < 10 or n_filters < 1:
        raise ConfigError(message(f"pixel_size={pixel_size}, n_radii={n_radii}, "
                                  f"n_filters={n_filters}", "pixel_size > 0, n_radii >= 10, "
                                  "n_filters >= 1", "Use the defaults."))
    spec = _spectrum(image, fade)
    ny, nx = spec.shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.fftfreq(nx)[None, :]
    kr = np.hypot(ky, kx) / 0.5  # fraction of Nyquist
    radii = np.linspace(0.0, 1.0, n_radii + 1)[1:]
    phase = spec / np.maximum(np.abs(spec), 1e-300)
    best = 0.0
    sigmas = np.concatenate([[np.inf], np.geomspace(0.5, 0.01, n_filters)])
    for s in sigmas:
        filt = spec if np.isinf(s) else spec * (1 - np.exp(-0.5 * (kr / s) ** 2))
        e_img = float(np.sum(np.abs(filt) ** 2))
        d = np.empty(radii.size)
        for i, r in enumerate(radii):
            m = kr <= r
            num = float(np.sum((filt[m] * np.conj(phase[m])).real))
            d[i] = num / np.sqrt(e_img * float(np.sum(np.abs(phase[m]) ** 2)) + 1e-300)
        i = int(np.argmax(d))
        # A genuine peak: a local maximum inside the range, clearly above the curve's end.
        if 0 < i < radii.size - 1 and d[i] > 1.05 * d[-1] and d[i] > 0.02:
            best = max(best, float(radii[i]))
    if best == 0:
        return float("inf")
    return 1.0 / (best * 0.5 / pixel_size)


def pattern_peak_ratio(image: Any, wavevectors: Any, *, pixel_size: float, fade: int = 20
                       ) -> np.ndarray:
    """Residual spectral peak at each pattern wave vector over the median of its ring.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Reconstruction (or any image of the field).
    wavevectors : array_like, shape (n_angles, 2)
        Pattern ``(ky, kx)`` per orientation, cycles per micrometre.
    pixel_size : float
        Pixel size of ``image``, micrometres.
    fade : int
        Border apodisation width, pixels.

    Returns
    -------
    ndarray, shape (n_angles,)
        ``max(|I(+k)|, |I(-k)|)`` (maximum over the 3 x 3 nearest frequency samples) divided
        by the median ``|I|`` on the ring of radius ``|k|`` (one sample wide). About 1-5 for
        an artefact-free image (the maximum of a few ring samples); a residual pattern
        stands out many times higher (tens to hundreds). Check ``wavevectors`` and
        ``2 * wavevectors``: phase errors show mostly at ``+-2 k``.
    """
    spec = np.abs(_spectrum(image, fade))
    ny, nx = spec.shape
    fy = np.fft.fftfreq(ny, d=pixel_size)[:, None]
    fx = np.fft.fftfreq(nx, d=pixel_size)[None, :]
    fr = np.hypot(fy, fx)
    dfy, dfx = 1.0 / (ny * pixel_size), 1.0 / (nx * pixel_size)
    local = ndimage.maximum_filter(spec, size=3, mode="wrap")
    k = np.asarray(wavevectors, dtype=np.float64).reshape(-1, 2)
    out = np.empty(k.shape[0])
    for a, (ky, kx) in enumerate(k):
        f = float(np.hypot(ky, kx))
        ring = np.abs(fr - f) <= 0.5 * max(dfy, dfx)
        med = float(np.median(spec[ring])) if np.any(ring) else 0.0
        peak = max(float(local[int(round(sgn * ky / dfy)) % ny, int(round(sgn * kx / dfx)) % nx])
                   for sgn in (1, -1))
        out[a] = peak / max(med, 1e-300)
    return out
