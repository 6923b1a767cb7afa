"""Total-variation denoising (Chambolle) with a self-calibrated weight."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from fluorecon.methods.classical.denoising._common import DenoiseConfig, SelfCalibratedDenoiser
from fluorecon.methods.classical.denoising.noise import NoiseModel
from fluorecon.methods.classical.denoising.pipeline import DenoiseResult, Denoiser, run_denoiser
from fluorecon.methods.registry import register

__all__ = ["TVDenoiser", "denoise_tv", "tv_chambolle"]

WEIGHT_GRID = tuple(float(v) for v in np.geomspace(0.1, 4.0, 7))


def tv_chambolle(image: np.ndarray, *, weight: float, max_num_iter: int = 200,
                 eps: float = 2e-4) -> np.ndarray:
    """Chambolle's TV denoising (scikit-image) on a 2D or 3D float32 image.

    ``weight`` is the ROF regularisation weight in image intensity units: for noise of
    unit std (after variance stabilisation) useful values are about 0.2-3.
    """
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(np.asarray(image, dtype=np.float32), weight=weight,
                                eps=eps, max_num_iter=max_num_iter).astype(np.float32)


def denoise_tv(image: np.ndarray, *, weight: float | None = None, max_num_iter: int = 200,
               noise_model: NoiseModel | None = None, vst: bool = True, stride: int = 4,
               n_masks: int | None = None, crop: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> DenoiseResult:
    """Denoise a 2D or 3D image by total variation (Chambolle 2004), self-calibrated.

    Parameters
    ----------
    image : numpy.ndarray
        2D or 3D noisy image. Not modified.
    weight : float, optional
        TV weight in units of the stabilised noise std. ``None``: chosen by the
        J-invariant loss (grid 0.1-4, golden-section refinement).
    max_num_iter : int
        Iterations of Chambolle's projection algorithm.
    noise_model, vst, stride, n_masks, crop, progress
        See :func:`~fluorecon.methods.classical.denoising.pipeline.run_denoiser`.

    Returns
    -------
    DenoiseResult

    Notes
    -----
    Solves :math:`\\min_u \\tfrac12\\|u - z\\|^2 + \\lambda\\,\\mathrm{TV}(u)` on the
    transformed image :math:`z`, whose noise has unit variance, so one weight scale fits
    every intensity.

    References
    ----------
    .. [1] A. Chambolle, "An algorithm for total variation minimization and
       applications", J. Math. Imaging Vis. 20, 89-97 (2004).
    """
    den = Denoiser(name="tv", fn=tv_chambolle, parameter="weight", grid=WEIGHT_GRID,
                   fixed={"max_num_iter": max_num_iter})
    return run_denoiser(image, den, value=weight, noise_model=noise_model, vst=vst,
                        stride=stride, n_masks=n_masks, crop=crop, progress=progress)


DENOISER = Denoiser(name="tv", fn=tv_chambolle, parameter="weight", grid=WEIGHT_GRID,
                    fixed={"max_num_iter": 200})


class TVConfig(DenoiseConfig):
    """Config of :class:`TVDenoiser`."""

    weight: float | None = Field(
        default=None, gt=0, le=100,
        description="TV weight in units of the (stabilised) noise std. None: "
                    "self-calibrated (J-invariant loss).")
    max_num_iter: int = Field(default=200, ge=1, le=10000,
                              description="Iterations of Chambolle's algorithm.")


@register
class TVDenoiser(SelfCalibratedDenoiser):
    """Total-variation (Chambolle) denoising in the variance-stabilised domain."""

    name: ClassVar[str] = "tv"
    Config: ClassVar[type[TVConfig]] = TVConfig
    summary: ClassVar[str] = "Total variation (Chambolle), self-calibrated weight, VST."
    config: Any

    def _run(self, block: np.ndarray) -> DenoiseResult:
        return denoise_tv(block, weight=self.config.weight,
                          max_num_iter=self.config.max_num_iter,
                          **self.config.pipeline_kwargs())
