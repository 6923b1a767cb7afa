"""Metrics: reference-based fidelity (PSNR/SSIM/NRMSE, plain and normalised) and FRC/FSC.

See :mod:`fluorecon.metrics.fidelity` for the exact conventions (data range, window,
normalisation) behind every number.
"""

from fluorecon.metrics.fidelity import (
    EVALUATE_KEYS,
    check_pair,
    evaluate,
    normalized_nrmse,
    normalized_psnr,
    normalized_ssim,
    nrmse,
    psnr,
    ssim,
)
from fluorecon.metrics.fourier_correlation import (
    FRCResult,
    frc,
    half_bit_threshold,
    single_image_frc,
)

__all__ = [
    "EVALUATE_KEYS",
    "FRCResult",
    "check_pair",
    "evaluate",
    "frc",
    "half_bit_threshold",
    "normalized_nrmse",
    "normalized_psnr",
    "normalized_ssim",
    "nrmse",
    "psnr",
    "single_image_frc",
    "ssim",
]
