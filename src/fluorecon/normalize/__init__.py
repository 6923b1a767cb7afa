"""Intensity normalisation: percentile or mean/std maps (+ inverse, also for predicted
scales), affine fit.

Normalisation is a returned, serialisable, invertible parameter set
(:class:`NormParams`), computed once on the whole image before tiling.
"""

from fluorecon.normalize.affine import (
    EVAL_HIGH,
    EVAL_LOW,
    affine_fit,
    affine_match,
    normalize_pair,
)
from fluorecon.normalize.percentile import (
    DEFAULT_MAX_SAMPLES,
    NormParams,
    PercentileNormalizer,
    compute_norm_params,
    percentile_normalize,
)
from fluorecon.normalize.standardize import compute_meanstd_params

__all__ = [
    "DEFAULT_MAX_SAMPLES",
    "EVAL_HIGH",
    "EVAL_LOW",
    "NormParams",
    "PercentileNormalizer",
    "affine_fit",
    "affine_match",
    "compute_meanstd_params",
    "compute_norm_params",
    "normalize_pair",
    "percentile_normalize",
]
