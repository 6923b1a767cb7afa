"""BM3D on the variance-stabilised image (optional extra; non-commercial licence).

The ``bm3d`` package (Tampere University, Mäkinen, Azzari & Foi) is **licensed for
non-commercial use only**. It is not a dependency of fluorecon: install it with
``pip install 'fluorecon[bm3d]'`` if its licence permits your use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from fluorecon.core.errors import ConfigError, message
from fluorecon.methods.classical.denoising._common import DenoiseConfig, SelfCalibratedDenoiser
from fluorecon.methods.classical.denoising.noise import NoiseModel
from fluorecon.methods.classical.denoising.pipeline import DenoiseResult, Denoiser, run_denoiser
from fluorecon.methods.registry import register

__all__ = ["BM3DDenoiser", "bm3d_available", "bm3d_filter", "denoise_bm3d"]

# Noise std in the stabilised domain is 1 by construction; the calibration only corrects
# for an imperfect noise model, so the grid is narrow and not refined (BM3D is slow).
SIGMA_GRID = (0.7, 1.0, 1.4)
Profile = Literal["np", "refilter", "vn", "high", "vn_old", "deb"]


def bm3d_available() -> bool:
    """True if the optional ``bm3d`` package can be imported."""
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def _import_bm3d() -> Any:
    try:
        import bm3d
    except ImportError:
        raise ConfigError(message("method 'bm3d' without the bm3d package",
                                  "the optional extra fluorecon[bm3d] (non-commercial licence)",
                                  "pip install 'fluorecon[bm3d]', or use method nlm or auto."
                                  )) from None
    return bm3d


def bm3d_filter(image: np.ndarray, *, sigma: float, profile: Profile = "np") -> np.ndarray:
    """BM3D (both stages) for white Gaussian noise of std ``sigma``; 3D plane by plane.

    Parameters
    ----------
    image : numpy.ndarray
        2D image, or 3D image processed plane by plane along the first axis.
    sigma : float
        Noise std in intensity units (1 after variance stabilisation).
    profile : str
        ``bm3d`` parameter profile (``"np"`` normal, ``"refilter"``, ``"high"``, ...).

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    bm3d = _import_bm3d()
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        return np.asarray(bm3d.bm3d(img, sigma_psd=sigma, profile=profile), dtype=np.float32)
    return np.stack([np.asarray(bm3d.bm3d(p, sigma_psd=sigma, profile=profile),
                                dtype=np.float32) for p in img])


def _bm3d_denoiser(profile: Profile) -> Denoiser:
    return Denoiser(name="bm3d", fn=bm3d_filter, parameter="sigma", grid=SIGMA_GRID,
                    fixed={"profile": profile}, refine=False, crop_2d=256, slicewise=True)


DENOISER = _bm3d_denoiser("np")


def denoise_bm3d(image: np.ndarray, *, sigma: float | None = None, profile: Profile = "np",
                 noise_model: NoiseModel | None = None, vst: bool = True, stride: int = 4,
                 n_masks: int | None = None, crop: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> DenoiseResult:
    """BM3D after the generalised Anscombe transform, then the exact unbiased inverse.

    Needs the optional ``bm3d`` package (**non-commercial licence**; extra
    ``fluorecon[bm3d]``). 3D images are denoised plane by plane (BM3D is a 2D method;
    calibration then uses a 2D crop of the most structured plane).

    Parameters
    ----------
    image : numpy.ndarray
        2D or 3D noisy image. Not modified.
    sigma : float, optional
        Noise std passed to BM3D in the stabilised domain (nominally 1). ``None``:
        chosen by the J-invariant loss on the grid 0.7, 1.0, 1.4, extended geometrically
        (up to 4 steps) while the best value sits on its boundary; this absorbs errors of
        an estimated noise model and BM3D's own preference at very low counts.
    profile : str
        ``bm3d`` parameter profile.
    noise_model, vst, stride, n_masks, crop, progress
        See :func:`~fluorecon.methods.classical.denoising.pipeline.run_denoiser`.

    Returns
    -------
    DenoiseResult

    Raises
    ------
    ConfigError
        If ``bm3d`` is not installed.

    Notes
    -----
    This is the recipe of Mäkitalo & Foi (2013): GAT, Gaussian denoiser with unit noise
    std, exact unbiased inverse. Estimating a Gaussian noise std on the raw
    Poisson-Gaussian (or contrast-stretched) image instead misleads BM3D: no single std
    is right for both dim and bright regions.

    References
    ----------
    .. [1] K. Dabov, A. Foi, V. Katkovnik, K. Egiazarian, "Image denoising by sparse 3-D
       transform-domain collaborative filtering", IEEE TIP 16(8), 2080-2095 (2007).
    .. [2] Y. Mäkinen, L. Azzari, A. Foi, "Collaborative filtering of correlated noise:
       exact transform-domain variance for improved shrinkage and patch matching",
       IEEE TIP 29, 8339-8354 (2020).
    .. [3] M. Mäkitalo, A. Foi, "Optimal inversion of the generalized Anscombe
       transformation for Poisson-Gaussian noise", IEEE TIP 22(1), 91-103 (2013).
    """
    _import_bm3d()
    return run_denoiser(image, _bm3d_denoiser(profile), value=sigma, noise_model=noise_model,
                        vst=vst, stride=stride, n_masks=n_masks, crop=crop, progress=progress)


class BM3DConfig(DenoiseConfig):
    """Config of :class:`BM3DDenoiser` (needs the non-commercial ``bm3d`` package)."""

    sigma: float | None = Field(
        default=None, gt=0, le=10,
        description="BM3D noise std in the variance-stabilised domain (nominally 1). "
                    "None: self-calibrated (grid 0.7, 1, 1.4, extended at its boundary). "
                    "Requires the optional extra fluorecon[bm3d]; the bm3d package is "
                    "licensed for non-commercial use only.")
    profile: Profile = Field(default="np", description="bm3d parameter profile.")


@register
class BM3DDenoiser(SelfCalibratedDenoiser):
    """BM3D with generalised Anscombe VST and exact unbiased inverse.

    Optional: needs ``fluorecon[bm3d]`` (the ``bm3d`` package is licensed for
    non-commercial use only). 3D data are processed plane by plane.
    """

    name: ClassVar[str] = "bm3d"
    Config: ClassVar[type[BM3DConfig]] = BM3DConfig
    summary: ClassVar[str] = ("BM3D after Anscombe VST (optional extra fluorecon[bm3d], "
                              "non-commercial licence).")
    config: Any

    def _run(self, block: np.ndarray) -> DenoiseResult:
        return denoise_bm3d(block, sigma=self.config.sigma, profile=self.config.profile,
                            **self.config.pipeline_kwargs())
