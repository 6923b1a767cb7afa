"""Structured illumination (2D SIM) forward model: sinusoidal patterns, OTF blur, camera.

A 2D SIM acquisition records ``n_angles x n_phases`` frames of one field of view, each lit by
a sinusoidal pattern (two-beam interference)

.. math:: I_{a,p}(\\mathbf r) = 1 + m_a
          \\cos(2\\pi\\,\\mathbf k_a\\cdot\\mathbf r + \\varphi_{a,p}),

so that each frame is ``D_{a,p} = h * (s I_{a,p})`` (``h`` the widefield PSF, ``s`` the sample)
plus camera noise. In Fourier space the pattern adds two copies of the sample spectrum shifted
by ``+-k_a``; a reconstruction separates and re-centres them to extend the passband from the
OTF cutoff ``2 NA / lambda`` to ``2 NA / lambda + |k_a|``.

Units and conventions
---------------------
- Lengths in micrometres, spatial frequencies in cycles per micrometre.
- ``r = (y, x)`` is measured from the centre of the first camera pixel, so phases refer to the
  raw-frame grid (the grid a reconstruction sees).
- Wave vectors are stored as ``(ky, kx)`` with the pattern angle ``atan2(ky, kx)`` in
  ``[0, pi)`` (``k`` and ``-k`` with negated phase describe the same pattern).
- Frames are ordered angle-major: frame ``a * n_phases + p``.
- The ground truth lives on a grid ``upsample`` times finer than the camera (default 2); the
  camera integrates ``upsample x upsample`` truth pixels per camera pixel, so the truth is in
  photons per fine pixel and ``bin(blur(truth))`` is the uniformly lit camera image.

References
----------
.. [1] M. G. L. Gustafsson, "Surpassing the lateral resolution limit by a factor of two using
   structured illumination microscopy", J. Microsc. 198(2), 82-87, 2000.
.. [2] R. Heintzmann, T. Huser, "Super-resolution structured illumination microscopy",
   Chem. Rev. 117(23), 13890-13908, 2017.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.rng import SeedLike, make_rng
from fluorecon.simulate.camera import CameraModel, camera_forward
from fluorecon.simulate.degrade import blur
from fluorecon.simulate.psf import widefield_psf

__all__ = [
    "SIMFrames",
    "SIMPattern",
    "illumination_patterns",
    "otf_cutoff",
    "sim_pattern",
    "simulate_sim",
]


def otf_cutoff(na: float, wavelength: float) -> float:
    """Incoherent OTF cutoff ``2 NA / wavelength`` in cycles per micrometre."""
    if na <= 0 or wavelength <= 0:
        raise ConfigError(message(f"na={na}, wavelength={wavelength}", "positive values",
                                  "Pass the objective NA and the emission wavelength in um."))
    return 2.0 * na / wavelength


@dataclass(frozen=True)
class SIMPattern:
    """Illumination parameters of a 2D SIM acquisition (known or estimated).

    Attributes
    ----------
    wavevectors : ndarray, shape (n_angles, 2)
        Pattern wave vector ``(ky, kx)`` per angle, cycles per micrometre (angle in
        ``[0, pi)``).
    phases : ndarray, shape (n_angles, n_phases)
        Pattern phase of every frame, radians in ``[0, 2 pi)``, relative to the centre of the
        first raw pixel.
    modulation : ndarray, shape (n_angles,)
        Modulation depth ``m`` per angle (1: full contrast).
    """

    wavevectors: np.ndarray
    phases: np.ndarray
    modulation: np.ndarray

    def __post_init__(self) -> None:
        k = np.asarray(self.wavevectors, dtype=np.float64)
        ph = np.asarray(self.phases, dtype=np.float64)
        mod = np.asarray(self.modulation, dtype=np.float64)
        if k.ndim != 2 or k.shape[1] != 2 or ph.ndim != 2 or ph.shape[0] != k.shape[0] \
                or mod.shape != (k.shape[0],):
            raise ConfigError(message(
                f"wavevectors {k.shape}, phases {ph.shape}, modulation {mod.shape}",
                "shapes (n_angles, 2), (n_angles, n_phases), (n_angles,)",
                "Pass one wave vector and modulation per angle and one phase per frame."))
        if not (np.all(np.isfinite(k)) and np.all(np.isfinite(ph)) and np.all(np.isfinite(mod))):
            raise ConfigError(message("non-finite pattern parameters", "finite values",
                                      "Check the pattern parameters."))
        object.__setattr__(self, "wavevectors", k)
        object.__setattr__(self, "phases", np.mod(ph, 2 * np.pi))
        object.__setattr__(self, "modulation", mod)

    @property
    def n_angles(self) -> int:
        """Number of pattern orientations."""
        return int(self.wavevectors.shape[0])

    @property
    def n_phases(self) -> int:
        """Number of phase steps per orientation."""
        return int(self.phases.shape[1])

    @property
    def angles(self) -> np.ndarray:
        """Pattern angle ``atan2(ky, kx)`` per orientation, radians."""
        return np.arctan2(self.wavevectors[:, 0], self.wavevectors[:, 1])

    @property
    def frequencies(self) -> np.ndarray:
        """Pattern spatial frequency ``|k|`` per orientation, cycles per micrometre."""
        return np.hypot(self.wavevectors[:, 0], self.wavevectors[:, 1])

    @property
    def periods(self) -> np.ndarray:
        """Pattern period ``1 / |k|`` per orientation, micrometres."""
        return 1.0 / self.frequencies

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (lists of floats; angles in degrees added for reading)."""
        return {
            "wavevectors_per_um": self.wavevectors.tolist(),
            "frequencies_per_um": self.frequencies.tolist(),
            "periods_um": self.periods.tolist(),
            "angles_deg": np.degrees(self.angles).tolist(),
            "phases_rad": self.phases.tolist(),
            "modulation": self.modulation.tolist(),
        }


def sim_pattern(n_angles: int = 3, n_phases: int = 3, *, period: float, angle_offset: float = 0.0,
                modulation: float = 0.8, phase_offset: float | np.ndarray = 0.0) -> SIMPattern:
    """Equally spaced orientations and phase steps: the usual 2D SIM acquisition scheme.

    Parameters
    ----------
    n_angles : int
        Orientations, spaced by ``pi / n_angles`` (3 is standard).
    n_phases : int
        Phase steps per orientation, spaced by ``2 pi / n_phases`` (3 minimum, 5 optional).
    period : float
        Pattern period, micrometres.
    angle_offset : float
        Angle of the first orientation, radians.
    modulation : float
        Modulation depth in ``(0, 1]``.
    phase_offset : float or ndarray of shape (n_angles,)
        Phase of the first step of each orientation, radians.

    Returns
    -------
    SIMPattern
    """
    if n_angles < 1 or n_phases < 3:
        raise ConfigError(message(f"n_angles={n_angles}, n_phases={n_phases}",
                                  "n_angles >= 1 and n_phases >= 3",
                                  "Use 3 angles x 3 phases (or 5 phases)."))
    if period <= 0 or not 0 < modulation <= 1:
        raise ConfigError(message(f"period={period}, modulation={modulation}",
                                  "period > 0 um and 0 < modulation <= 1",
                                  "Pass a positive period and a modulation depth up to 1."))
    theta = np.mod(angle_offset + np.pi * np.arange(n_angles) / n_angles, np.pi)
    k = np.stack([np.sin(theta), np.cos(theta)], axis=1) / period
    off = np.broadcast_to(np.asarray(phase_offset, dtype=np.float64), (n_angles,))
    phases = off[:, None] + 2 * np.pi * np.arange(n_phases)[None, :] / n_phases
    return SIMPattern(k, phases, np.full(n_angles, float(modulation)))


def illumination_patterns(pattern: SIMPattern, shape: tuple[int, int], pixel_size: float, *,
                          upsample: int = 1) -> np.ndarray:
    """Illumination intensity ``1 + m cos(2 pi k.r + phi)`` of every frame on a grid.

    Parameters
    ----------
    pattern : SIMPattern
        Pattern parameters (phases refer to the camera grid).
    shape : (int, int)
        Grid shape ``(ny, nx)`` (the fine grid when ``upsample > 1``).
    pixel_size : float
        Camera pixel size, micrometres.
    upsample : int
        Grid points per camera pixel along each axis; fine pixel ``f`` has its centre at
        ``((f + 0.5) / upsample - 0.5)`` camera pixels.

    Returns
    -------
    ndarray, shape (n_angles * n_phases, ny, nx)
        float64 illumination, mean 1, angle-major frame order.
    """
    ny, nx = shape
    y = ((np.arange(ny) + 0.5) / upsample - 0.5) * pixel_size
    x = ((np.arange(nx) + 0.5) / upsample - 0.5) * pixel_size
    out = np.empty((pattern.n_angles * pattern.n_phases, ny, nx))
    for a in range(pattern.n_angles):
        ky, kx = pattern.wavevectors[a]
        arg = 2 * np.pi * (ky * y[:, None] + kx * x[None, :])
        for p in range(pattern.n_phases):
            out[a * pattern.n_phases + p] = 1.0 + pattern.modulation[a] * np.cos(
                arg + pattern.phases[a, p])
    return out


@dataclass(frozen=True)
class SIMFrames:
    """A simulated SIM acquisition with its ground truth and forward model.

    Attributes
    ----------
    frames : ndarray, shape (n_angles * n_phases, ny, nx)
        float32 raw frames in camera ADU (angle-major order).
    truth : ndarray, shape (upsample * ny, upsample * nx)
        float32 sample in photons per fine pixel (of size ``pixel_size / upsample``).
    widefield : ndarray, shape (ny, nx)
        float32 noise-free uniformly lit camera image in photons (``bin(blur(truth))``).
    pattern : SIMPattern
        The illumination used.
    psf : ndarray
        float32 detection PSF on the fine grid (sums to 1), centred.
    pixel_size : float
        Camera pixel size, micrometres.
    upsample : int
        Truth pixels per camera pixel along each axis.
    na, wavelength, n_immersion : float
        Detection optics (emission wavelength, micrometres).
    camera : CameraModel
        Camera model; ``camera_inverse(frames, camera)`` gives photons.
    background : float
        Uniform background, photons per camera pixel and frame.
    """

    frames: np.ndarray
    truth: np.ndarray
    widefield: np.ndarray
    pattern: SIMPattern
    psf: np.ndarray
    pixel_size: float
    upsample: int
    na: float
    wavelength: float
    n_immersion: float
    camera: CameraModel
    background: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Parameters (not arrays) as a JSON-ready dictionary."""
        return {
            "pixel_size_um": self.pixel_size, "upsample": self.upsample, "na": self.na,
            "wavelength_um": self.wavelength, "n_immersion": self.n_immersion,
            "background_photons": self.background, "camera": self.camera.model_dump(mode="json"),
            "pattern": self.pattern.to_dict(), "frame_order": "angle-major", **self.extra,
        }


def simulate_sim(
    truth: Any,
    *,
    pixel_size: float = 0.0626,
    na: float = 1.4,
    wavelength: float = 0.52,
    n_immersion: float = 1.515,
    n_angles: int = 3,
    n_phases: int = 3,
    pattern: SIMPattern | None = None,
    pattern_frequency: float = 0.85,
    modulation: float = 0.8,
    photons: float = 500.0,
    background: float = 10.0,
    camera: CameraModel | None = None,
    upsample: int = 2,
    rng: SeedLike,
) -> SIMFrames:
    """Simulate raw 2D SIM frames of a ground truth on a finer grid.

    Parameters
    ----------
    truth : array_like, shape (upsample * ny, upsample * nx)
        Non-negative sample (relative brightness); rescaled so that the brightest part of the
        uniformly lit camera image receives ``photons``.
    pixel_size : float
        Camera pixel size in the sample plane, micrometres (default: that of a 100x TIRF-SIM).
    na, wavelength, n_immersion : float
        Detection NA, emission wavelength (micrometres) and immersion index.
    n_angles, n_phases : int
        Acquisition scheme when ``pattern`` is not given (3 x 3, or 3 x 5).
    pattern : SIMPattern, optional
        Illumination. Default: :func:`sim_pattern` with random angle offset and random phase
        offsets, period ``1 / (pattern_frequency * 2 NA / wavelength)``.
    pattern_frequency : float
        Pattern frequency as a fraction of the OTF cutoff (default pattern only), in
        ``(0, 1)``; larger extends resolution more but leaves less band overlap to estimate
        parameters from.
    modulation : float
        Modulation depth of the default pattern.
    photons : float
        Expected photons per camera pixel at the 99.9th percentile of the uniformly lit image
        (so a single frame has about that many where the pattern is at its mean).
    background : float
        Uniform background photons per camera pixel and frame (out-of-focus light, not
        modulated).
    camera : CameraModel, optional
        Default :meth:`CameraModel.scmos`.
    upsample : int
        Truth pixels per camera pixel along each axis (2 or more).
    rng : int or numpy.random.Generator or None
        Seed for the pattern offsets and the noise.

    Returns
    -------
    SIMFrames

    Notes
    -----
    ``frames[a, p] = camera(bin_u(h_fine * (c s I_{a,p})) + b)`` with ``h_fine`` the
    Born-Wolf widefield PSF at the fine pixel size (pixel-area averaged), ``bin_u`` the sum
    over ``u x u`` fine pixels (pixel integration of the camera), ``c`` the photon scale and
    ``b`` the background. The blur uses reflecting boundaries.
    """
    check_image_array(truth, name="truth")
    s = as_float32(truth).astype(np.float64)
    if s.ndim != 2:
        raise DataError(message(f"a truth of shape {s.shape}", "a 2D (Y, X) image",
                                "SIM simulation is 2D; pass one plane."))
    if upsample < 2 or s.shape[0] % upsample or s.shape[1] % upsample:
        raise ConfigError(message(f"truth shape {s.shape} with upsample={upsample}",
                                  "upsample >= 2 dividing both sides",
                                  "Crop the truth to a multiple of upsample."))
    if np.any(s < 0):
        raise DataError(message("a truth with negative values", "a non-negative sample",
                                "Clip or offset the truth."))
    if photons <= 0 or background < 0:
        raise ConfigError(message(f"photons={photons}, background={background}",
                                  "photons > 0 and background >= 0", "Fix the intensities."))
    gen = make_rng(rng)
    fc = otf_cutoff(na, wavelength)
    if pattern is None:
        if not 0 < pattern_frequency < 1:
            raise ConfigError(message(f"pattern_frequency={pattern_frequency}",
                                      "a fraction of the OTF cutoff in (0, 1)",
                                      "Use e.g. 0.85."))
        pattern = sim_pattern(n_angles, n_phases, period=1.0 / (pattern_frequency * fc),
                              angle_offset=float(gen.uniform(0, np.pi / n_angles)),
                              modulation=modulation,
                              phase_offset=gen.uniform(0, 2 * np.pi, n_angles))
    u = int(upsample)
    fine = pixel_size / u
    half = int(math.ceil(1.6 * wavelength / na / fine))
    psf = widefield_psf((2 * half + 1, 2 * half + 1), na=na, wavelength=wavelength,
                        n_immersion=n_immersion, pixel_size=fine)
    ny, nx = s.shape[0] // u, s.shape[1] // u

    def camera_image(x: np.ndarray) -> np.ndarray:
        b = blur(x.astype(np.float32), psf, mode="reflect").astype(np.float64)
        return b.reshape(ny, u, nx, u).sum(axis=(1, 3))

    wide = camera_image(s)
    level = float(np.percentile(wide, 99.9))
    if level <= 0:
        raise DataError(message("an all-zero truth", "some signal", "Pass a non-empty sample."))
    scale = photons / level
    s *= scale
    wide *= scale
    illum = illumination_patterns(pattern, s.shape, pixel_size, upsample=u)
    cam = camera if camera is not None else CameraModel.scmos()
    frames = np.empty((illum.shape[0], ny, nx), dtype=np.float32)
    for i in range(illum.shape[0]):
        expected = np.clip(camera_image(s * illum[i]), 0, None) + background
        frames[i] = camera_forward(expected, cam, rng=gen)
    return SIMFrames(frames=frames, truth=s.astype(np.float32), widefield=wide.astype(np.float32),
                     pattern=pattern, psf=psf, pixel_size=float(pixel_size), upsample=u,
                     na=float(na), wavelength=float(wavelength), n_immersion=float(n_immersion),
                     camera=cam, background=float(background),
                     extra={"photons": float(photons), "photon_scale": scale})
