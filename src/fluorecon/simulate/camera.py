"""Camera forward model (photons -> ADU), its mean inverse, and the noise variance model.

Units: ``photons`` are the expected number of photons reaching a pixel during the exposure;
electrons are photoelectrons; ``ADU`` (analogue-digital units, "counts", "grey values") is
what the camera writes to the file.

The model, per pixel::

    e   ~ Poisson(QE * photons + dark)              photoelectrons (shot noise)
    e'  ~ Gamma(shape=e, scale=em_gain)             EMCCD multiplication (if em_gain > 1)
    e'' = e' + Normal(0, read_noise^2)              readout noise, electrons rms
    ADU = clip(round(gain * e'' + offset), 0, 2^bit_depth - 1)

Its mean (ignoring clipping) is ``offset + gain * em_gain * (QE * photons + dark)``, which
:func:`camera_inverse` inverts exactly, and its variance is the Poisson-Gaussian form of Foi
et al. (2008), ``var = a * (mean - offset) + b`` (see :func:`noise_variance`).

References
----------
.. [1] A. Foi, M. Trimeche, V. Katkovnik, K. Egiazarian, "Practical Poissonian-Gaussian noise
   modeling and fitting for single-image raw-data", IEEE Trans. Image Process. 17(10),
   1737-1754, 2008.
.. [2] M. Hirsch, R. J. Wareham, M. L. Martin-Fernandez, M. P. Hobson, D. J. Rolfe, "A
   stochastic model for electron multiplication charge-coupled devices - from theory to
   practice", PLoS ONE 8(1), e53671, 2013.
.. [3] F. Huang et al., "Video-rate nanoscopy using sCMOS camera-specific single-molecule
   localization algorithms", Nat. Methods 10, 653-658, 2013 (per-pixel sCMOS maps).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import DataError, message
from fluorecon.core.rng import SeedLike, make_rng

__all__ = [
    "CameraModel",
    "camera_forward",
    "camera_inverse",
    "camera_mean",
    "noise_parameters",
    "noise_variance",
]

ArrayLike = Any


class CameraModel(BaseConfig):
    """Parameters of a scientific camera (sCMOS, EMCCD, CCD or an ideal photon counter).

    Build with keywords, or start from a preset: :meth:`scmos`, :meth:`emccd`, :meth:`ideal`.
    Per-pixel sCMOS maps (offset, gain, read noise) are arrays, so they are passed to
    :func:`camera_forward` / :func:`camera_inverse` / :func:`noise_variance` rather than
    stored here.

    Examples
    --------
    >>> cam = CameraModel.scmos()
    >>> cam.saturation, round(cam.total_gain, 3)
    (65535, 2.174)
    >>> CameraModel.build(quantum_efficiency=1.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fluorecon.core.errors.ConfigError: Invalid CameraModel: quantum_efficiency: ...
    """

    version: int = Field(default=1, ge=1, description="Schema version of this config.")
    quantum_efficiency: float = Field(
        default=0.8, gt=0.0, le=1.0,
        description="Quantum efficiency: fraction of photons detected as photoelectrons (0-1].")
    gain: float = Field(
        default=1.0, gt=0.0,
        description="Conversion gain of the readout, ADU per electron (after any EM gain).")
    em_gain: float = Field(
        default=1.0, ge=1.0,
        description="EMCCD electron-multiplying gain (electrons out per electron in); 1 for "
                    "sCMOS/CCD. Above 1 the excess noise factor F^2 = 2 applies.")
    offset: float = Field(
        default=100.0, ge=0.0, description="Baseline (bias) added by the electronics, ADU.")
    read_noise: float = Field(
        default=1.5, ge=0.0, description="Readout noise, electrons rms at the output node.")
    bit_depth: int = Field(
        default=16, ge=8, le=16,
        description="ADC bit depth; values saturate at 2**bit_depth - 1 ADU.")
    dark_current: float = Field(
        default=0.0, ge=0.0,
        description="Mean dark signal per pixel and frame, electrons (dark current x exposure).")

    @model_validator(mode="after")
    def _check(self) -> "CameraModel":
        if self.offset >= self.saturation:
            raise ValueError(f"offset {self.offset} ADU must be below the saturation level "
                             f"{self.saturation} ADU of a {self.bit_depth}-bit camera")
        return self

    # -- derived quantities -------------------------------------------------------------
    @property
    def saturation(self) -> int:
        """Largest value the ADC can record, ``2**bit_depth - 1`` ADU."""
        return 2 ** self.bit_depth - 1

    @property
    def total_gain(self) -> float:
        """ADU per photoelectron, ``gain * em_gain``."""
        return self.gain * self.em_gain

    @property
    def excess_noise_factor(self) -> float:
        """Excess noise factor ``F^2`` of the multiplication register: 2 if EM gain, else 1."""
        return 2.0 if self.em_gain > 1.0 else 1.0

    # -- presets ---------------------------------------------------------------------------
    @classmethod
    def scmos(cls, **overrides: Any) -> "CameraModel":
        """A typical back-illuminated-class sCMOS (values close to a Hamamatsu ORCA-Flash4.0 V3).

        QE 0.82, 0.46 e-/ADU (gain 2.17 ADU/e-), offset 100 ADU, read noise 1.6 e- rms,
        16 bit, dark 0.06 e-/pixel/frame. Keywords override any field.
        """
        params: dict[str, Any] = dict(quantum_efficiency=0.82, gain=1.0 / 0.46, em_gain=1.0,
                                      offset=100.0, read_noise=1.6, bit_depth=16,
                                      dark_current=0.06)
        params.update(overrides)
        return cls.build(**params)  # type: ignore[return-value]

    @classmethod
    def emccd(cls, **overrides: Any) -> "CameraModel":
        """A typical back-illuminated EMCCD (values close to an Andor iXon Ultra 888).

        QE 0.95, EM gain 300, 4.4 e-/ADU (gain 0.227 ADU/e-), offset 100 ADU, read noise
        45 e- rms (before division by the EM gain), 16 bit, dark 0.005 e-/pixel/frame.
        """
        params: dict[str, Any] = dict(quantum_efficiency=0.95, gain=1.0 / 4.4, em_gain=300.0,
                                      offset=100.0, read_noise=45.0, bit_depth=16,
                                      dark_current=0.005)
        params.update(overrides)
        return cls.build(**params)  # type: ignore[return-value]

    @classmethod
    def ideal(cls, **overrides: Any) -> "CameraModel":
        """An ideal photon counter: QE 1, 1 ADU per electron, no offset, read noise or dark.

        Only Poisson shot noise remains (and saturation at 65535 photons).
        """
        params: dict[str, Any] = dict(quantum_efficiency=1.0, gain=1.0, em_gain=1.0,
                                      offset=0.0, read_noise=0.0, bit_depth=16,
                                      dark_current=0.0)
        params.update(overrides)
        return cls.build(**params)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------
# Forward, mean, inverse
# ---------------------------------------------------------------------------------------
def camera_forward(
    photons: ArrayLike,
    camera: CameraModel,
    *,
    rng: SeedLike,
    offset_map: ArrayLike | None = None,
    gain_map: ArrayLike | None = None,
    read_noise_map: ArrayLike | None = None,
) -> np.ndarray:
    """Simulate the camera recording of an expected-photon image.

    Parameters
    ----------
    photons : array_like
        Expected photons per pixel (non-negative, finite), any shape.
    camera : CameraModel
        Camera parameters.
    rng : numpy.random.Generator or int or None
        Random generator or seed (required, so that simulations are reproducible by
        default; pass ``None`` explicitly for fresh entropy).
    offset_map, gain_map, read_noise_map : array_like, optional
        Per-pixel sCMOS maps (ADU, ADU/e-, e- rms) broadcastable to ``photons``; each replaces
        the corresponding scalar of ``camera``.

    Returns
    -------
    numpy.ndarray
        float32 ADU image of ``photons.shape``: integer values in ``[0, 2**bit_depth - 1]``.

    Raises
    ------
    DataError
        Negative or non-finite photons, or maps that do not fit.

    Notes
    -----
    Shot noise ``Poisson(QE * photons + dark)``; with ``em_gain > 1`` the electrons are
    multiplied by a Gamma(``e``, ``em_gain``) register (variance doubles: ``F^2 = 2``); then
    Gaussian read noise (electrons), conversion ``* gain``, ``+ offset``, rounding to the
    nearest integer and clipping to the ADC range. Rounding adds variance ``1/12`` ADU^2;
    clipping biases the mean near 0 and near saturation only.

    Examples
    --------
    >>> import numpy as np
    >>> adu = camera_forward(np.full((4, 4), 10.0), CameraModel.ideal(), rng=0)
    >>> adu.dtype, bool(np.all(adu == np.round(adu)))
    (dtype('float32'), True)
    """
    lam = _photons(photons)
    gen = make_rng(rng)
    offset, gain, read = _maps(camera, lam.shape, offset_map, gain_map, read_noise_map)
    mean_e = camera.quantum_efficiency * lam + camera.dark_current
    electrons = gen.poisson(mean_e).astype(np.float64)
    if camera.em_gain > 1.0:
        pos = electrons > 0
        amplified = np.zeros_like(electrons)
        amplified[pos] = gen.gamma(electrons[pos], camera.em_gain)
        electrons = amplified
    if np.any(read > 0):
        electrons = electrons + gen.standard_normal(lam.shape) * read
    adu = np.rint(electrons * gain + offset)
    return np.clip(adu, 0, camera.saturation).astype(np.float32)


def camera_mean(
    photons: ArrayLike,
    camera: CameraModel,
    *,
    offset_map: ArrayLike | None = None,
    gain_map: ArrayLike | None = None,
) -> np.ndarray:
    """Expected ADU of the camera model, ``offset + gain * em_gain * (QE * photons + dark)``.

    The noise-free mean of :func:`camera_forward` (before clipping to the ADC range); the
    exact inverse of :func:`camera_inverse`. Returns float32.
    """
    lam = _photons(photons)
    offset, gain, _ = _maps(camera, lam.shape, offset_map, gain_map, None)
    mean = offset + gain * camera.em_gain * (camera.quantum_efficiency * lam + camera.dark_current)
    return np.asarray(mean, dtype=np.float32)


def camera_inverse(
    adu: ArrayLike,
    camera: CameraModel,
    *,
    offset_map: ArrayLike | None = None,
    gain_map: ArrayLike | None = None,
) -> np.ndarray:
    """Map camera ADU back to photons: the exact inverse of the camera's mean model.

    Parameters
    ----------
    adu : array_like
        Camera image, ADU (any real dtype; converted by value).
    camera : CameraModel
        Camera parameters.
    offset_map, gain_map : array_like, optional
        Per-pixel sCMOS offset (ADU) and gain (ADU/e-) replacing the scalars.

    Returns
    -------
    numpy.ndarray
        float32 photons, ``((adu - offset) / (gain * em_gain) - dark) / QE``. Not clipped:
        noise makes dark pixels negative, and clipping would bias their mean.

    Notes
    -----
    ``E[camera_inverse(camera_forward(p))] = p`` wherever the ADC neither clips at 0 nor
    saturates. Saturated pixels map to a lower bound of the true photons.

    Examples
    --------
    >>> cam = CameraModel.scmos()
    >>> round(float(camera_inverse(camera_mean(np.array([[50.0]]), cam), cam)[0, 0]), 3)
    50.0
    """
    arr = np.asarray(adu)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise DataError(message(f"ADU of dtype {arr.dtype}", "a real numeric array",
                                "Pass the camera image as recorded."))
    a = arr.astype(np.float64)
    offset, gain, _ = _maps(camera, a.shape, offset_map, gain_map, None)
    photons = ((a - offset) / (gain * camera.em_gain) - camera.dark_current) / \
        camera.quantum_efficiency
    return photons.astype(np.float32)


# ---------------------------------------------------------------------------------------
# Noise model
# ---------------------------------------------------------------------------------------
def noise_parameters(camera: CameraModel, *, quantization: bool = True) -> tuple[float, float]:
    """Poisson-Gaussian parameters ``(a, b)`` of the camera in ADU (Foi et al. 2008).

    Parameters
    ----------
    camera : CameraModel
        Camera parameters.
    quantization : bool
        Include the rounding variance ``1/12`` ADU^2 in ``b``.

    Returns
    -------
    a : float
        Slope, ADU: ``gain * em_gain * F^2`` (``F^2`` = 2 with EM gain, else 1).
    b : float
        Signal-independent variance, ADU^2: ``(gain * read_noise)^2`` (+ ``1/12``).

    Notes
    -----
    With these, ``var(ADU) = a * (E[ADU] - offset) + b``. Since
    ``E[ADU] - offset = gain * em_gain * e`` for ``e`` mean electrons, the first term is
    ``(gain * em_gain)^2 F^2 e``: the Poisson variance of the electrons, amplified. Dark
    electrons are Poisson too and are already part of ``E[ADU] - offset``. The
    generalised Anscombe transform of a Poisson-Gaussian variable uses ``alpha = a``,
    ``sigma^2 = b`` and ``mu = offset``.
    """
    a = camera.total_gain * camera.excess_noise_factor
    b = (camera.gain * camera.read_noise) ** 2 + (1.0 / 12.0 if quantization else 0.0)
    return float(a), float(b)


def noise_variance(
    mean_adu: ArrayLike,
    camera: CameraModel,
    *,
    offset_map: ArrayLike | None = None,
    gain_map: ArrayLike | None = None,
    read_noise_map: ArrayLike | None = None,
    quantization: bool = True,
) -> np.ndarray:
    """Variance of a camera pixel, in ADU^2, given its expected value in ADU.

    Parameters
    ----------
    mean_adu : array_like
        Expected ADU per pixel (e.g. from :func:`camera_mean`).
    camera : CameraModel
        Camera parameters.
    offset_map, gain_map, read_noise_map : array_like, optional
        Per-pixel sCMOS maps replacing the scalars (variance then varies per pixel).
    quantization : bool
        Include the ADC rounding variance ``1/12`` ADU^2.

    Returns
    -------
    numpy.ndarray
        float32 variance ``a * max(mean_adu - offset, 0) + b`` with ``a``, ``b`` as in
        :func:`noise_parameters` (evaluated per pixel when maps are given).

    Examples
    --------
    >>> cam = CameraModel.ideal()
    >>> noise_variance(np.array([25.0]), cam, quantization=False)
    array([25.], dtype=float32)
    """
    m = np.asarray(mean_adu, dtype=np.float64)
    offset, gain, read = _maps(camera, m.shape, offset_map, gain_map, read_noise_map)
    a = gain * camera.em_gain * camera.excess_noise_factor
    b = (gain * read) ** 2 + (1.0 / 12.0 if quantization else 0.0)
    return (a * np.clip(m - offset, 0.0, None) + b).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def _photons(photons: ArrayLike) -> np.ndarray:
    lam = np.asarray(photons)
    if not np.issubdtype(lam.dtype, np.number) or np.iscomplexobj(lam):
        raise DataError(message(f"photons of dtype {lam.dtype}", "a real numeric array",
                                "Pass expected photons per pixel."))
    lam = lam.astype(np.float64)
    if not np.all(np.isfinite(lam)):
        raise DataError(message("photons containing NaN or infinite values", "finite photons",
                                "Check the image that was passed as photons."))
    if lam.size and lam.min() < 0:
        raise DataError(message(f"photons with minimum {lam.min():.4g}",
                                "non-negative expected photons",
                                "Clip the expected-photon image at 0 before simulating."))
    return lam


def _maps(camera: CameraModel, shape: tuple[int, ...], offset_map: ArrayLike | None,
          gain_map: ArrayLike | None, read_noise_map: ArrayLike | None
          ) -> tuple[Any, Any, Any]:
    def one(value: ArrayLike | None, default: float, name: str, unit: str, positive: bool
            ) -> Any:
        if value is None:
            return default
        arr = np.asarray(value, dtype=np.float64)
        try:
            np.broadcast_shapes(arr.shape, shape)
        except ValueError:
            raise DataError(message(f"{name} of shape {arr.shape} for an image of shape {shape}",
                                    "a map broadcastable to the image",
                                    f"Pass one {name} value per pixel.")) from None
        if np.broadcast_shapes(arr.shape, shape) != tuple(shape):
            raise DataError(message(f"{name} of shape {arr.shape} for an image of shape {shape}",
                                    "a map no larger than the image",
                                    f"Crop {name} to the image."))
        bad = ~np.isfinite(arr) | ((arr <= 0) if positive else (arr < 0))
        if np.any(bad):
            need = "> 0" if positive else ">= 0"
            raise DataError(message(f"{name} with {int(bad.sum())} invalid values",
                                    f"finite values {need} {unit}", f"Fix the {name}."))
        return arr

    return (one(offset_map, camera.offset, "offset_map", "ADU", False),
            one(gain_map, camera.gain, "gain_map", "ADU per electron", True),
            one(read_noise_map, camera.read_noise, "read_noise_map", "electrons rms", False))
