"""Degradations of a sample image: PSF blur, pixel binning, axial anisotropy, background.

All functions take NumPy arrays (converted to float32 by value), never modify their input,
and return new float32 arrays. Intensities keep their units (photons stay photons).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.rng import SeedLike, make_rng

__all__ = ["add_background", "axial_anisotropy", "blur", "downsample"]

BoundaryMode = Literal["reflect", "constant", "wrap"]


def blur(image: Any, psf: Any, *, mode: BoundaryMode = "reflect") -> np.ndarray:
    """Convolve ``image`` with ``psf`` by FFT; the output has the shape of ``image``.

    Parameters
    ----------
    image : array_like
        2D or 3D image (any supported dtype; computed in float32).
    psf : array_like
        PSF with the same number of dimensions, centred at index ``psf.shape // 2``
        (the convention of :mod:`fluorecon.simulate.psf`). It may be smaller or larger than
        the image. It is used as given: flux is preserved when it sums to 1.
    mode : {"reflect", "constant", "wrap"}
        Boundary handling: ``"reflect"`` mirrors the image about its edge (half-sample
        symmetric, as ``scipy.ndimage``'s ``"reflect"``); ``"constant"`` pads with zeros
        (light from outside the field is absent, and light blurred out of the field is lost);
        ``"wrap"`` is periodic (circular convolution: total flux is preserved exactly).

    Returns
    -------
    numpy.ndarray
        float32 array of ``image.shape``.

    Notes
    -----
    ``out[i] = sum_j psf[j] * image[i + c - j]`` with ``c = psf.shape // 2``, evaluated with
    real FFTs of a fast length after padding the image by the PSF support (so only the chosen
    boundary, never FFT wrap-around, affects the result in the non-periodic modes).

    Examples
    --------
    >>> import numpy as np
    >>> im = np.zeros((9, 9), np.float32); im[4, 4] = 1
    >>> out = blur(im, np.full((3, 3), 1 / 9, np.float32), mode="constant")
    >>> round(float(out.sum()), 5), round(float(out[3, 5]), 4)
    (1.0, 0.1111)
    """
    img = _image(image)
    ker = as_float32(np.asarray(psf))
    if ker.ndim != img.ndim:
        raise DataError(message(f"a {ker.ndim}D PSF for a {img.ndim}D image",
                                "a PSF with as many dimensions as the image",
                                "Use a 2D PSF for YX images and a 3D PSF for ZYX volumes."))
    if ker.size == 0 or not np.all(np.isfinite(ker)):
        raise DataError(message("an empty or non-finite PSF", "a finite PSF",
                                "Check the PSF array."))
    if mode not in ("reflect", "constant", "wrap"):
        raise ConfigError(message(f"mode={mode!r}", "'reflect', 'constant' or 'wrap'",
                                  "Pick a boundary mode."))
    centre = [k // 2 for k in ker.shape]
    axes = tuple(range(img.ndim))
    if mode == "wrap":
        kernel = np.zeros(img.shape, dtype=np.float32)
        idx = np.ix_(*[(np.arange(k) - c) % n for k, c, n in zip(ker.shape, centre, img.shape)])
        np.add.at(kernel, idx, ker)
        out = sfft.irfftn(sfft.rfftn(img, axes=axes) * sfft.rfftn(kernel, axes=axes),
                          s=img.shape, axes=axes)
        return out.astype(np.float32)
    pad = [(k - 1 - c, c) for k, c in zip(ker.shape, centre)]
    padded = np.pad(img, pad, mode="symmetric" if mode == "reflect" else "constant")
    full = [p + k - 1 for p, k in zip(padded.shape, ker.shape)]
    fshape = [sfft.next_fast_len(n, real=True) for n in full]
    spec = sfft.rfftn(padded, s=fshape, axes=axes) * sfft.rfftn(ker, s=fshape, axes=axes)
    res = sfft.irfftn(spec, s=fshape, axes=axes)
    sl = tuple(slice(k - 1, k - 1 + n) for k, n in zip(ker.shape, img.shape))
    return np.ascontiguousarray(res[sl], dtype=np.float32)


def downsample(
    image: Any,
    factor: int | Sequence[int],
    *,
    axes: int | Sequence[int] | None = None,
    reduce: Literal["mean", "sum"] = "mean",
    remainder: Literal["crop", "error"] = "crop",
) -> np.ndarray:
    """Bin pixels by integer factors: area averaging (``"mean"``) or camera binning (``"sum"``).

    Parameters
    ----------
    image : array_like
        Image of any dimensionality (computed in float32).
    factor : int or sequence of int
        Bin size, one for all binned axes or one per entry of ``axes``.
    axes : int or sequence of int, optional
        Array dimensions to bin (negative indices allowed). Default: all.
    reduce : {"mean", "sum"}
        ``"mean"`` preserves intensity per pixel (area averaging); ``"sum"`` preserves total
        flux, as hardware binning of photon counts does.
    remainder : {"crop", "error"}
        What to do when an axis length is not a multiple of its factor: ``"crop"`` drops the
        trailing pixels that do not fill a bin; ``"error"`` raises.

    Returns
    -------
    numpy.ndarray
        float32 array with binned axes of length ``n // factor``.

    Examples
    --------
    >>> import numpy as np
    >>> downsample(np.arange(16, dtype=np.float32).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    img = as_float32(np.asarray(image))
    nd = img.ndim
    if axes is None:
        ax = list(range(nd))
    else:
        ax = [int(a) for a in (np.atleast_1d(axes))]
        if any(not -nd <= a < nd for a in ax):
            raise ConfigError(message(f"axes={axes!r} for a {nd}D image",
                                      f"dimension indices in [-{nd}, {nd})", "Fix axes."))
        ax = [a % nd for a in ax]
        if len(set(ax)) != len(ax):
            raise ConfigError(message(f"axes={axes!r}", "each dimension at most once",
                                      "Remove repeated axes."))
    facs = [int(f) for f in np.atleast_1d(factor)]
    if len(facs) == 1:
        facs = facs * len(ax)
    if len(facs) != len(ax) or any(f < 1 for f in facs) or any(
            int(f) != f for f in np.atleast_1d(factor)):
        raise ConfigError(message(f"factor={factor!r} for {len(ax)} binned axes",
                                  "one positive integer, or one per binned axis",
                                  "Pass e.g. factor=2 or factor=(1, 2, 2)."))
    if reduce not in ("mean", "sum"):
        raise ConfigError(message(f"reduce={reduce!r}", "'mean' or 'sum'", "Pick one."))
    per_axis = [1] * nd
    for a, f in zip(ax, facs):
        per_axis[a] = f
    crop = []
    for n, f in zip(img.shape, per_axis):
        if n < f:
            raise DataError(message(f"an axis of length {n} binned by {f}",
                                    "axes at least as long as their factor",
                                    "Use a smaller factor."))
        if n % f and remainder == "error":
            raise DataError(message(f"an axis of length {n} binned by {f}",
                                    "lengths divisible by the factor",
                                    "Crop the image or pass remainder='crop'."))
        crop.append(slice(0, n - n % f))
    cropped = img[tuple(crop)]
    new_shape: list[int] = []
    for n, f in zip(cropped.shape, per_axis):
        new_shape += [n // f, f]
    blocks = cropped.reshape(new_shape)
    red_axes = tuple(range(1, 2 * nd, 2))
    out = blocks.mean(axis=red_axes, dtype=np.float64) if reduce == "mean" else \
        blocks.sum(axis=red_axes, dtype=np.float64)
    return out.astype(np.float32)


def axial_anisotropy(
    volume: Any,
    factor: int,
    *,
    psf: Any | None = None,
    offset: int = 0,
    mode: BoundaryMode = "reflect",
) -> np.ndarray:
    """Make an anisotropic stack from a ZYX volume: blur along Z, keep every ``factor``-th plane.

    Parameters
    ----------
    volume : array_like
        3D ``"ZYX"`` volume with isotropic voxels.
    factor : int
        Axial subsampling factor (the new Z step is ``factor`` times the old one).
    psf : array_like, optional
        Axial blur: a 1D kernel along Z (centred at ``len // 2``) or a full 3D PSF
        (passed to :func:`blur`). Default: a Gaussian along Z with FWHM ``factor`` planes,
        which models the extra axial blur of a coarse stack and prevents aliasing.
    offset : int
        Index of the first kept plane, ``0 <= offset < factor``.
    mode : {"reflect", "constant", "wrap"}
        Boundary handling of the blur.

    Returns
    -------
    numpy.ndarray
        float32 volume of shape ``(ceil((nz - offset) / factor), ny, nx)``.

    Notes
    -----
    This is the degradation used to train isotropic restoration (Weigert et al. 2018): the
    lateral resolution of a volume is transferred to its axial direction by learning to undo
    ``subsample_z(blur_z(x))``.

    References
    ----------
    .. [1] M. Weigert et al., "Content-aware image restoration: pushing the limits of
       fluorescence microscopy", Nat. Methods 15, 1090-1097, 2018.
    """
    vol = _image(volume)
    if vol.ndim != 3:
        raise DataError(message(f"a {vol.ndim}D array", "a 3D ZYX volume",
                                "Pass a volume with axes ZYX."))
    if int(factor) != factor or factor < 1:
        raise ConfigError(message(f"factor={factor!r}", "an integer >= 1", "Pass e.g. factor=4."))
    factor = int(factor)
    if not 0 <= offset < factor:
        raise ConfigError(message(f"offset={offset}", f"0 <= offset < factor ({factor})",
                                  "Pass offset=0."))
    if psf is None:
        sigma = factor / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        half = int(math.ceil(4 * sigma))
        z = np.arange(-half, half + 1, dtype=np.float64)
        kern = np.exp(-0.5 * (z / sigma) ** 2)
        psf = kern / kern.sum()
    ker = np.asarray(psf, dtype=np.float32)
    if ker.ndim == 1:
        ker = ker[:, None, None]
    blurred = blur(vol, ker, mode=mode)
    return np.ascontiguousarray(blurred[offset::factor])


def add_background(
    image: Any,
    level: float | Any,
    *,
    variation: float = 0.0,
    length_scale: float | None = None,
    seed: SeedLike = None,
) -> np.ndarray:
    """Add a (possibly uneven) background, e.g. out-of-focus light or autofluorescence.

    Parameters
    ----------
    image : array_like
        Image in any intensity units (e.g. photons).
    level : float or array_like
        Mean background in the image's units, a scalar or an array broadcastable to it.
    variation : float
        Relative amplitude of smooth spatial variation, ``0 <= variation <= 1``: the
        background is ``level * (1 + variation * f)`` with ``f`` a smooth random field
        scaled to ``[-1, 1]``.
    length_scale : float, optional
        Correlation length of ``f`` in pixels. Default: a quarter of the smallest axis.
    seed : int or numpy.random.Generator, optional
        Seed for ``f`` (unused when ``variation == 0``).

    Returns
    -------
    numpy.ndarray
        float32 ``image + background`` (the background is non-negative).

    Examples
    --------
    >>> import numpy as np
    >>> out = add_background(np.zeros((8, 8)), 5.0)
    >>> float(out.mean())
    5.0
    """
    img = _image(image)
    lev = np.asarray(level, dtype=np.float64)
    if not np.all(np.isfinite(lev)) or np.any(lev < 0):
        raise ConfigError(message(f"background level {level!r}", "finite values >= 0",
                                  "Pass a non-negative background."))
    if not 0.0 <= variation <= 1.0:
        raise ConfigError(message(f"variation={variation}", "0 <= variation <= 1",
                                  "Pass e.g. variation=0.3."))
    bg = np.broadcast_to(lev, img.shape).astype(np.float64)
    if variation > 0:
        scale = min(img.shape) / 4.0 if length_scale is None else float(length_scale)
        if not scale > 0:
            raise ConfigError(message(f"length_scale={length_scale}", "a positive length in pixels",
                                      "Pass e.g. length_scale=32."))
        rng = make_rng(seed)
        f = ndimage.gaussian_filter(rng.standard_normal(img.shape), scale, mode="wrap")
        f -= f.mean()
        peak = np.abs(f).max()
        if peak > 0:
            f /= peak
        bg = bg * (1.0 + variation * f)
    return (img + bg).astype(np.float32)


def _image(image: Any) -> np.ndarray:
    arr = as_float32(np.asarray(image))
    if arr.ndim not in (2, 3):
        raise DataError(message(f"an image of shape {arr.shape}", "a 2D (YX) or 3D (ZYX) image",
                                "Process one spatial block at a time."))
    if not np.all(np.isfinite(arr)):
        raise DataError(message("an image containing NaN or infinite values", "finite values",
                                "Replace invalid pixels first."))
    return arr
