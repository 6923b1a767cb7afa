"""Classical denoising with self-calibration (J-invariance) and variance stabilisation.

Every denoiser estimates a Poisson-Gaussian noise model from the image (or takes the
camera's), applies the generalised Anscombe transform, chooses its parameter by the
J-invariant (Noise2Self) loss on a crop, denoises, and maps back with the exact unbiased
inverse. Importing this package registers ``gaussian``, ``tv``, ``nlm``, ``bm3d``
(optional extra, non-commercial licence) and ``auto``.
"""

from fluorecon.methods.classical.denoising import auto, bm3d, gaussian, nlm, tv  # noqa: F401
from fluorecon.methods.classical.denoising.auto import AutoDenoiseResult, denoise_auto
from fluorecon.methods.classical.denoising.bm3d import bm3d_available, denoise_bm3d
from fluorecon.methods.classical.denoising.calibration import (
    CalibrationResult,
    MaskedLoss,
    calibrate,
    calibration_region,
    invariant_denoise,
)
from fluorecon.methods.classical.denoising.gaussian import denoise_gaussian
from fluorecon.methods.classical.denoising.nlm import denoise_nlm
from fluorecon.methods.classical.denoising.noise import NoiseModel, estimate_noise_model
from fluorecon.methods.classical.denoising.pipeline import DenoiseResult, run_denoiser
from fluorecon.methods.classical.denoising.tv import denoise_tv

__all__ = [
    "AutoDenoiseResult",
    "CalibrationResult",
    "DenoiseResult",
    "MaskedLoss",
    "NoiseModel",
    "bm3d_available",
    "calibrate",
    "calibration_region",
    "denoise_auto",
    "denoise_bm3d",
    "denoise_gaussian",
    "denoise_nlm",
    "denoise_tv",
    "estimate_noise_model",
    "invariant_denoise",
    "run_denoiser",
]
