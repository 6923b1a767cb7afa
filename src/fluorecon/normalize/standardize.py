"""Mean / standard-deviation standardisation (CAREamics' convention) as :class:`NormParams`.

``y = (x - mean) / (std + eps)`` is the same affine map as percentile normalisation with
``lo = mean`` and ``hi = mean + std``, so the result is a :class:`NormParams` with
``statistic="meanstd"``: it normalises, denormalises outputs and predicted scales, and
serialises exactly like percentile parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np  # noqa: F401  (the examples use it)

from fluorecon.core.dtypes import check_image_array
from fluorecon.normalize.percentile import (
    DEFAULT_EPS,
    DEFAULT_MAX_SAMPLES,
    NormParams,
    sample_per_channel,
)


def compute_meanstd_params(
    image: Any,
    *,
    axes: str | None = None,
    per_channel: bool = True,
    eps: float = DEFAULT_EPS,
    max_samples: int | None = DEFAULT_MAX_SAMPLES,
) -> NormParams:
    """Estimate standardisation parameters (mean and standard deviation) of an image.

    Parameters
    ----------
    image : array-like
        NumPy, dask or zarr array with at least 2 dimensions. Only a regular-lattice
        subsample is read above ``max_samples`` values per channel (as in
        :func:`~fluorecon.normalize.compute_norm_params`).
    axes : str, optional
        Axes of ``image``; with ``per_channel=True`` and a ``C`` axis, each channel gets its
        own mean and standard deviation. ``None`` pools all values.
    per_channel : bool
        Separate statistics per channel when ``axes`` contains ``C``.
    eps : float
        Added to the standard deviation (so constant images do not divide by zero).
    max_samples : int or None
        Most values per channel used; None reads every value.

    Returns
    -------
    NormParams
        ``statistic="meanstd"``, ``lo = mean``, ``hi = mean + std`` per channel.

    Raises
    ------
    DataError
        If the sampled values contain NaN or infinity.

    Notes
    -----
    Statistics are computed in float64. Standardising to zero mean and unit variance puts
    training targets on the scale that default weight initialisations and Adam's step
    size assume; CAREamics and Noise2Void use it. Percentile normalisation instead maps
    the bulk of a sparse fluorescence image to small values near 0, where a freshly
    initialised network's output is comparatively large.

    Examples
    --------
    >>> x = np.array([[0.0, 2.0], [4.0, 6.0]], np.float32)
    >>> p = compute_meanstd_params(x)
    >>> round(p.lo[0], 3), round(p.hi[0] - p.lo[0], 3)
    (3.0, 2.236)
    >>> abs(float(np.asarray(p.normalize(x)).mean())) < 1e-6
    True
    """
    check_image_array(image, finite=False)
    per_c, up = sample_per_channel(image, axes=axes, per_channel=per_channel,
                                   max_samples=max_samples,
                                   purpose="compute the mean and standard deviation")
    mean = per_c.mean(axis=1)
    std = per_c.std(axis=1)
    return NormParams(statistic="meanstd", lo=[float(m) for m in mean],
                      hi=[float(m + s) for m, s in zip(mean, std)], axes=up, eps=float(eps),
                      n_samples=int(per_c.shape[1]))
