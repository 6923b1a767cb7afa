"""SIM band separation and the Fourier-space helpers shared by estimation and reconstruction.

Conventions: frames are ``(n_angles * n_phases, ny, nx)`` in angle-major order; spectra use
NumPy's unnormalised, unshifted FFT; wave vectors are ``(ky, kx)`` in cycles per micrometre.
Separated bands are ordered ``(0, +1, -1)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft as sfft

from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import DataError, message

__all__ = ["ORDERS", "check_frames", "fade_borders", "fade_to_mean", "separate_bands",
           "shift_band"]

#: Diffraction orders of a two-beam pattern, in the order bands are returned.
ORDERS: tuple[int, int, int] = (0, 1, -1)


def check_frames(frames: Any, n_angles: int, n_phases: int) -> np.ndarray:
    """Validate raw SIM frames and return them as float64 ``(n_angles, n_phases, ny, nx)``."""
    check_image_array(frames, name="SIM frames")
    arr = as_float32(frames)
    n = n_angles * n_phases
    if arr.ndim != 3 or arr.shape[0] != n:
        raise DataError(message(
            f"frames of shape {arr.shape}",
            f"({n}, Y, X): {n_angles} angles x {n_phases} phases, angle-major",
            "Reorder the stack so that frames of one angle are consecutive, or set "
            "n_angles/n_phases."))
    if min(arr.shape[1:]) < 32:
        raise DataError(message(f"frames of {arr.shape[1]}x{arr.shape[2]} pixels",
                                "at least 32x32 pixels", "Use a larger field of view."))
    return arr.astype(np.float64).reshape(n_angles, n_phases, *arr.shape[1:])


def fade_borders(image: np.ndarray, width: int) -> np.ndarray:
    """Multiply the outer ``width`` pixels by a cosine ramp from 1 (inside) to 0 (edge).

    Suppresses the cross-shaped leakage that the non-periodic field edges cause in the DFT
    (fairSIM's ``fadeBorderCos``). Works on the last two axes.
    """
    if width <= 0:
        return image
    out = np.array(image, dtype=np.float64, copy=True)
    for axis in (-2, -1):
        n = out.shape[axis]
        w = min(width, n // 4)
        ramp = np.ones(n)
        t = np.sin(0.5 * np.pi * (np.arange(w) + 0.5) / w) ** 2
        ramp[:w] = t
        ramp[n - w:] = t[::-1]
        shape = [1] * out.ndim
        shape[axis] = n
        out *= ramp.reshape(shape)
    return out


def fade_to_mean(image: np.ndarray, width: int) -> np.ndarray:
    """Blend the outer ``width`` pixels of each image towards its mean with a cosine ramp.

    Like :func:`fade_borders` it makes the field periodic (no cross-shaped leakage from the
    edges in the DFT), but it keeps the mean level instead of pulling the border to zero, so
    a large offset or background does not create a bright low-frequency frame. Works on the
    last two axes; the mean is taken per image.
    """
    if width <= 0:
        return np.asarray(image, dtype=np.float64)
    arr = np.asarray(image, dtype=np.float64)
    mean = arr.mean(axis=(-2, -1), keepdims=True)
    return mean + fade_borders(arr - mean, width)


def separate_bands(spectra: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Separate the three orders of one orientation by (least-squares) phase unmixing.

    Parameters
    ----------
    spectra : ndarray, shape (n_phases, ny, nx)
        FFTs of the frames of one orientation.
    phases : ndarray, shape (n_phases,)
        Pattern phase of each frame, radians.

    Returns
    -------
    ndarray, shape (3, ny, nx)
        complex128 bands ``C_0, C_+1, C_-1``.

    Notes
    -----
    Frame ``p`` is ``D_p = C_0 + e^{i phi_p} C_+ + e^{-i phi_p} C_-`` with
    ``C_0 = H S``, ``C_+- = (m/2) H(k) S(k -+ k0)``. With ``M[p, j] = exp(i o_j phi_p)`` the
    bands are ``pinv(M) D`` (exact inverse for 3 phases, least squares for 5, which averages
    the noise of the extra frames).
    """
    phases = np.asarray(phases, dtype=np.float64)
    mix = np.exp(1j * np.outer(phases, ORDERS))
    unmix = np.linalg.pinv(mix)
    return np.tensordot(unmix, spectra, axes=(1, 0))


def shift_band(band_real: np.ndarray, shift: tuple[float, float], *, workers: int = 1
               ) -> np.ndarray:
    """Spectrum of ``band_real * exp(2 pi i shift . r / N)``: the spectrum moved by ``shift``.

    Parameters
    ----------
    band_real : ndarray, shape (ny, nx), complex
        Inverse FFT of a band (its real-space form).
    shift : (float, float)
        Shift ``(sy, sx)`` in frequency-index units of this grid (may be fractional: exact
        sub-pixel shift of a band-limited, periodic field).

    Returns
    -------
    ndarray, shape (ny, nx)
        Spectrum ``B(k - shift)``.
    """
    ny, nx = band_real.shape
    ramp_y = np.exp(2j * np.pi * shift[0] * np.arange(ny) / ny)
    ramp_x = np.exp(2j * np.pi * shift[1] * np.arange(nx) / nx)
    return sfft.fft2(band_real * ramp_y[:, None] * ramp_x[None, :], workers=workers)
