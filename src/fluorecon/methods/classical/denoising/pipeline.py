"""The shared denoising pipeline: noise model -> VST -> calibrated denoiser -> inverse.

Every classical denoiser of this package runs the same steps on one 2D or 3D block:

1. take the given noise model or estimate ``var = a E[y] + b`` from the block
   (:func:`~fluorecon.methods.classical.denoising.noise.estimate_noise_model`);
2. stabilise the variance with the generalised Anscombe transform (noise std ~ 1
   at every intensity; affine ``(y - mu)/sigma`` when ``a`` is negligible);
3. calibrate the denoiser's free parameter by the J-invariant loss on a crop of the
   transformed image (:func:`~fluorecon.methods.classical.denoising.calibration.calibrate`);
4. denoise the whole transformed image with that parameter;
5. map back with the exact unbiased inverse of the transform.

Because the transformed noise has unit variance, parameter grids are stated once, in
units of the noise standard deviation, and hold for any camera or contrast stretch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluorecon.core.errors import DataError, message
from fluorecon.methods.classical.denoising.calibration import (
    CalibrationResult,
    MaskedLoss,
    calibrate,
    calibration_region,
)
from fluorecon.methods.classical.denoising.noise import NoiseModel, estimate_noise_model
from fluorecon.normalize.vst import generalized_anscombe, inverse_generalized_anscombe

__all__ = [
    "DenoiseResult", "Denoiser", "Stabilizer", "calibration_crop", "run_denoiser", "stabilize",
]

# The Poisson part is ignored when it changes the variance by < 1 % over the data range.
_GAUSSIAN_TOLERANCE = 0.01


@dataclass(frozen=True)
class Denoiser:
    """A denoiser for unit-variance Gaussian noise with one calibrated parameter.

    Attributes
    ----------
    name : str
        Registry name.
    fn : callable
        ``fn(image, **params) -> ndarray`` for float32 2D or 3D images.
    parameter : str
        Name of the calibrated keyword of ``fn``.
    grid : tuple of float
        Candidate values in units of the (unit) noise std; refined by golden section.
    fixed : dict
        Further keyword arguments of ``fn``.
    refine : bool
        Whether calibration refines between grid points (off for slow denoisers).
    crop_2d, crop_3d : int
        Edge length of the calibration crop for 2D and 3D images.
    slicewise : bool
        The denoiser processes 3D images plane by plane; it is then calibrated on a 2D
        crop (``crop_2d``) of the most structured plane.
    """

    name: str
    fn: Callable[..., np.ndarray]
    parameter: str
    grid: tuple[float, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    refine: bool = True
    crop_2d: int = 256
    crop_3d: int = 64
    slicewise: bool = False


@dataclass(frozen=True)
class DenoiseResult:
    """Denoised image and how it was obtained.

    Attributes
    ----------
    image : numpy.ndarray
        float32 denoised image in the input's units, same shape.
    noise_model : NoiseModel
        The noise model used (given or estimated).
    calibration : CalibrationResult
        Parameters and self-supervised losses; for a fixed parameter, a single entry.
    """

    image: np.ndarray
    noise_model: NoiseModel
    calibration: CalibrationResult


@dataclass(frozen=True)
class Stabilizer:
    """Forward/inverse variance stabilisation for one noise model.

    ``kind`` is ``"gat"`` (generalised Anscombe) or ``"affine"`` (Gaussian noise, or
    ``vst=False``: ``(y - mu) / sigma`` with one global noise std).
    """

    kind: str
    gain: float
    sigma: float
    mu: float

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Transform to the unit-noise domain (float32)."""
        return generalized_anscombe(x, gain=self.gain if self.kind == "gat" else 0.0,
                                    sigma=self.sigma, mu=self.mu)

    def inverse(self, d: np.ndarray) -> np.ndarray:
        """Exact unbiased inverse back to image units (float32)."""
        return inverse_generalized_anscombe(d, gain=self.gain if self.kind == "gat" else 0.0,
                                            sigma=self.sigma, mu=self.mu)


def stabilize(image: np.ndarray, noise_model: NoiseModel, *, vst: bool = True) -> Stabilizer:
    """Choose the variance stabilisation for ``image`` under ``noise_model``.

    With ``vst=True`` and a signal-dependent model, the generalised Anscombe transform;
    when the Poisson part changes the variance by less than 1 % over the image's
    0.1-99.9 percentile range (or ``vst=False``), an affine map by the noise std at the
    median intensity.
    """
    lo, med, hi = (float(v) for v in np.percentile(image, [0.1, 50, 99.9]))
    nm = noise_model
    var_lo = float(nm.variance(lo))
    gaussian = nm.is_gaussian or (nm.a * (hi - lo) < _GAUSSIAN_TOLERANCE * max(var_lo, 1e-30))
    if vst and not gaussian:
        gain, sigma, mu = nm.vst_parameters()
        return Stabilizer("gat", gain, sigma, mu)
    sd = float(np.sqrt(nm.variance(med)))
    if not sd > 0:
        sd = float(np.sqrt(max(nm.variance(hi), 1e-30)))
    return Stabilizer("affine", 0.0, sd, 0.0)


def run_denoiser(image: np.ndarray, denoiser: Denoiser, *, value: float | None = None,
                 noise_model: NoiseModel | None = None, vst: bool = True,
                 stride: int = 4, n_masks: int | None = None, crop: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> DenoiseResult:
    """Run the pipeline of this module with one denoiser on a 2D or 3D image.

    Parameters
    ----------
    image : numpy.ndarray
        2D or 3D noisy image in its own units (e.g. ADU). Not modified.
    denoiser : Denoiser
        What to run.
    value : float, optional
        The denoiser's parameter, in units of the stabilised noise std. ``None``:
        self-calibrated.
    noise_model : NoiseModel, optional
        Known noise model; estimated from ``image`` if omitted.
    vst : bool
        Use the generalised Anscombe transform (else one global noise std).
    stride, n_masks : int
        J-invariant mask spacing and number of masks.
    crop : int, optional
        Calibration crop edge length (default: the denoiser's ``crop_2d``/``crop_3d``).
    progress : callable, optional
        ``progress(done, total)`` during calibration.

    Returns
    -------
    DenoiseResult
    """
    img = _check_block(image)
    nm = noise_model if noise_model is not None else estimate_noise_model(img)
    st = stabilize(img, nm, vst=vst)
    z = st.forward(img)
    if value is None:
        region = calibration_crop(z, denoiser, crop)
        loss = MaskedLoss(np.squeeze(z[region], axis=0) if len(region) > 2 and denoiser.slicewise
                          else z[region], stride=stride, n_masks=n_masks)
        cal = calibrate(denoiser.fn, z, parameter_ranges={denoiser.parameter: denoiser.grid},
                        fixed=denoiser.fixed, method=denoiser.name, loss=loss,
                        refine=denoiser.refine, progress=progress)
        cal = CalibrationResult(cal.method, cal.best_parameters, cal.best_loss,
                                cal.parameters_tested, cal.losses, region)
        value = float(cal.best_parameters[denoiser.parameter])
    else:
        cal = CalibrationResult(denoiser.name, {denoiser.parameter: value}, float("nan"),
                                ({denoiser.parameter: value},), (float("nan"),))
    out = np.asarray(denoiser.fn(z, **{denoiser.parameter: value}, **denoiser.fixed),
                     dtype=np.float32)
    return DenoiseResult(st.inverse(out), nm, cal)


def calibration_crop(z: np.ndarray, denoiser: Denoiser,
                     crop: int | None) -> tuple[slice, ...]:
    """Region of ``z`` on which ``denoiser`` is calibrated (see :class:`Denoiser`)."""
    if z.ndim == 2:
        return calibration_region(z, max_size=crop or denoiser.crop_2d)
    if denoiser.slicewise:
        size = crop or denoiser.crop_2d
        return calibration_region(z, max_size=(1, size, size))
    return calibration_region(z, max_size=crop or denoiser.crop_3d)


def _check_block(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise DataError(message(f"an array with {img.ndim} dimensions",
                                  "a 2D (YX) or 3D (ZYX) block",
                                  "Use Method.predict with axes to loop over other axes."))
    if min(img.shape[-2:]) < 8:
        raise DataError(message(f"a block of shape {img.shape}",
                                  "at least 8 x 8 pixels in Y and X",
                                  "Denoise a larger image."))
    return img.astype(np.float32, copy=False)
