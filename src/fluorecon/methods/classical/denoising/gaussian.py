"""Gaussian smoothing with a self-calibrated width."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from pydantic import Field
from scipy import ndimage as ndi

from fluorecon.methods.classical.denoising._common import DenoiseConfig, SelfCalibratedDenoiser
from fluorecon.methods.classical.denoising.noise import NoiseModel
from fluorecon.methods.classical.denoising.pipeline import DenoiseResult, Denoiser, run_denoiser
from fluorecon.methods.registry import register

__all__ = ["GaussianDenoiser", "denoise_gaussian", "gaussian_smooth"]

SIGMA_GRID = tuple(float(v) for v in np.geomspace(0.35, 4.0, 7))


def gaussian_smooth(image: np.ndarray, *, sigma: float) -> np.ndarray:
    """Isotropic Gaussian filter of std ``sigma`` pixels (reflecting boundaries), float32."""
    return ndi.gaussian_filter(np.asarray(image, dtype=np.float32), sigma, mode="reflect")


DENOISER = Denoiser(name="gaussian", fn=gaussian_smooth, parameter="sigma", grid=SIGMA_GRID)


def denoise_gaussian(image: np.ndarray, *, sigma: float | None = None,
                     noise_model: NoiseModel | None = None, vst: bool = True,
                     stride: int = 4, n_masks: int | None = None, crop: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> DenoiseResult:
    """Denoise a 2D or 3D image by Gaussian smoothing with a self-calibrated width.

    Parameters
    ----------
    image : numpy.ndarray
        2D or 3D noisy image. Not modified.
    sigma : float, optional
        Filter std in pixels. ``None``: chosen by the J-invariant loss in the
        variance-stabilised domain (grid 0.35-4 px, golden-section refinement).
    noise_model, vst, stride, n_masks, crop, progress
        See :func:`~fluorecon.methods.classical.denoising.pipeline.run_denoiser`.

    Returns
    -------
    DenoiseResult

    Notes
    -----
    Smoothing is applied to the generalised-Anscombe-transformed image
    :math:`z = f(y)`, then mapped back by the exact unbiased inverse, so the bias of
    smoothing a signal-dependent noise is avoided at low counts.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noisy = rng.poisson(np.full((64, 64), 20.0)).astype(np.float32)
    >>> res = denoise_gaussian(noisy)
    >>> bool(res.image.std() < noisy.std())
    True
    """
    return run_denoiser(image, DENOISER, value=sigma, noise_model=noise_model, vst=vst,
                        stride=stride, n_masks=n_masks, crop=crop, progress=progress)


class GaussianConfig(DenoiseConfig):
    """Config of :class:`GaussianDenoiser`."""

    sigma: float | None = Field(
        default=None, gt=0, le=50,
        description="Gaussian std in pixels. None: self-calibrated (J-invariant loss).")


@register
class GaussianDenoiser(SelfCalibratedDenoiser):
    """Gaussian smoothing in the variance-stabilised domain, width self-calibrated."""

    name: ClassVar[str] = "gaussian"
    Config: ClassVar[type[GaussianConfig]] = GaussianConfig
    summary: ClassVar[str] = "Gaussian smoothing, self-calibrated width, Anscombe VST."
    config: Any

    def _run(self, block: np.ndarray) -> DenoiseResult:
        return denoise_gaussian(block, sigma=self.config.sigma, **self.config.pipeline_kwargs())
