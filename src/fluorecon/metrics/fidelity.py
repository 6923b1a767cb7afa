"""Reference-based image metrics: PSNR, SSIM, NRMSE, plain and normalised.

Two families answer two questions:

* **plain** (:func:`psnr`, :func:`ssim`, :func:`nrmse`) compare the numbers as they are, in
  the reference's units. A prediction off by a gain or an offset scores badly.
* **normalised** (:func:`normalized_psnr`, ...) follow CARE's evaluation (Weigert et al.
  2018): the reference is normalised by its 0.1 and 99.9 percentiles (``clip=False``), the
  prediction is mapped onto it by the least-squares affine transform
  (:func:`fluorecon.normalize.normalize_pair`), and the plain metric is computed with
  ``data_range=1`` (the nominal range of the normalised reference, as in the CARE
  paper's evaluation code, ``get_scores``). These scores are invariant to any gain and
  offset of the prediction and compare structure, not units.

Conventions (both families)
---------------------------
* ``data_range`` defaults to ``reference.max() - reference.min()`` for plain metrics
  (never to the dtype's range, which would inflate PSNR of 12-bit data in uint16 by
  24 dB) and is 1 for normalised metrics.
* ``NRMSE = RMSE / data_range``, the same ``data_range`` PSNR uses, so
  ``PSNR = -20 log10(NRMSE)`` holds exactly for both families. (This is scikit-image's
  ``normalized_root_mse(..., normalization="min-max")``; for normalised metrics it is
  CARE's NRMSE, the RMSE of the normalised images.)
* Identical images have PSNR ``inf`` and NRMSE 0.
* SSIM is Wang et al.'s with Gaussian weights (sigma 1.5 pixels, truncated at 3.5 sigma,
  i.e. an 11-pixel window), population covariances and K1=0.01, K2=0.03, computed by
  scikit-image natively in 2D or 3D (a 3D Gaussian window for ``"ZYX"``, in pixel units:
  anisotropic voxels are not compensated). The mean is taken over pixels at least 5
  pixels from every border. Non-spatial axes (``S``, ``T``, ``C``) named in ``axes`` are
  looped over and the SSIM maps averaged.
* PSNR and NRMSE pool every value of the array (all channels and time points).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from fluorecon.core.axes import check_axes
from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import AxesError, DataError, message
from fluorecon.normalize.affine import EVAL_HIGH, EVAL_LOW, normalize_pair

#: SSIM settings of Wang et al. (2004), used for every SSIM in fluorecon.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_WINDOW = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1  # 11 pixels

#: Keys of :func:`evaluate`'s result, in order.
EVALUATE_KEYS = ("psnr", "ssim", "nrmse", "psnr_normalized", "ssim_normalized",
                 "nrmse_normalized")


# -- plain metrics -----------------------------------------------------------------------
def psnr(prediction: Any, reference: Any, *, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB.

    Parameters
    ----------
    prediction, reference : array-like
        Same shape (2D, 3D or more), finite values.
    data_range : float, optional
        Peak value range; default ``reference.max() - reference.min()``.

    Returns
    -------
    float
        :math:`10 \\log_{10}(L^2 / \\mathrm{MSE})`; ``inf`` for identical images.

    Raises
    ------
    DataError
        Shapes differ, NaN/infinite values, or a constant reference with no
        ``data_range``.

    Notes
    -----
    Equal to ``skimage.metrics.peak_signal_noise_ratio(reference, prediction,
    data_range=L)``; the MSE is accumulated in float64.
    """
    x, r = check_pair(prediction, reference)
    return _psnr(x, r, _data_range(r, data_range))


def nrmse(prediction: Any, reference: Any, *, data_range: float | None = None) -> float:
    """Root-mean-square error divided by the reference's data range.

    ``NRMSE = sqrt(mean((prediction - reference)**2)) / L`` with ``L = data_range``
    (default ``reference.max() - reference.min()``), so that
    ``psnr == -20 * log10(nrmse)``. Equal to scikit-image's
    ``normalized_root_mse(reference, prediction, normalization="min-max")``.
    """
    x, r = check_pair(prediction, reference)
    return _nrmse(x, r, _data_range(r, data_range))


def ssim(prediction: Any, reference: Any, *, data_range: float | None = None,
         axes: str | None = None) -> float:
    """Mean structural similarity (Wang et al. 2004), natively in 2D or 3D.

    Parameters
    ----------
    prediction, reference : array-like
        Same shape, finite values. Every spatial dimension needs at least 11 pixels (the
        Gaussian window).
    data_range : float, optional
        Dynamic range ``L`` in SSIM's constants :math:`C_1 = (0.01 L)^2`,
        :math:`C_2 = (0.03 L)^2`; default ``reference.max() - reference.min()``.
    axes : str, optional
        Axes of the arrays, e.g. ``"CZYX"``. Without it the arrays must be 2D (``"YX"``) or
        3D (``"ZYX"``, a 3D window). Non-spatial axes are looped over and averaged.

    Returns
    -------
    float
        Mean SSIM, 1 for identical images.

    Notes
    -----
    Wraps ``skimage.metrics.structural_similarity(..., data_range=L,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` — the settings of
    Wang et al. (2004), rather than scikit-image's default uniform 7-pixel window with
    sample covariances.

    References
    ----------
    .. [1] Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality
       assessment: from error visibility to structural similarity", IEEE Trans. Image
       Process. 13(4), 600-612 (2004).
    """
    x, r = check_pair(prediction, reference)
    return _ssim(x, r, _data_range(r, data_range), _spatial_mask(axes, x.ndim))


# -- normalised metrics ------------------------------------------------------------------
def normalized_psnr(prediction: Any, reference: Any, *, axes: str | None = None,
                    low: float = EVAL_LOW, high: float = EVAL_HIGH) -> float:
    """PSNR (dB, ``data_range=1``) after CARE normalisation of the pair.

    The reference is normalised by its ``low``/``high`` percentiles (per channel if
    ``axes`` has ``C``), the prediction affinely fitted to it
    (:func:`fluorecon.normalize.normalize_pair`). Invariant to ``a * prediction + b``.
    """
    x, r = check_pair(prediction, reference)
    xn, rn = normalize_pair(x, r, axes=_checked_axes(axes, x.ndim), low=low, high=high)
    return _psnr(xn, rn, 1.0)


def normalized_nrmse(prediction: Any, reference: Any, *, axes: str | None = None,
                     low: float = EVAL_LOW, high: float = EVAL_HIGH) -> float:
    """RMSE of the CARE-normalised pair (CARE's NRMSE); ``-20 log10`` of it is
    :func:`normalized_psnr`."""
    x, r = check_pair(prediction, reference)
    xn, rn = normalize_pair(x, r, axes=_checked_axes(axes, x.ndim), low=low, high=high)
    return _nrmse(xn, rn, 1.0)


def normalized_ssim(prediction: Any, reference: Any, *, axes: str | None = None,
                    low: float = EVAL_LOW, high: float = EVAL_HIGH) -> float:
    """SSIM (``data_range=1``) of the CARE-normalised pair; see :func:`ssim`."""
    x, r = check_pair(prediction, reference)
    mask = _spatial_mask(axes, x.ndim)
    xn, rn = normalize_pair(x, r, axes=_checked_axes(axes, x.ndim), low=low, high=high)
    return _ssim(xn, rn, 1.0, mask)


def evaluate(prediction: Any, reference: Any, *, axes: str | None = None) -> dict[str, float]:
    """All six reference metrics at once (validates and normalises once).

    Parameters
    ----------
    prediction, reference : array-like
        Same shape, finite values.
    axes : str, optional
        Axes of the arrays; required when they have more than 3 dimensions or a
        channel/time axis (see :func:`ssim`).

    Returns
    -------
    dict
        Keys exactly ``psnr``, ``ssim``, ``nrmse``, ``psnr_normalized``,
        ``ssim_normalized``, ``nrmse_normalized``; values are Python floats (PSNR may be
        ``inf``). See the module docstring for the conventions.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.random((32, 32)).astype(np.float32)
    >>> noisy = ref + rng.normal(0, 0.05, ref.shape).astype(np.float32)
    >>> scores = evaluate(2 * noisy + 10, ref)  # gain and offset: plain PSNR is very low
    >>> round(scores["psnr"], 1) < 0 < 20 < round(scores["psnr_normalized"], 1)
    True
    >>> bool(np.isclose(scores["psnr_normalized"], -20 * np.log10(scores["nrmse_normalized"])))
    True
    """
    x, r = check_pair(prediction, reference)
    mask = _spatial_mask(axes, x.ndim)
    up = _checked_axes(axes, x.ndim)
    rng_ = _data_range(r, None)
    xn, rn = normalize_pair(x, r, axes=up)
    return {
        "psnr": _psnr(x, r, rng_),
        "ssim": _ssim(x, r, rng_, mask),
        "nrmse": _nrmse(x, r, rng_),
        "psnr_normalized": _psnr(xn, rn, 1.0),
        "ssim_normalized": _ssim(xn, rn, 1.0, mask),
        "nrmse_normalized": _nrmse(xn, rn, 1.0),
    }


# -- validation --------------------------------------------------------------------------
def check_pair(prediction: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate two images for comparison and return them as float32 NumPy arrays.

    Raises
    ------
    DataError
        One line: unequal shapes, unsupported dtype, empty, or NaN/infinite values.
    """
    for name, arr in (("prediction", prediction), ("reference", reference)):
        check_image_array(arr, name=name, finite=False)
    if tuple(prediction.shape) != tuple(reference.shape):
        raise DataError(message(f"prediction of shape {tuple(prediction.shape)} and reference "
                                f"of shape {tuple(reference.shape)}", "equal shapes",
                                "Crop or resample so both images cover the same pixels."))
    for name, arr in (("prediction", prediction), ("reference", reference)):
        check_image_array(arr, name=name, finite=True)
    return as_float32(prediction), as_float32(reference)


def _checked_axes(axes: str | None, ndim: int) -> str | None:
    return None if axes is None else check_axes(axes, ndim)


def _spatial_mask(axes: str | None, ndim: int) -> tuple[bool, ...]:
    """Which dimensions are spatial (SSIM window) and which are looped over."""
    if axes is None:
        if ndim not in (2, 3):
            raise AxesError(message(f"a {ndim}-dimensional image without axes",
                                    "a 2D (YX) or 3D (ZYX) image, or explicit axes",
                                    "Pass axes, e.g. axes='CZYX'."))
        return (True,) * ndim
    up = check_axes(axes, ndim)
    return tuple(a in "ZYX" for a in up)


def _data_range(reference: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        value = float(data_range)
        if not (value > 0 and math.isfinite(value)):
            raise DataError(message(f"data_range={data_range}", "a positive finite number",
                                    "Pass the dynamic range of the reference."))
        return value
    value = float(reference.max()) - float(reference.min())
    if not value > 0:
        raise DataError(message("a constant reference image (zero data range)",
                                "a reference with some contrast, or an explicit data_range",
                                "Pass data_range=... or check the reference."))
    return value


def _mse(x: np.ndarray, r: np.ndarray) -> float:
    fx, fr = x.reshape(-1), r.reshape(-1)
    step = 1 << 22
    total = 0.0
    for s in range(0, fx.size, step):
        d = fx[s:s + step].astype(np.float64) - fr[s:s + step]
        total += float(np.dot(d, d))
    return total / fx.size


def _psnr(x: np.ndarray, r: np.ndarray, data_range: float) -> float:
    mse = _mse(x, r)
    if mse == 0.0:
        return math.inf
    return float(10.0 * math.log10(data_range * data_range / mse))


def _nrmse(x: np.ndarray, r: np.ndarray, data_range: float) -> float:
    return math.sqrt(_mse(x, r)) / data_range


def _ssim(x: np.ndarray, r: np.ndarray, data_range: float, spatial: tuple[bool, ...]) -> float:
    from skimage.metrics import structural_similarity

    sp_shape = tuple(s for s, is_sp in zip(x.shape, spatial) if is_sp)
    if len(sp_shape) not in (2, 3):
        raise AxesError(message(f"{len(sp_shape)} spatial axes", "2 (YX) or 3 (ZYX)",
                                "Check the axes string."))
    if min(sp_shape) < SSIM_WINDOW:
        raise DataError(message(f"spatial shape {sp_shape}",
                                f"at least {SSIM_WINDOW} pixels along every spatial axis "
                                "for SSIM's 11-pixel Gaussian window",
                                "For thin stacks, compare slice by slice with axes='TYX'."))
    loop_dims = [i for i, is_sp in enumerate(spatial) if not is_sp]
    values = []
    for idx in itertools.product(*(range(x.shape[i]) for i in loop_dims)):
        sl: list[Any] = [slice(None)] * x.ndim
        for d, i in zip(loop_dims, idx):
            sl[d] = i
        values.append(structural_similarity(
            r[tuple(sl)].astype(np.float64), x[tuple(sl)].astype(np.float64),
            data_range=data_range, gaussian_weights=True,
            sigma=SSIM_SIGMA, use_sample_covariance=False, truncate=SSIM_TRUNCATE))
    return float(np.mean(values))
