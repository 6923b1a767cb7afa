"""PSF validation and optical transfer functions (OTFs) on an FFT working grid.

Convention: the PSF centre is the pixel at index ``M // 2`` along each axis of a PSF of
shape ``M`` (as produced by :mod:`fluorecon.simulate.psf` and by ``np.fft.fftshift``).
An odd-sized PSF is then centred exactly; measured PSFs should be cropped to odd sizes
around their maximum before use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.methods.fft_backend import RealFFT


def check_psf(psf: Any, ndim: int, *, name: str = "psf") -> np.ndarray:
    """Validate a PSF for ``ndim`` spatial dimensions and return it as float64, sum 1.

    Parameters
    ----------
    psf : array_like
        Point spread function, ``ndim`` dimensions (``"YX"`` or ``"ZYX"``), non-negative,
        finite, with a positive sum. Any size: it is cropped or zero-padded (centred) to the
        working grid later.
    ndim : int
        Number of spatial dimensions of the image (2 or 3).

    Returns
    -------
    numpy.ndarray
        float64 copy normalised to sum 1 (the input is not modified).

    Raises
    ------
    ConfigError
        ``psf`` is missing or not numeric array-like.
    DataError
        Wrong number of dimensions, empty axis, NaN/inf, negative values or zero sum.
    """
    if psf is None:
        raise ConfigError(message("no PSF", f"a {ndim}D PSF array",
                                  "Pass psf=<array>, e.g. from fluorecon.simulate.psf."))
    try:
        arr = np.asarray(psf)
    except (TypeError, ValueError):
        raise ConfigError(message(f"{name} of type {type(psf).__name__}", "a numeric array",
                                  "Pass a NumPy array.")) from None
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise ConfigError(message(f"{name} of dtype {arr.dtype}", "a real numeric array",
                                  "Pass a float32/float64 (or integer) PSF."))
    if arr.ndim != ndim:
        axes = "YX" if ndim == 2 else "ZYX"
        raise DataError(message(f"a {arr.ndim}D {name} with shape {arr.shape} for {ndim}D image "
                                f"blocks", f"a {ndim}D ({axes}) PSF",
                                "Use a PSF with one axis per spatial axis of the image."))
    if any(s == 0 for s in arr.shape):
        raise DataError(message(f"{name} with shape {arr.shape}", "a non-empty PSF",
                                "Check the PSF file."))
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise DataError(message(f"{name} containing NaN or infinite values", "finite values",
                                "Replace invalid pixels (e.g. np.nan_to_num)."))
    low = float(arr.min())
    if low < 0:
        raise DataError(message(f"{name} with negative values (min {low:.3g})",
                                "a non-negative PSF",
                                "Subtract background then clip: np.clip(psf, 0, None)."))
    total = float(arr.sum())
    if not total > 0:
        raise DataError(message(f"{name} summing to {total:g}", "a PSF with positive sum",
                                "Check the PSF is not all zeros."))
    return arr / total


def fit_psf(psf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Crop (centred) every axis of ``psf`` longer than ``shape``; renormalise to sum 1.

    The centre pixel (index ``M // 2``) stays the centre (index ``n // 2``) after cropping.
    """
    slices = []
    for m, n in zip(psf.shape, shape):
        if m > n:
            start = m // 2 - n // 2
            slices.append(slice(start, start + n))
        else:
            slices.append(slice(None))
    out = psf[tuple(slices)]
    total = out.sum()
    if not total > 0:
        raise DataError(message(f"a PSF with no energy within the central {shape} pixels",
                                "a PSF centred at index shape // 2",
                                "Centre the PSF maximum in its array."))
    return out / total


def embed_centred(psf: np.ndarray, shape: tuple[int, ...], out: np.ndarray) -> np.ndarray:
    """Write ``psf`` into ``out`` (``shape``) with its centre pixel moved to index 0.

    Zero elsewhere, with circular wrap: this is ``ifftshift`` of the PSF zero-padded to
    ``shape``. ``psf`` must be no larger than ``shape`` along any axis.
    """
    out[...] = 0
    src = []
    # Per axis, PSF index i goes to (i - M//2) mod n: two contiguous pieces.
    for m, n in zip(psf.shape, shape):
        c = m // 2
        src.append(((slice(c, m), slice(0, m - c)), (slice(0, c), slice(n - c, n))))
    for pieces in np.ndindex(*(2,) * psf.ndim):
        s = tuple(src[d][p][0] for d, p in enumerate(pieces))
        t = tuple(src[d][p][1] for d, p in enumerate(pieces))
        out[t] = psf[s]
    return out


def make_otf(psf: np.ndarray, fft: RealFFT) -> np.ndarray:
    """Half-spectrum OTF of a normalised ``psf`` on the grid of ``fft`` (complex64).

    The OTF is ``rfftn(ifftshift(pad(psf)))``; its zero-frequency value is 1 for a PSF
    summing to 1. Multiplying a spectrum by it and inverting convolves circularly with the
    PSF; multiplying by its complex conjugate correlates (the adjoint).
    """
    buf = fft.empty_real()
    embed_centred(psf.astype(np.float32), fft.shape, buf)
    return np.array(fft.forward(buf), dtype=np.complex64, copy=True)


def convolve_fft(image: Any, psf: Any, *, adjoint: bool = False,
                 fft_backend: str = "auto") -> np.ndarray:
    """Circular convolution of ``image`` with ``psf`` (or its adjoint, the correlation).

    Uses exactly the OTF construction of the deconvolution loops (:func:`make_otf`, with
    the conjugate OTF for the adjoint), so it doubles as their forward model and as a
    check of it.

    Parameters
    ----------
    image : array_like, shape (Y, X) or (Z, Y, X)
        Input (float32 by value).
    psf : array_like
        PSF with the same number of dimensions, centred at ``shape // 2``; normalised
        to sum 1 and cropped to the image size like in the deconvolution functions.
    adjoint : bool
        Apply :math:`H^T` (correlation with the PSF) instead of :math:`H`.
    fft_backend : {"auto", "pyfftw", "scipy"}
        FFT implementation.

    Returns
    -------
    numpy.ndarray
        float32 array of ``image.shape``.
    """
    x = np.ascontiguousarray(np.asarray(image, dtype=np.float32))
    h = fit_psf(check_psf(psf, x.ndim), x.shape)
    fft = RealFFT(x.shape, backend=fft_backend, effort="estimate")
    otf = make_otf(h, fft)
    if adjoint:
        np.conj(otf, out=otf)
    otf *= np.float32(fft.scale)
    spec = fft.forward(x)
    spec *= otf
    return fft.inverse(fft.empty_real())


#: ``boundary="auto"`` uses the periodic grid only when the border bands hold (almost) no
#: signal: band mean within this fraction of the dynamic range above the dark level ...
AUTO_BAND_MEAN = 0.01
#: ... and the band's maximum after a 3-pixel box filter within this fraction (no bright
#: object at a border, however small).
AUTO_BAND_HIGH = 0.10


def resolve_boundary(boundary: str, image: np.ndarray, psf_shape: tuple[int, ...],
                     background: float | np.ndarray = 0.0) -> str:
    """Return ``"pad"`` or ``"periodic"`` for ``boundary`` (resolving ``"auto"``).

    ``"auto"`` chooses the periodic grid (no padding: the FFT runs on the image shape, about
    2x faster for a large 3D PSF) only when wrap-around cannot matter, that is when the
    image is dark along a thin band at every border (``max(2, m // 8)`` pixels for a PSF
    ``m`` pixels wide, at most a sixteenth of the image): light that reaches the image edge
    is what a periodic model would wrap to the opposite side.

    - band mean - dark level <= ``AUTO_BAND_MEAN`` x (bright level - dark level), and
    - band maximum (3-pixel box filtered) - dark level <= ``AUTO_BAND_HIGH`` x (bright - dark),

    where the dark and bright levels are the 0.5th and 99.9th percentiles of
    ``image - background``. Otherwise (cells touching the field of view, or noise too high to
    tell) it pads, estimating the object beyond the borders (Bertero & Boccacci 2005).
    """
    if boundary != "auto":
        return boundary
    y = np.asarray(image, dtype=np.float32)
    b = float(np.mean(background))
    step = max(1, int(y.size // (1 << 20)))
    sample = y.reshape(-1)[::step] - b
    dark, bright = np.percentile(sample, [0.5, 99.9])
    span = float(bright - dark)
    if not span > 0:
        return "periodic"
    from scipy.ndimage import uniform_filter

    total = 0.0
    count = 0
    high = -np.inf
    for axis, m in enumerate(psf_shape):
        w = max(1, min(max(2, m // 8), y.shape[axis] // 16))
        for part in (slice(0, w), slice(y.shape[axis] - w, None)):
            index = [slice(None)] * y.ndim
            index[axis] = part
            slab = y[tuple(index)] - np.float32(b)
            total += float(slab.sum(dtype=np.float64))
            count += slab.size
            high = max(high, float(uniform_filter(slab, size=3, mode="nearest").max()))
    mean_ok = total / count - dark <= AUTO_BAND_MEAN * span
    high_ok = high - dark <= AUTO_BAND_HIGH * span
    return "periodic" if (mean_ok and high_ok) else "pad"
