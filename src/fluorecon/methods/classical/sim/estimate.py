"""SIM pattern parameter estimation from the raw frames (frequency, angle, phases, modulation).

For each orientation:

1. band separation assuming equidistant phase steps;
2. **wave vector**: cross-correlation of the OTF-weighted order-0 and order-1 bands over
   candidate shifts (on a half-pixel grid, by FFT of the product of the bands' real-space
   forms), peak search inside an annulus of plausible frequencies, then sub-pixel refinement
   of ``|cc(k)|`` with exact Fourier shifts (Nelder-Mead), as in fairSIM;
3. **phases**: of every frame from the autocorrelation of its spectrum at ``k0``
   (Wicker et al. 2013: non-iterative, no assumption on the phase steps), or, with
   ``phase_method="cross-correlation"``, the global phase of equidistant steps from the
   complex band-overlap ratio;
4. **modulation**: bands re-separated with the estimated phases; the ratio of the shifted
   order-1 band to the order-0 band over their common OTF support is ``(m/2) e^{i dphi}``.

References
----------
.. [1] M. Müller, V. Mönkemöller, S. Hennig, W. Hübner, T. Huser, "Open-source image
   reconstruction of super-resolution structured illumination microscopy data in ImageJ",
   Nat. Commun. 7, 10980, 2016 (fairSIM).
.. [2] K. Wicker, O. Mandula, G. Best, R. Fiolka, R. Heintzmann, "Phase optimisation for
   structured illumination microscopy", Opt. Express 21(2), 2032-2049, 2013.
.. [3] G. Wen et al., "High-fidelity structured illumination microscopy by point-spread-
   function engineering", Light Sci. Appl. 10, 70, 2021 (HiFi-SIM).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.fft as sfft
from scipy import optimize

from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.methods.classical.sim.bands import (
    check_frames,
    fade_borders,
    separate_bands,
    shift_band,
)
from fluorecon.methods.classical.sim.otf import RadialOTF
from fluorecon.simulate.sim import SIMPattern

__all__ = ["SIMEstimate", "estimate_sim_parameters"]

PhaseMethod = Literal["autocorrelation", "cross-correlation"]


@dataclass(frozen=True)
class SIMEstimate:
    """Estimated pattern parameters with the quality figures of each orientation.

    Attributes
    ----------
    pattern : SIMPattern
        Wave vectors (cycles/um), phases (rad) and modulation depths.
    correlation : ndarray, shape (n_angles,)
        Normalised peak cross-correlation ``|<C0, C1(k0)>| / (|C0| |C1(k0)|)`` over the band
        overlap (0..1); low values flag unreliable estimates.
    residual_phase : ndarray, shape (n_angles,)
        Phase of the band-overlap ratio after separation with the estimated phases, radians
        (near 0 when the phases are consistent).
    """

    pattern: SIMPattern
    correlation: np.ndarray
    residual_phase: np.ndarray

    def problems(self, *, angle_tolerance: float = 2.0, frequency_tolerance: float = 0.02,
                 min_modulation: float = 0.1) -> list[str]:
        """Inconsistencies that flag a failed estimation (empty when all checks pass).

        Checks what a standard acquisition guarantees: orientations spaced by
        ``180 / n_angles`` degrees (within ``angle_tolerance``), one pattern frequency for all
        orientations (within ``frequency_tolerance``, relative), and a modulation of at least
        ``min_modulation`` (a lower one means no pattern was found).
        """
        out = []
        p = self.pattern
        if p.n_angles > 1:
            ang = np.sort(np.degrees(p.angles))
            steps = np.diff(np.concatenate([ang, ang[:1] + 180.0]))
            expected = 180.0 / p.n_angles
            if np.max(np.abs(steps - expected)) > angle_tolerance:
                out.append(f"orientations {np.round(ang, 1).tolist()} deg are not "
                           f"{expected:g} deg apart")
            freq = p.frequencies
            if np.ptp(freq) > frequency_tolerance * float(np.mean(freq)):
                out.append(f"pattern frequencies {np.round(freq, 3).tolist()} /um differ")
        if np.any(p.modulation < min_modulation):
            out.append(f"modulation {np.round(p.modulation, 2).tolist()} below "
                       f"{min_modulation} (no pattern found)")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {**self.pattern.to_dict(), "correlation": self.correlation.tolist(),
                "residual_phase_rad": self.residual_phase.tolist(), "problems": self.problems()}


def _freq_grid(shape: tuple[int, int], pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    fy = np.fft.fftfreq(shape[0], d=pixel_size)
    fx = np.fft.fftfreq(shape[1], d=pixel_size)
    return fy[:, None], fx[None, :]


def estimate_sim_parameters(
    frames: Any,
    *,
    pixel_size: float,
    otf: RadialOTF,
    n_angles: int = 3,
    n_phases: int = 3,
    background: float = 0.0,
    search_range: tuple[float, float] = (0.3, 1.05),
    phase_method: PhaseMethod = "autocorrelation",
    fade: int = 15,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> SIMEstimate:
    """Estimate the illumination of a 2D SIM acquisition from its raw frames.

    Parameters
    ----------
    frames : array_like, shape (n_angles * n_phases, ny, nx)
        Raw frames, angle-major; photons or background-subtracted ADU (a constant offset only
        affects the order-0 band).
    pixel_size : float
        Camera pixel size in the sample plane, micrometres.
    otf : RadialOTF
        Detection OTF (its cutoff bounds the frequency search).
    n_angles, n_phases : int
        Acquisition scheme (3 x 3, or 3 x 5).
    background : float
        Constant subtracted from the frames first (camera offset, ADU or photons).
    search_range : (float, float)
        Annulus searched for the pattern frequency, as fractions of the OTF cutoff.
    phase_method : {"autocorrelation", "cross-correlation"}
        Per-frame phases (Wicker 2013) or the global phase of equidistant steps (fairSIM).
    fade : int
        Width in pixels of the cosine border fade applied before the FFT.
    workers : int
        Threads for ``scipy.fft``.
    progress : callable, optional
        ``progress(done, total)`` after each orientation.

    Returns
    -------
    SIMEstimate

    Notes
    -----
    With ``C_0 = H S`` and ``C_1 = (m/2) e^{i phi} H(k) S(k - k0)`` the cross-correlation

    .. math:: cc(\\mathbf s) = \\sum_k C_0(k) H(k)\\, \\overline{C_1(k + s) H(k + s)}

    peaks at ``s = k0``; it is evaluated for all integer and half-integer ``s`` at once as the
    (zero-padded) FFT of ``c_0(r) conj(c_1(r))``. The per-frame phase is
    ``phi_p = -arg sum_k D_p(k) H(k) conj(D_p(k + k0) H(k + k0))``, whose dominant term is
    ``(m/2) e^{-i phi_p} sum |S H|^2``.
    """
    if phase_method not in ("autocorrelation", "cross-correlation"):
        raise ConfigError(message(f"phase_method={phase_method!r}",
                                  "'autocorrelation' or 'cross-correlation'",
                                  "Use the default."))
    lo, hi = search_range
    if not 0 < lo < hi:
        raise ConfigError(message(f"search_range={search_range}", "0 < low < high",
                                  "Use e.g. (0.3, 1.05) (fractions of the OTF cutoff)."))
    data = check_frames(frames, n_angles, n_phases) - float(background)
    ny, nx = data.shape[-2:]
    fy, fx = _freq_grid((ny, nx), pixel_size)
    fr = np.hypot(fy, fx)
    h = otf(fr)
    if otf.cutoff * lo >= 0.5 / pixel_size:
        raise DataError(message(
            f"an OTF cutoff of {otf.cutoff:.3g} cycles/um with {pixel_size} um pixels",
            "a pattern frequency below the Nyquist frequency of the raw frames",
            "Check --pixel-size and the OTF (NA, wavelength)."))
    nominal = 2 * np.pi * np.arange(n_phases) / n_phases
    ks = np.empty((n_angles, 2))
    phases = np.empty((n_angles, n_phases))
    mods = np.empty(n_angles)
    corr = np.empty(n_angles)
    resid = np.empty(n_angles)
    for a in range(n_angles):
        faded = fade_borders(data[a], fade)
        spectra = sfft.fft2(faded, axes=(-2, -1), workers=workers)
        bands = separate_bands(spectra, nominal)
        k_idx, corr[a] = _wavevector(bands[0] * h, bands[1] * h, bands[1], fy, fx,
                                     (lo * otf.cutoff, hi * otf.cutoff), workers)
        ky, kx = k_idx[0] / (ny * pixel_size), k_idx[1] / (nx * pixel_size)
        if np.arctan2(ky, kx) < 0 or np.arctan2(ky, kx) >= np.pi:
            # k and -k describe one pattern: keep the angle in [0, pi) and swap the bands.
            k_idx = -k_idx
            ky, kx = -ky, -kx
            bands = bands[[0, 2, 1]]
            flip = True
        else:
            flip = False
        ks[a] = (ky, kx)
        if phase_method == "autocorrelation":
            for p in range(n_phases):
                phases[a, p] = _frame_phase(spectra[p] * h, k_idx, workers)
        else:
            _, zphase = _overlap_ratio(bands[0], bands[1], k_idx, otf, (ky, kx), fy, fx, workers)
            sign = -1.0 if flip else 1.0
            phases[a] = zphase + sign * nominal
        sep = separate_bands(spectra, phases[a])
        mag, resid[a] = _overlap_ratio(sep[0], sep[1], k_idx, otf, (ky, kx), fy, fx, workers)
        mods[a] = min(2.0 * mag, 1.5)
        if progress is not None:
            progress(a + 1, n_angles)
    return SIMEstimate(SIMPattern(ks, phases, mods), corr, resid)


def _wavevector(b0: np.ndarray, b1: np.ndarray, side: np.ndarray, fy: np.ndarray,
                fx: np.ndarray, band: tuple[float, float], workers: int
                ) -> tuple[np.ndarray, float]:
    """Coarse wave vector from the side band's shifted DC peak (the most prominent one within
    its frequency ring), refined to sub-pixel precision by maximising the normalised band
    cross-correlation."""
    ny, nx = b0.shape
    r1 = sfft.ifft2(b1, workers=workers)
    fr = np.hypot(fy, fx)
    # Prominence of the shifted DC peak within its ring: |C1| divided by the ring's mean
    # |C1| (equalises the radial fall-off of the sample spectrum, the OTF and the noise).
    mag = np.abs(side)
    ring = np.rint(fr / max(float(fr[0, 1]) if fr.shape[1] > 1 else 1.0, 1e-12)).astype(int)
    means = np.bincount(ring.ravel(), mag.ravel()) / np.maximum(np.bincount(ring.ravel()), 1)
    score = mag / np.maximum(means[ring], 1e-300)
    score[(fr < band[0]) | (fr > band[1])] = 0.0
    norm0 = np.sqrt(np.sum(np.abs(b0) ** 2))

    def neg_cc(k: np.ndarray) -> float:
        shifted = shift_band(r1, (-k[0], -k[1]), workers=workers)  # B1(k + k0)
        return -float(np.abs(np.vdot(shifted, b0))) / (
            norm0 * np.sqrt(np.sum(np.abs(shifted) ** 2)) + 1e-300)

    if not np.any(score > 0):
        raise DataError(message("no candidate pattern frequency in the search range",
                                "a search_range overlapping the OTF support",
                                "Widen search_range (fractions of the OTF cutoff)."))
    iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
    start = np.array([(iy + ny // 2) % ny - ny // 2, (ix + nx // 2) % nx - nx // 2], float)

    res = optimize.minimize(neg_cc, start, method="Nelder-Mead",
                            options={"xatol": 1e-3, "fatol": 1e-9, "initial_simplex":
                                     np.array([start, start + [0.3, 0], start + [0, 0.3]])})
    k = np.asarray(res.x, dtype=np.float64)
    if np.hypot(*(k - start)) > 1.0:  # refinement wandered off the peak: keep the coarse one
        k = start
    return k, float(-neg_cc(k))


def _frame_phase(spec_w: np.ndarray, k_idx: np.ndarray, workers: int) -> float:
    """Wicker's phase of one frame: ``-arg sum_k X(k) conj(X(k + k0))``."""
    x = sfft.ifft2(spec_w, workers=workers)
    ny, nx = x.shape
    ramp_y = np.exp(-2j * np.pi * k_idx[0] * np.arange(ny) / ny)
    ramp_x = np.exp(-2j * np.pi * k_idx[1] * np.arange(nx) / nx)
    # sum_r |x|^2 e^{-2 pi i k0.r/N} = conj(sum_k X(k) conj(X(k + k0))) / N
    ac = np.sum(np.abs(x) ** 2 * ramp_y[:, None] * ramp_x[None, :])
    return float(np.mod(np.angle(ac), 2 * np.pi))


def _overlap_ratio(c0: np.ndarray, c1: np.ndarray, k_idx: np.ndarray, otf: RadialOTF,
                   k_um: tuple[float, float], fy: np.ndarray, fx: np.ndarray, workers: int
                   ) -> tuple[float, float]:
    """``z = sum B conj(A) / sum |A|^2`` over the common support: returns ``(|z|, arg z)``.

    ``A = C0(k) H(k + k0)``, ``B = C1(k + k0) H(k)``; noise-free ``B = (m/2) e^{i dphi} A``.
    """
    h = otf(np.hypot(fy, fx))
    h_shift = otf(np.hypot(fy + k_um[0], fx + k_um[1]))
    shifted = shift_band(sfft.ifft2(c1, workers=workers), (-k_idx[0], -k_idx[1]),
                         workers=workers)
    fr = np.hypot(fy, fx)
    mask = (h > 0.05) & (h_shift > 0.05) & (fr > 0.1 * otf.cutoff)
    if not np.any(mask):
        return 0.0, 0.0
    a = (c0 * h_shift)[mask]
    b = (shifted * h)[mask]
    z = np.vdot(a, b) / max(float(np.vdot(a, a).real), 1e-300)
    return float(np.abs(z)), float(np.angle(z))
