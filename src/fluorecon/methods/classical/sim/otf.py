"""Radially symmetric OTF models for SIM reconstruction: from optics, measured, or analytic.

A SIM reconstruction evaluates the detection OTF at arbitrary (shifted) frequencies, so it is
kept as a radial profile ``H(|f|)`` (cycles per micrometre) rather than as an array on one grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.simulate.psf import widefield_psf

__all__ = ["RadialOTF"]


@dataclass(frozen=True)
class RadialOTF:
    """A real, radially symmetric OTF profile ``H(|f|)`` with ``H(0) = 1``.

    Attributes
    ----------
    frequencies : ndarray, shape (n,)
        Increasing radial frequencies, cycles per micrometre, starting at 0.
    values : ndarray, shape (n,)
        OTF magnitude at ``frequencies`` (non-negative, ``values[0] == 1``).
    cutoff : float
        Frequency above which the OTF is taken as zero, cycles per micrometre.
    """

    frequencies: np.ndarray
    values: np.ndarray
    cutoff: float

    def __post_init__(self) -> None:
        f = np.asarray(self.frequencies, dtype=np.float64)
        v = np.asarray(self.values, dtype=np.float64)
        if f.ndim != 1 or f.shape != v.shape or f.size < 4 or f[0] != 0 \
                or np.any(np.diff(f) <= 0) or not np.all(np.isfinite(v)):
            raise DataError(message(f"an OTF profile of {f.size} samples",
                                    "at least 4 finite samples at increasing frequencies from 0",
                                    "Check the OTF file and its frequency spacing."))
        if v[0] <= 0:
            raise DataError(message(f"OTF value {v[0]} at zero frequency", "a positive value",
                                    "Pass an OTF magnitude profile (1 at the origin)."))
        object.__setattr__(self, "frequencies", f)
        object.__setattr__(self, "values", np.clip(v / v[0], 0.0, None))
        if not self.cutoff > 0:
            raise ConfigError(message(f"OTF cutoff {self.cutoff}", "a positive frequency",
                                      "Pass the cutoff in cycles per micrometre."))

    def __call__(self, f: np.ndarray) -> np.ndarray:
        """Evaluate ``H`` at radial frequencies ``f`` (any shape, cycles/um); 0 beyond cutoff."""
        f = np.asarray(f, dtype=np.float64)
        out = np.interp(f, self.frequencies, self.values, right=0.0)
        out[f >= self.cutoff] = 0.0
        return out

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def from_optics(cls, *, na: float, wavelength: float, pixel_size: float,
                    n_immersion: float = 1.515, size: int = 256) -> "RadialOTF":
        """OTF of the in-focus Born-Wolf widefield PSF sampled at ``pixel_size``.

        The PSF of :func:`fluorecon.simulate.psf.widefield_psf` (pixel-area averaged, so the
        pixel MTF is included) is Fourier transformed and averaged over rings of width
        ``1 / (size * pixel_size)``. The cutoff is the theoretical ``2 NA / wavelength``.
        """
        if size < 32:
            raise ConfigError(message(f"size={size}", "at least 32", "Use the default 256."))
        psf = widefield_psf((size, size), na=na, wavelength=wavelength, pixel_size=pixel_size,
                            n_immersion=n_immersion).astype(np.float64)
        otf = np.abs(np.fft.fft2(np.fft.ifftshift(psf)))
        fy = np.fft.fftfreq(size, d=pixel_size)
        r = np.hypot(fy[:, None], fy[None, :])
        df = 1.0 / (size * pixel_size)
        idx = np.rint(r / df).astype(int)
        nb = size // 2 + 1
        keep = idx < nb
        sums = np.bincount(idx[keep], otf[keep], minlength=nb)
        counts = np.bincount(idx[keep], minlength=nb)
        prof = sums / np.maximum(counts, 1)
        return cls(np.arange(nb) * df, prof, 2.0 * na / wavelength)

    @classmethod
    def from_profile(cls, values: Sequence[float] | np.ndarray, spacing: float, *,
                     cutoff: float | None = None, floor: float = 1e-3) -> "RadialOTF":
        """A measured radial OTF (e.g. fairSIM / rDL-SIM ``*_OTF2d.mrc``) sampled every
        ``spacing`` cycles/um.

        Complex samples are reduced to their magnitude. Without ``cutoff`` the cutoff is
        placed where the (3-sample smoothed) magnitude first drops below ``floor``.
        """
        v = np.abs(np.asarray(values)).astype(np.float64).ravel()
        if spacing <= 0:
            raise ConfigError(message(f"OTF spacing {spacing}", "a positive spacing",
                                      "Pass the sample spacing in cycles per micrometre."))
        f = np.arange(v.size) * float(spacing)
        if cutoff is None:
            smooth = np.convolve(v / max(v[0], 1e-30), np.ones(3) / 3, mode="same")
            below = np.nonzero(smooth[1:] < floor)[0]
            cutoff = float(f[below[0] + 1]) if below.size else float(f[-1])
        return cls(f, v, float(cutoff))

    @classmethod
    def approximate(cls, *, na: float, wavelength: float, curvature: float = 1.0,
                    n: int = 512) -> "RadialOTF":
        """Analytic in-focus OTF of a circular pupil, optionally bent (fairSIM's model).

        ``H(rho) = [(2/pi)(acos rho - rho sqrt(1 - rho^2))] * curvature**rho`` with
        ``rho = |f| / (2 NA / wavelength)``; ``curvature < 1`` lowers the mid frequencies as
        aberrations and the pixel MTF do.
        """
        if not 0 < curvature <= 1:
            raise ConfigError(message(f"curvature={curvature}", "0 < curvature <= 1",
                                      "Use 1 for the ideal OTF."))
        fc = 2.0 * na / wavelength
        f = np.linspace(0.0, fc, n)
        rho = f / fc
        v = (2 / math.pi) * (np.arccos(rho) - rho * np.sqrt(1 - rho**2)) * curvature**rho
        return cls(f, v, fc)
