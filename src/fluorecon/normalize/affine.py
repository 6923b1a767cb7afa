"""Least-squares affine matching of a prediction to a reference (CSBDeep ``normalize_minmse``).

Restorations and ground truths rarely share intensity units: a network trained on
normalised data, a deconvolution with its own flux convention, a camera offset. Before
comparing them, CARE's evaluation (Weigert et al. 2018) normalises the ground truth by its
0.1 and 99.9 percentiles and maps the prediction onto it with the affine transform that
minimises the mean squared error. :func:`normalize_pair` does exactly that and is what the
"normalised" metrics of :mod:`fluorecon.metrics` use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fluorecon.core.axes import check_axes
from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import DataError, message
from fluorecon.normalize.percentile import percentile_normalize

#: Percentiles used to normalise the reference for evaluation (CARE's evaluation code).
EVAL_LOW = 0.1
EVAL_HIGH = 99.9

_CHUNK = 1 << 22


def affine_fit(prediction: Any, reference: Any) -> tuple[float, float]:
    """Least-squares scale and offset mapping ``prediction`` onto ``reference``.

    Parameters
    ----------
    prediction, reference : array-like
        Arrays of the same shape (any dimensionality), finite values.

    Returns
    -------
    alpha, beta : float
        Minimisers of :math:`\\sum_i (\\alpha x_i + \\beta - r_i)^2`.

    Raises
    ------
    DataError
        Shapes differ, arrays are empty, or contain NaN/infinity.

    Notes
    -----
    The normal equations give

    .. math::

        \\alpha = \\frac{\\sum_i (x_i - \\bar x)(r_i - \\bar r)}{\\sum_i (x_i - \\bar x)^2},
        \\qquad \\beta = \\bar r - \\alpha \\bar x .

    The inputs are read in their own dtype (a float64 reference is not rounded to
    float32) and sums are accumulated in float64 in two passes (means first, then centred products)
    over chunks of the flattened arrays, which avoids the cancellation of the one-pass
    formula when intensities carry a large offset. If the prediction is constant,
    :math:`\\alpha = 0` and :math:`\\beta = \\bar r` (the minimum-norm solution).
    Unlike CSBDeep's ``normalize_minmse``, no ``1e-10`` is added to the variance and the
    covariance and variance use the same normalisation, so noiseless affine relations are
    recovered to float64 precision.

    Examples
    --------
    >>> x = np.arange(12.0).reshape(3, 4)
    >>> affine_fit(x, 3 * x - 2)
    (3.0, -2.0)
    """
    x, r = _pair(prediction, reference)
    n = x.size
    mx = _chunked_sum(x, None, 0.0, 0.0) / n
    mr = _chunked_sum(r, None, 0.0, 0.0) / n
    sxx = _chunked_sum(x, x, mx, mx)
    sxr = _chunked_sum(x, r, mx, mr)
    if sxx <= 0.0:
        return 0.0, float(mr)
    alpha = sxr / sxx
    return float(alpha), float(mr - alpha * mx)


def normalize_pair(
    prediction: Any,
    reference: Any,
    *,
    axes: str | None = None,
    low: float = EVAL_LOW,
    high: float = EVAL_HIGH,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise ``reference`` by percentiles and affinely fit ``prediction`` to it.

    Parameters
    ----------
    prediction, reference : array-like
        Same shape, finite values, any supported dtype.
    axes : str, optional
        Axes of both arrays. If it contains ``C``, each channel of the reference is
        normalised with its own percentiles and each channel of the prediction gets its own
        affine fit; otherwise all values are pooled.
    low, high : float
        Percentiles of the reference mapped to 0 and 1 (CARE's evaluation: 0.1 and 99.9).

    Returns
    -------
    prediction_matched, reference_normalized : ndarray, float32
        ``alpha * prediction + beta`` and ``(reference - p_low) / (p_high - p_low + eps)``.

    Notes
    -----
    This is CSBDeep's evaluation convention (``norm_minmse`` in the CARE paper's code): the
    ground truth is percentile-normalised with ``clip=False`` and the prediction rescaled by
    the least-squares affine map (:func:`affine_fit`). The CARE code additionally subtracts
    the mean of both images; that common shift leaves PSNR and RMSE unchanged but would
    change SSIM's luminance term, so here the normalised reference keeps its ``[0, 1]``
    scale and the fitted offset :math:`\\beta` absorbs the mean.

    Any metric of ``prediction_matched`` against ``reference_normalized`` is invariant to
    affine transforms ``a * prediction + b`` with ``a != 0`` (for ``a < 0`` too, since the fit
    absorbs the sign).
    """
    x, r = (as_float32(a) for a in _pair(prediction, reference))
    up = check_axes(axes, x.ndim) if axes is not None else None
    ref_n, _ = percentile_normalize(r, low=low, high=high, axes=up, per_channel=True,
                                    clip=False)
    if up is None or "C" not in up:
        alpha, beta = affine_fit(x, ref_n)
        matched = (np.float32(alpha) * x + np.float32(beta)).astype(np.float32, copy=False)
        return matched, ref_n
    c = up.index("C")
    matched = np.empty_like(ref_n)
    for i in range(x.shape[c]):
        sl = (slice(None),) * c + (i,)
        alpha, beta = affine_fit(x[sl], ref_n[sl])
        matched[sl] = np.float32(alpha) * x[sl] + np.float32(beta)
    return matched, ref_n


def affine_match(
    prediction: Any,
    reference: Any,
    *,
    axes: str | None = None,
    low: float = EVAL_LOW,
    high: float = EVAL_HIGH,
) -> np.ndarray:
    """The prediction mapped onto the percentile-normalised reference (float32).

    Shorthand for ``normalize_pair(prediction, reference, ...)[0]``: CSBDeep's
    ``normalize_minmse`` applied against the reference normalised by its ``low`` and
    ``high`` percentiles. See :func:`normalize_pair`.

    Examples
    --------
    >>> ref = np.linspace(0.0, 1.0, 1001).reshape(7, 143)
    >>> out = affine_match(5 * ref + 100, ref)
    >>> bool(np.allclose(out, (ref - 0.001) / 0.998, atol=1e-5))
    True
    """
    return normalize_pair(prediction, reference, axes=axes, low=low, high=high)[0]


# -- helpers -----------------------------------------------------------------------------
def _pair(prediction: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    for name, arr in (("prediction", prediction), ("reference", reference)):
        if getattr(arr, "shape", None) is None:
            raise DataError(message(f"{name} of type {type(arr).__name__}", "an array",
                                    "Pass NumPy arrays."))
    if tuple(prediction.shape) != tuple(reference.shape):
        raise DataError(message(f"prediction of shape {tuple(prediction.shape)} and reference "
                                f"of shape {tuple(reference.shape)}", "equal shapes",
                                "Crop or resample so both images cover the same pixels."))
    if prediction.size == 0:
        raise DataError(message("empty arrays", "at least one value",
                                "Pass image data."))
    for name, arr in (("prediction", prediction), ("reference", reference)):
        if np.ndim(arr) >= 2:
            check_image_array(arr, name=name, finite=True)
        elif not np.isfinite(np.asarray(arr, dtype=np.float64)).all():
            raise DataError(message(f"{name} containing NaN or infinite values",
                                    "finite values", "Mask the invalid pixels first."))
    return np.asarray(prediction), np.asarray(reference)


def _chunked_sum(a: np.ndarray, b: np.ndarray | None, ma: float, mb: float) -> float:
    """``sum(a)`` (``b is None``) or ``sum((a - ma) * (b - mb))`` in float64, chunked."""
    fa = a.reshape(-1)
    fb = None if b is None else b.reshape(-1)
    total = 0.0
    for s in range(0, fa.size, _CHUNK):
        ca = fa[s:s + _CHUNK].astype(np.float64)
        if fb is None:
            total += float(ca.sum())
        else:
            cb = fb[s:s + _CHUNK].astype(np.float64)
            total += float(np.dot(ca - ma, cb - mb))
    return total
