"""SIM pattern parameter estimation from the raw frames (frequency, angle, phases, modulation).

Robust to real data (fairSIM / HiFi-SIM style):

1. **preprocessing** (:func:`prepare_sim_frames`): background subtraction (given or a low
   percentile), repair of saturated and dead pixels (median of the neighbourhood), per-frame
   intensity normalisation within each orientation (laser and bleaching fluctuations would
   otherwise leak the order-0 band into the side bands), and an apodisation of the field
   edges towards the mean (no cross-shaped leakage in the DFT);
2. **band separation** with the nominal, equidistant phases;
3. **wave vector**: the cross-correlation of the separated order-0 and order-1 bands is
   computed for all integer shifts at once (one FFT); both bands are weighted by the
   measured spectral SNR of the data (so only frequencies that carry signal contribute,
   whatever the OTF model says) and notched around DC. The peak is searched in the annulus
   of frequencies the optics allow (``search_range`` x OTF cutoff), or around a user guess
   (``k_guess``), as the most prominent value relative to the median of its ring; when the
   orientations found independently are inconsistent (not ``180 / n`` degrees apart, or of
   different frequency) and ``geometry="regular"``, the most prominent peak anchors a
   narrow search of the others at the positions a standard acquisition implies. The peak
   is refined to sub-pixel precision by a parabolic fit followed by maximisation of the
   cross-correlation under exact Fourier shifts (fairSIM's ``fitPeak``);
4. **phases** of every frame from the autocorrelation of its spectrum at ``k0``
   (Wicker et al. 2013: non-iterative, no assumption on the phase steps), or, with
   ``phase_method="cross-correlation"``, the global phase of equidistant steps from the
   complex band-overlap ratio;
5. **modulation**: bands re-separated with the estimated phases; the ratio of the shifted
   order-1 band to the order-0 band over their common support with signal is
   ``(m/2) e^{i dphi}``;
6. **sanity checks** (:meth:`SIMEstimate.problems`): orientations ``180 / n`` degrees apart,
   equal frequencies, modulation above a floor, cross-correlation peak well above its
   ring's background.

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

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.fft as sfft
from scipy import ndimage, optimize

from fluorecon.core.dtypes import check_image_array
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.methods.classical.sim.bands import (
    check_frames,
    fade_to_mean,
    separate_bands,
    shift_band,
)
from fluorecon.methods.classical.sim.otf import RadialOTF
from fluorecon.simulate.sim import SIMPattern

__all__ = ["PreparedFrames", "SIMEstimate", "estimate_sim_parameters", "prepare_sim_frames"]

PhaseMethod = Literal["autocorrelation", "cross-correlation"]
Geometry = Literal["regular", "free"]


# -- preprocessing ------------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedFrames:
    """Raw SIM frames after preprocessing (see :func:`prepare_sim_frames`).

    Attributes
    ----------
    data : ndarray, shape (n_angles, n_phases, ny, nx)
        float64 frames, background subtracted, bad pixels repaired, each frame scaled to the
        mean intensity of its orientation.
    background : float
        The constant subtracted (input units).
    n_repaired : int
        Number of saturated / dead pixels replaced (all frames together).
    frame_scale : ndarray, shape (n_angles, n_phases)
        Factor applied to each frame (1 without normalisation).
    """

    data: np.ndarray
    background: float
    n_repaired: int
    frame_scale: np.ndarray

    @property
    def frames(self) -> np.ndarray:
        """The prepared frames as a ``(n_angles * n_phases, ny, nx)`` stack."""
        return self.data.reshape(-1, *self.data.shape[-2:])


def prepare_sim_frames(
    frames: Any,
    *,
    n_angles: int = 3,
    n_phases: int = 3,
    background: float | Literal["auto"] = 0.0,
    saturation: float | Literal["auto"] | None = "auto",
    normalize: bool = True,
) -> PreparedFrames:
    """Background subtraction, bad-pixel repair and per-frame normalisation of raw SIM frames.

    Parameters
    ----------
    frames : array_like, shape (n_angles * n_phases, ny, nx)
        Raw frames, angle-major (camera ADU or photons).
    n_angles, n_phases : int
        Acquisition scheme.
    background : float or "auto"
        Constant subtracted first (camera offset plus unmodulated background, input units);
        ``"auto"``: the 0.5th percentile of the valid pixels (the darkest regions).
    saturation : float, "auto" or None
        Pixels at or above this value are saturated (clipped by the camera) and repaired;
        ``"auto"``: the maximum of the input's integer dtype (none for float input).
        Pixels at or below 0 are repaired as dead when the data are otherwise positive
        (1st percentile > 0).
    normalize : bool
        Scale every frame so that its mean equals the mean of its orientation's frames.

    Returns
    -------
    PreparedFrames

    Notes
    -----
    Repaired pixels take the median of their 5 x 5 neighbourhood in the same frame: a
    saturated pixel would otherwise add a flat spectrum to every band, a dead one the same
    with the opposite sign. The normalisation assumes what the pattern guarantees: averaged
    over the field, ``1 + m cos(2 pi k0.r + phi)`` has the same mean for every phase (the
    sample's spectrum at ``k0`` is negligible against its DC term), so different means are
    illumination fluctuations or bleaching.
    """
    check_image_array(frames, name="SIM frames")
    raw_dtype = np.asarray(frames).dtype
    data = check_frames(frames, n_angles, n_phases)
    flat = data.reshape(-1, *data.shape[-2:])
    if saturation == "auto":
        sat = float(np.iinfo(raw_dtype).max) if np.issubdtype(raw_dtype, np.integer) else None
    else:
        sat = None if saturation is None else float(saturation)
    bad = np.zeros(flat.shape, dtype=bool)
    if sat is not None:
        bad |= flat >= sat
    if np.percentile(flat, 1.0) > 0:
        bad |= flat <= 0
    n_bad = int(bad.sum())
    if n_bad > 0.05 * bad.size:
        raise DataError(message(f"{n_bad} of {bad.size} pixels saturated or zero",
                                "at most 5 % bad pixels",
                                "Lower the exposure, or pass saturation=None."))
    if n_bad:
        flat = flat.copy()
        for i in np.nonzero(bad.any(axis=(1, 2)))[0]:
            med = ndimage.median_filter(flat[i], size=5, mode="reflect")
            flat[i][bad[i]] = med[bad[i]]
    if background == "auto":
        bg = float(np.percentile(flat[~bad], 0.5))
    elif isinstance(background, str):
        raise ConfigError(message(f"background={background!r}", "a number or 'auto'",
                                  "Pass the camera offset (input units) or 'auto'."))
    else:
        bg = float(background)
    data = flat.reshape(data.shape) - bg
    scale = np.ones((n_angles, n_phases))
    if normalize:
        means = data.mean(axis=(-2, -1))
        target = means.mean(axis=1, keepdims=True)
        if np.all(means > 0):
            scale = target / means
            data = data * scale[:, :, None, None]
    return PreparedFrames(data=data, background=bg, n_repaired=n_bad, frame_scale=scale)


# -- result ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SIMEstimate:
    """Estimated pattern parameters with the quality figures of each orientation.

    Attributes
    ----------
    pattern : SIMPattern
        Wave vectors (cycles/um), phases (rad) and modulation depths.
    correlation : ndarray, shape (n_angles,)
        Normalised peak cross-correlation ``|<C0, C1(k0)>| / (|C0| |C1(k0)|)`` of the
        SNR-weighted bands (0..1).
    residual_phase : ndarray, shape (n_angles,)
        Phase of the band-overlap ratio after separation with the estimated phases, radians
        (near 0 when the phases are consistent).
    peak_ratio : ndarray, shape (n_angles,)
        Height of the cross-correlation peak over the median of its ring (same ``|k|``):
        pure noise gives about 3-4 for the maximum over a 256 x 256 annulus; a pattern
        stands out well above.
    constrained : ndarray of bool, shape (n_angles,)
        Orientations located by the geometric prior (``geometry="regular"``) or the user's
        ``k_guess`` rather than by the free annulus search.
    background : float
        Background subtracted by the preprocessing (input units).
    n_repaired : int
        Saturated / dead pixels repaired by the preprocessing.
    """

    pattern: SIMPattern
    correlation: np.ndarray
    residual_phase: np.ndarray
    peak_ratio: np.ndarray = field(default_factory=lambda: np.full(0, np.inf))
    constrained: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    background: float = 0.0
    n_repaired: int = 0

    def problems(self, *, angle_tolerance: float = 2.0, frequency_tolerance: float = 0.02,
                 min_modulation: float = 0.1, min_peak_ratio: float = 3.0) -> list[str]:
        """Inconsistencies that flag a failed estimation (empty when all checks pass).

        Checks what a standard acquisition guarantees: orientations spaced by
        ``180 / n_angles`` degrees (within ``angle_tolerance``), one pattern frequency for all
        orientations (within ``frequency_tolerance``, relative), a modulation of at least
        ``min_modulation`` and a cross-correlation peak at least ``min_peak_ratio`` times
        the median of its ring (lower: the pattern is not distinguishable from noise).
        """
        out = []
        p = self.pattern
        if p.n_angles > 1:
            ang = np.sort(np.mod(np.degrees(p.angles), 180.0))
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
        if self.peak_ratio.size and np.any(self.peak_ratio < min_peak_ratio):
            out.append(f"cross-correlation peaks {np.round(self.peak_ratio, 1).tolist()} x "
                       f"background, below {min_peak_ratio} (pattern not above noise)")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {**self.pattern.to_dict(), "correlation": self.correlation.tolist(),
                "residual_phase_rad": self.residual_phase.tolist(),
                "peak_ratio": self.peak_ratio.tolist(),
                "constrained": self.constrained.tolist(), "background": self.background,
                "repaired_pixels": self.n_repaired, "problems": self.problems()}


# -- estimation -----------------------------------------------------------------------------
def _freq_grid(shape: tuple[int, int], pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    fy = np.fft.fftfreq(shape[0], d=pixel_size)
    fx = np.fft.fftfreq(shape[1], d=pixel_size)
    return fy[:, None], fx[None, :]


def _signed_index(i: int, n: int) -> int:
    return (i + n // 2) % n - n // 2


def estimate_sim_parameters(
    frames: Any,
    *,
    pixel_size: float,
    otf: RadialOTF,
    n_angles: int = 3,
    n_phases: int = 3,
    background: float | Literal["auto"] = 0.0,
    saturation: float | Literal["auto"] | None = "auto",
    normalize: bool = True,
    search_range: tuple[float, float] = (0.45, 1.05),
    k_guess: tuple[float, float] | None = None,
    guess_tolerance: tuple[float, float] = (0.05, 5.0),
    geometry: Geometry = "regular",
    phase_method: PhaseMethod = "autocorrelation",
    notch: float = 0.15,
    fade: int = 15,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> SIMEstimate:
    """Estimate the illumination of a 2D SIM acquisition from its raw frames.

    Parameters
    ----------
    frames : array_like, shape (n_angles * n_phases, ny, nx)
        Raw frames, angle-major; camera ADU or photons.
    pixel_size : float
        Camera pixel size in the sample plane, micrometres.
    otf : RadialOTF
        Detection OTF (its cutoff bounds the frequency search).
    n_angles, n_phases : int
        Acquisition scheme (3 x 3, or 3 x 5).
    background, saturation, normalize
        Preprocessing, see :func:`prepare_sim_frames`.
    search_range : (float, float)
        Annulus searched for the pattern frequency, as fractions of the OTF cutoff
        ``2 NA / lambda`` (TIRF-SIM and 2-beam SIM put it at 0.7-1.0).
    k_guess : (float, float), optional
        Rough pattern ``(period_um, angle_deg)`` of one orientation (e.g. from the
        instrument's calibration); the orientations are searched at that angle and
        ``180 / n_angles`` degrees apart, each frame triplet taking the window where its
        peak is strongest.
    guess_tolerance : (float, float)
        Search window around ``k_guess`` (and around the geometric prediction): relative
        frequency and degrees.
    geometry : {"regular", "free"}
        ``"regular"``: when the independent searches disagree with a standard acquisition
        (equal frequencies, orientations ``180 / n_angles`` apart), re-search the weaker
        orientations where the most prominent one predicts them. ``"free"``: never.
    phase_method : {"autocorrelation", "cross-correlation"}
        Per-frame phases (Wicker 2013) or the global phase of equidistant steps (fairSIM).
    notch : float
        Width (sigma) of the Gaussian notch around DC in the estimation, as a fraction of
        the OTF cutoff (suppresses the residual order-0 leakage and out-of-focus light).
    fade : int
        Width in pixels of the border apodisation applied before the FFT.
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

    .. math:: cc(\\mathbf s) = \\sum_k W(k) C_0(k)\\, \\overline{W(k + s) C_1(k + s)}

    peaks at ``s = k0``; it is evaluated for all integer ``s`` as the inverse FFT of
    ``c_0(r) conj(c_1(r))``. The weight ``W = N(k) SNR(|k|) / (1 + SNR(|k|))`` is the
    Wiener factor of the order-0 band's measured radial SNR (signal power over the noise
    floor measured beyond the OTF cutoff) times the DC notch ``N``; unlike a weight by the
    OTF model it ignores frequencies where the model promises signal but the data carry
    only noise. The per-frame phase is
    ``phi_p = -arg sum_k D_p(k) W(k) conj(D_p(k + k0) W(k + k0))``, whose dominant term is
    ``(m/2) e^{-i phi_p} sum |S H W|^2``.
    """
    if phase_method not in ("autocorrelation", "cross-correlation"):
        raise ConfigError(message(f"phase_method={phase_method!r}",
                                  "'autocorrelation' or 'cross-correlation'",
                                  "Use the default."))
    if geometry not in ("regular", "free"):
        raise ConfigError(message(f"geometry={geometry!r}", "'regular' or 'free'",
                                  "Use the default."))
    lo, hi = search_range
    if not 0 < lo < hi:
        raise ConfigError(message(f"search_range={search_range}", "0 < low < high",
                                  "Use e.g. (0.45, 1.05) (fractions of the OTF cutoff)."))
    if not 0 < notch < 1 or guess_tolerance[0] <= 0 or guess_tolerance[1] <= 0:
        raise ConfigError(message(f"notch={notch}, guess_tolerance={guess_tolerance}",
                                  "0 < notch < 1 and positive tolerances",
                                  "Use the defaults (0.15, (0.05, 5.0))."))
    if k_guess is not None and not (k_guess[0] > 0 and np.isfinite(k_guess[1])):
        raise ConfigError(message(f"k_guess={k_guess}", "(period_um > 0, angle_deg)",
                                  "Pass the rough pattern period in um and its angle."))
    prep = prepare_sim_frames(frames, n_angles=n_angles, n_phases=n_phases,
                              background=background, saturation=saturation,
                              normalize=normalize)
    data = prep.data
    ny, nx = data.shape[-2:]
    fy, fx = _freq_grid((ny, nx), pixel_size)
    fr = np.hypot(fy, fx)
    if otf.cutoff * lo >= 0.5 / pixel_size:
        raise DataError(message(
            f"an OTF cutoff of {otf.cutoff:.3g} cycles/um with {pixel_size} um pixels",
            "a pattern frequency below the Nyquist frequency of the raw frames",
            "Check --pixel-size and the OTF (NA, wavelength)."))
    nominal = 2 * np.pi * np.arange(n_phases) / n_phases
    spectra_all = sfft.fft2(fade_to_mean(data, fade), axes=(-2, -1), workers=workers)
    bands_all = np.stack([separate_bands(spectra_all[a], nominal) for a in range(n_angles)])
    snr_w = _snr_weight(bands_all[:, 0], fr, otf.cutoff)
    weight = snr_w(fr) * (1.0 - np.exp(-0.5 * (fr / (notch * otf.cutoff)) ** 2))
    weight[fr >= otf.cutoff] = 0.0

    # Coarse maps (score = |cc| / ring median) for every orientation.
    df = 1.0 / (max(ny, nx) * pixel_size)
    ring = np.rint(fr / df).astype(int)
    maps, scores, rcs = [], [], []
    for a in range(n_angles):
        b0w = bands_all[a, 0] * weight
        b1w = bands_all[a, 1] * weight
        # Unequal phase steps or intensity changes leak the order-0 band into the side band
        # (C1 + eps C0); the leak correlates with C0 at every shift along the sample's straight
        # edges. Remove the component of C1 along C0 (the true C1 is nearly orthogonal).
        b1w = b1w - np.vdot(b0w, b1w) / max(float(np.vdot(b0w, b0w).real), 1e-300) * b0w
        r0 = sfft.ifft2(b0w, workers=workers)
        r1 = sfft.ifft2(b1w, workers=workers)
        cc = np.abs(sfft.ifft2(r0 * np.conj(r1), workers=workers))
        labels = np.arange(ring.max() + 1)
        med = np.asarray(ndimage.median(cc, labels=ring, index=labels), dtype=np.float64)
        maps.append(cc)
        scores.append(cc / np.maximum(med[ring], 1e-300))
        rcs.append((r0, r1))
    ks_idx, ratios, constrained = _locate(scores, fy, fx, otf.cutoff * lo, otf.cutoff * hi,
                                          k_guess, guess_tolerance, geometry, n_angles)

    ks = np.empty((n_angles, 2))
    phases = np.empty((n_angles, n_phases))
    mods = np.empty(n_angles)
    corr = np.empty(n_angles)
    resid = np.empty(n_angles)
    for a in range(n_angles):
        k_idx, corr[a] = _refine(maps[a], ks_idx[a], bands_all[a, 0] * weight, rcs[a][1],
                                 workers)
        bands = bands_all[a]
        spectra = spectra_all[a]
        ky, kx = k_idx[0] / (ny * pixel_size), k_idx[1] / (nx * pixel_size)
        ang = np.arctan2(ky, kx)
        if ang < 0 or ang >= np.pi:
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
                phases[a, p] = _frame_phase(spectra[p] * weight, k_idx, workers)
        else:
            _, zphase = _overlap_ratio(bands[0], bands[1], k_idx, otf, snr_w, (ky, kx), fy, fx,
                                       notch, workers)
            sign = -1.0 if flip else 1.0
            phases[a] = zphase + sign * nominal
        sep = separate_bands(spectra, phases[a])
        mag, resid[a] = _overlap_ratio(sep[0], sep[1], k_idx, otf, snr_w, (ky, kx), fy, fx,
                                       notch, workers)
        mods[a] = min(2.0 * mag, 1.5)
        if progress is not None:
            progress(a + 1, n_angles)
    return SIMEstimate(SIMPattern(ks, phases, mods), corr, resid, np.asarray(ratios),
                       np.asarray(constrained, dtype=bool), prep.background, prep.n_repaired)


def _snr_weight(band0: np.ndarray, fr: np.ndarray, cutoff: float
                ) -> Callable[[np.ndarray], np.ndarray]:
    """Radial Wiener factor ``SNR / (1 + SNR)`` of the order-0 bands (all orientations).

    The noise floor is the mean power beyond the OTF cutoff (only noise there); without
    such a region (cutoff at or above Nyquist in every direction) the lowest ring mean.
    """
    power = np.mean(np.abs(band0) ** 2, axis=0)
    df = float(np.min(fr[fr > 0]))
    ring = np.rint(fr / df).astype(int)
    prof = np.bincount(ring.ravel(), power.ravel()) / np.maximum(np.bincount(ring.ravel()), 1)
    outside = fr > 1.05 * cutoff
    noise = float(power[outside].mean()) if np.count_nonzero(outside) >= 64 \
        else float(np.min(prof[1:]))
    # Smooth the profile over 5 rings so the factor follows the trend, not ring noise.
    smooth = np.convolve(prof, np.ones(5) / 5, mode="same")
    snr = np.clip(smooth / max(noise, 1e-300) - 1.0, 0.0, None)
    wiener = snr / (1.0 + snr)
    radii = np.arange(prof.size) * df

    def evaluate(f: np.ndarray) -> np.ndarray:
        return np.interp(f, radii, wiener, right=0.0)

    return evaluate


def _peak_in(score: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    if not np.any(mask):
        return np.zeros(2), 0.0
    masked = np.where(mask, score, 0.0)
    iy, ix = np.unravel_index(int(np.argmax(masked)), masked.shape)
    ny, nx = score.shape
    return np.array([_signed_index(int(iy), ny), _signed_index(int(ix), nx)], float), \
        float(masked[iy, ix])


def _locate(scores: list[np.ndarray], fy: np.ndarray, fx: np.ndarray, f_lo: float, f_hi: float,
            k_guess: tuple[float, float] | None, tol: tuple[float, float], geometry: Geometry,
            n_angles: int) -> tuple[list[np.ndarray], list[float], list[bool]]:
    """Integer-grid pattern peak of every orientation (free, guided or geometric search)."""
    ny, nx = scores[0].shape
    # Frequencies of the shift grid s (cycles/um) equal those of the spectrum grid.
    fs = np.hypot(fy, fx)
    ang = np.mod(np.degrees(np.arctan2(fy, fx)), 180.0)
    step = 180.0 / n_angles

    def window(f0: float, a0: float) -> np.ndarray:
        d = np.abs(np.mod(ang - a0 + 90.0, 180.0) - 90.0)
        return (np.abs(fs - f0) <= tol[0] * f0) & (d <= tol[1])

    def k_of(idx: np.ndarray) -> tuple[float, float]:
        f = float(np.hypot(fy[int(idx[0]) % ny, 0], fx[0, int(idx[1]) % nx]))
        a = float(np.mod(np.degrees(np.arctan2(fy[int(idx[0]) % ny, 0],
                                               fx[0, int(idx[1]) % nx])), 180.0))
        return f, a

    def assign(f0: float, a0: float, fixed: dict[int, int]) -> tuple[float, list, list]:
        """Best assignment of orientations to the windows ``a0 + j step`` (j fixed for
        the orientations in ``fixed``); returns total score, peaks, ratios."""
        free = [a for a in range(n_angles) if a not in fixed]
        slots = [j for j in range(n_angles) if j not in fixed.values()]
        wins = {j: window(f0, a0 + j * step) for j in range(n_angles)}
        best: tuple[float, list, list] = (-1.0, [], [])
        for perm in itertools.permutations(slots, len(free)):
            js = dict(fixed)
            js.update(zip(free, perm))
            found = [_peak_in(scores[a], wins[js[a]]) for a in range(n_angles)]
            total = sum(r for _, r in found)
            if total > best[0]:
                best = (total, [k for k, _ in found], [r for _, r in found])
        return best

    annulus = (fs >= f_lo) & (fs <= f_hi)
    if k_guess is not None:
        # The guess fixes the set of orientations {angle + j step}; which frames belong to
        # which orientation is left to the data (the best assignment).
        _, peaks, ratios = assign(1.0 / k_guess[0], float(np.mod(k_guess[1], 180.0)), {})
        return peaks, ratios, [True] * n_angles
    free = [_peak_in(s, annulus) for s in scores]
    peaks = [k for k, _ in free]
    ratios = [r for _, r in free]
    if not any(r > 0 for r in ratios):
        raise DataError(message("no candidate pattern frequency in the search range",
                                "a search_range overlapping the OTF support",
                                "Widen search_range (fractions of the OTF cutoff)."))
    if geometry == "free" or n_angles == 1 or _consistent(peaks, k_of, step, tol):
        return peaks, ratios, [False] * n_angles
    # Anchor on the most prominent orientation and re-search the others where a standard
    # acquisition puts them (its frequency, orientations step degrees apart).
    anchor = int(np.argmax(ratios))
    f0, a0 = k_of(peaks[anchor])
    _, gpeaks, gratios = assign(f0, a0, {anchor: 0})
    moved = [not np.array_equal(gpeaks[a], peaks[a]) for a in range(n_angles)]
    return gpeaks, gratios, moved


def _consistent(peaks: list[np.ndarray], k_of: Callable[[np.ndarray], tuple[float, float]],
                step: float, tol: tuple[float, float]) -> bool:
    fa = [k_of(p) for p in peaks]
    freqs = np.array([f for f, _ in fa])
    if np.ptp(freqs) > tol[0] * float(np.mean(freqs)):
        return False
    angs = np.sort([a for _, a in fa])
    gaps = np.diff(np.concatenate([angs, angs[:1] + 180.0]))
    return bool(np.max(np.abs(gaps - step)) <= tol[1])


def _refine(cc: np.ndarray, start: np.ndarray, b0w: np.ndarray, r1w: np.ndarray,
            workers: int) -> tuple[np.ndarray, float]:
    """Sub-pixel peak: parabolic fit of ``|cc|`` around the integer peak, then maximisation
    of the normalised band cross-correlation under exact Fourier shifts (fairSIM)."""
    ny, nx = cc.shape
    iy, ix = int(start[0]) % ny, int(start[1]) % nx
    c = cc[iy, ix]
    offs = []
    for lo_v, hi_v in ((cc[(iy - 1) % ny, ix], cc[(iy + 1) % ny, ix]),
                       (cc[iy, (ix - 1) % nx], cc[iy, (ix + 1) % nx])):
        den = lo_v - 2 * c + hi_v
        offs.append(float(np.clip(0.5 * (lo_v - hi_v) / den, -0.5, 0.5)) if den < 0 else 0.0)
    guess = start + np.array(offs)
    norm0 = np.sqrt(np.sum(np.abs(b0w) ** 2))

    def neg_cc(k: np.ndarray) -> float:
        shifted = shift_band(r1w, (-k[0], -k[1]), workers=workers)  # C1 W (k + k0)
        return -float(np.abs(np.vdot(shifted, b0w))) / (
            norm0 * np.sqrt(np.sum(np.abs(shifted) ** 2)) + 1e-300)

    res = optimize.minimize(neg_cc, guess, method="Nelder-Mead",
                            options={"xatol": 1e-3, "fatol": 1e-10, "initial_simplex":
                                     np.array([guess, guess + [0.25, 0], guess + [0, 0.25]])})
    k = np.asarray(res.x, dtype=np.float64)
    if np.hypot(*(k - start)) > 1.0:  # refinement wandered off the peak: keep the parabola
        k = guess
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
                   snr_w: Callable[[np.ndarray], np.ndarray], k_um: tuple[float, float],
                   fy: np.ndarray, fx: np.ndarray, notch: float, workers: int
                   ) -> tuple[float, float]:
    """``z = sum B conj(A) / sum |A|^2`` over the common support with signal.

    ``A = C0(k) H(k + k0)``, ``B = C1(k + k0) H(k)``; noise-free ``B = (m/2) e^{i dphi} A``.
    Frequencies where either band's SNR is low are left out (noise in ``A`` would bias
    ``|z|`` low), as is the notch region around DC (out-of-focus light, residual leakage).
    """
    fr = np.hypot(fy, fx)
    fr_s = np.hypot(fy + k_um[0], fx + k_um[1])
    h = otf(fr)
    h_shift = otf(fr_s)
    shifted = shift_band(sfft.ifft2(c1, workers=workers), (-k_idx[0], -k_idx[1]),
                         workers=workers)
    mask = (h > 0.02) & (h_shift > 0.02) & (fr > 2 * notch * otf.cutoff) \
        & (snr_w(fr) > 0.5) & (snr_w(fr_s) > 0.5)
    if np.count_nonzero(mask) < 8:
        mask = (h > 0.05) & (h_shift > 0.05) & (fr > 0.1 * otf.cutoff)
    if not np.any(mask):
        return 0.0, 0.0
    a = (c0 * h_shift)[mask]
    b = (shifted * h)[mask]
    z = np.vdot(a, b) / max(float(np.vdot(a, a).real), 1e-300)
    return float(np.abs(z)), float(np.angle(z))
