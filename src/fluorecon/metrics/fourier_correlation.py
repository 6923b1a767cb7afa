"""Fourier ring / shell correlation (FRC in 2D, FSC in 3D) and its single-image variant.

FRC measures, frequency by frequency, how well two independent measurements of the same
object agree; the frequency where agreement drops below a threshold is an image-based
resolution estimate that needs no ground truth (Banterle et al. 2013, Nieuwenhuizen et
al. 2013). :func:`frc` takes two independent images (two acquisitions, two reconstructions
from independent halves of the data); :func:`single_image_frc` splits one image into
pixel sub-lattices (Koho et al. 2019).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.metrics.fidelity import check_pair

Window = Literal["tukey", "hann", "none"]

#: Smallest size along any axis accepted for FRC/FSC.
MIN_SIZE = 8

#: Rings with fewer Fourier samples are not used to locate threshold crossings: their
#: correlation fluctuates by about ``1/sqrt(n) > 0.25`` (2D rings 1-2 hold 4-12 samples).
MIN_RING_SAMPLES = 16


@dataclass(frozen=True, eq=False)
class FRCResult:
    """A Fourier ring (2D) or shell (3D) correlation curve and the resolutions read from it.

    Attributes
    ----------
    frequencies : ndarray, shape (n_bins,)
        Centre of each ring, in cycles per unit of ``spacing`` (cycles/pixel when the spacing
        is 1; cycles/micrometre for spacing in micrometres). Ring ``k`` holds the Fourier
        samples with ``|f|`` in ``[(k - 1/2) df, (k + 1/2) df)``.
    correlation : ndarray, shape (n_bins,)
        :math:`\\mathrm{FRC}_k`; NaN where a ring has no power.
    n_per_bin : ndarray of int, shape (n_bins,)
        Number of Fourier samples (of the full, not half, spectrum) in each ring.
    threshold_1_7 : ndarray, shape (n_bins,)
        The fixed 1/7 threshold, as a curve for plotting.
    threshold_half_bit : ndarray, shape (n_bins,)
        The half-bit threshold of van Heel & Schatz (2005) for each ring's sample count.
    resolution_1_7, resolution_half_bit : float
        ``1 / f`` at the first downward crossing of each threshold, in units of
        ``spacing``, searched upward from the first ring with at least
        ``MIN_RING_SAMPLES`` (16) Fourier samples; ``inf`` if the curve is already below
        the threshold there (no correlated detail beyond the lowest frequencies); NaN if
        it never drops below it (resolution finer than the sampling can show, i.e. at most
        ``1 / frequencies[-1]``).
    spacing : tuple of float
        Pixel size along each axis the frequencies refer to.
    """

    frequencies: np.ndarray
    correlation: np.ndarray
    n_per_bin: np.ndarray
    threshold_1_7: np.ndarray
    threshold_half_bit: np.ndarray
    resolution_1_7: float
    resolution_half_bit: float
    spacing: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """Lists and floats (NaN/inf kept as floats; ``json.dumps`` writes them as
        ``NaN``/``Infinity``)."""
        return {
            "frequencies": self.frequencies.tolist(),
            "correlation": self.correlation.tolist(),
            "n_per_bin": self.n_per_bin.tolist(),
            "threshold_1_7": self.threshold_1_7.tolist(),
            "threshold_half_bit": self.threshold_half_bit.tolist(),
            "resolution_1_7": float(self.resolution_1_7),
            "resolution_half_bit": float(self.resolution_half_bit),
            "spacing": list(self.spacing),
        }


def frc(
    image1: Any,
    image2: Any,
    *,
    spacing: float | Sequence[float] | None = None,
    n_bins: int | None = None,
    window: Window = "tukey",
    tukey_alpha: float = 0.25,
    max_frequency: float | None = None,
) -> FRCResult:
    """Fourier ring (2D) or shell (3D) correlation of two independent images.

    Parameters
    ----------
    image1, image2 : array-like, shape (Y, X) or (Z, Y, X)
        Two independent measurements of the same field of view (same shape, finite).
    spacing : float or sequence of float, optional
        Pixel size per axis (e.g. micrometres), or one number for all axes. Default 1:
        frequencies in cycles/pixel and resolutions in pixels.
    n_bins : int, optional
        Number of rings from 0 to ``max_frequency`` (at least 3). The default, and the
        largest allowed, makes rings as thin as the coarsest Fourier sampling step
        ``max_i 1 / (N_i d_i)`` so that no ring is empty (``N/2 + 1`` rings for a square
        image of even size ``N``).
    window : {"tukey", "hann", "none"}
        Separable apodisation applied (after subtracting each image's mean) to suppress
        the cross-shaped edge artefacts of the periodic DFT.
    tukey_alpha : float
        Fraction of each axis tapered by the Tukey window (0 = box, 1 = Hann).
    max_frequency : float, optional
        Highest ring centre in cycles per unit. Default: the smallest Nyquist frequency of
        the axes, so that every shell is complete. For anisotropic voxels (e.g. Z spacing
        3x the lateral one) this stops at the axial Nyquist; a larger value (up to the
        largest Nyquist) adds shells that contain only the directions sampled finely
        enough, so their correlation describes lateral detail.

    Returns
    -------
    FRCResult

    Raises
    ------
    DataError
        Shapes differ, not 2D/3D, an axis shorter than 8 pixels, NaN/infinite values.
    ConfigError
        Invalid ``spacing``, ``n_bins``, ``window`` or ``max_frequency``.

    Notes
    -----
    With :math:`F_1, F_2` the DFTs of the apodised, mean-subtracted images and ring
    :math:`R_k`,

    .. math::

        \\mathrm{FRC}_k = \\frac{\\sum_{f \\in R_k} \\mathrm{Re}\\, F_1(f) F_2^*(f)}
        {\\sqrt{\\sum_{f \\in R_k} |F_1(f)|^2 \\sum_{f \\in R_k} |F_2(f)|^2}} .

    Frequencies are physical, :math:`f_i = k_i / (N_i d_i)`, so rectangular images and
    anisotropic pixels are binned on the same physical radius. For independent noise
    :math:`\\mathrm{FRC} \\approx \\mathrm{SNR}/(1 + \\mathrm{SNR})` per ring. The half-bit
    threshold for a ring of :math:`n` samples is

    .. math::

        T_{1/2}(n) = \\frac{0.2071 + 1.9102 / \\sqrt{n}}{1.2071 + 0.9102 / \\sqrt{n}}

    (van Heel & Schatz 2005); the 1/7 threshold is fixed. The crossing is the first
    downward one, searched from the first ring with at least 16 samples (ring 0 holds
    the mean, removed here; in 2D rings 1-2 hold only 4-12 samples, whose correlation is
    mostly noise) and located by linear interpolation of ``correlation - threshold``
    between the rings on either side. For independent pure noise the curve fluctuates
    around 0 with standard deviation about :math:`1/\\sqrt{n}`, so the fixed 1/7 threshold
    can report a spurious crossing at low frequencies (a resolution of a sizeable
    fraction of the field of view); the half-bit threshold, which grows for small
    :math:`n`, rarely does.
    Rings near the origin hold few samples and fluctuate strongly; apodisation makes
    neighbouring rings correlated, and the sample counts used for the half-bit curve are
    the nominal ones (not reduced for apodisation). The real-input FFT (``rfftn``) is used
    with each non-redundant sample counted twice.

    References
    ----------
    .. [1] M. van Heel, M. Schatz, "Fourier shell correlation threshold criteria",
       J. Struct. Biol. 151, 250-262 (2005).
    .. [2] R. P. J. Nieuwenhuizen et al., "Measuring image resolution in optical
       nanoscopy", Nature Methods 10, 557-562 (2013).
    .. [3] N. Banterle et al., "Fourier ring correlation as a resolution criterion for
       super-resolution microscopy", J. Struct. Biol. 183, 363-367 (2013).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.normal(size=(64, 64))
    >>> res = frc(signal + 0.1 * rng.normal(size=(64, 64)),
    ...           signal + 0.1 * rng.normal(size=(64, 64)))
    >>> bool(np.nanmin(res.correlation[1:]) > 0.9), res.resolution_1_7
    (True, nan)
    """
    a, b = check_pair(image1, image2)
    _check_shape(a.shape)
    sp = _spacing(spacing, a.ndim)
    win = _window(a.shape, window, tukey_alpha)
    fa = _spectrum(a, win)
    fb = _spectrum(b, win)
    return _ring_correlation([(fa, fb)], a.shape, sp, n_bins, max_frequency)


def single_image_frc(
    image: Any,
    *,
    spacing: float | Sequence[float] | None = None,
    n_bins: int | None = None,
    window: Window = "tukey",
    tukey_alpha: float = 0.25,
) -> FRCResult:
    """Resolution from one image by correlating its diagonal pixel sub-lattices.

    The image (cropped to even sizes) is split into the :math:`2^d` sub-images
    ``image[o_0::2, o_1::2, ...]`` with offsets :math:`o \\in \\{0, 1\\}^d`. Each sub-image
    is paired with the one at the opposite offset :math:`1 - o` (the checkerboard /
    diagonal split of Koho et al. 2019); both members of a pair see the same object but,
    for pixel-independent noise (shot and read noise), independent noise. The ring
    correlations of the :math:`2^{d-1}` pairs are pooled (numerators and denominators
    summed).

    Parameters
    ----------
    image : array-like, shape (Y, X) or (Z, Y, X)
        One image with pixel-independent noise. At least 16 pixels per axis.
    spacing, n_bins, window, tukey_alpha
        As in :func:`frc`; ``spacing`` is the pixel size of ``image`` (sub-images have
        twice that, which the result accounts for).

    Returns
    -------
    FRCResult
        Frequencies in cycles per unit of ``spacing``, up to the sub-images' Nyquist
        frequency :math:`1/(4 d)`, half the image's own.

    Notes
    -----
    The two members of a pair are offset by one pixel along every axis, a shift of half a
    sub-image pixel, which multiplies their cross-spectrum by
    :math:`e^{2\\pi i f \\cdot s}` and would make the raw correlation fall off as
    :math:`\\cos(2\\pi f \\cdot s)`. Koho et al. correct this with an empirical calibration
    curve; here the known shift is undone exactly in Fourier space (a phase ramp on the
    second member) before correlating. This is exact for object content below the
    sub-images' Nyquist frequency, which is also the highest resolution the split can
    report (about 4 pixels); content above it aliases and decorrelates. Correlated noise
    (e.g. after interpolation, deconvolution, or denoising) makes the estimate
    optimistic, as it does for every single-image FRC.

    References
    ----------
    .. [1] S. Koho et al., "Fourier ring correlation simplifies image restoration in
       fluorescence microscopy", Nature Communications 10, 3103 (2019).
    """
    check_image_array(image, name="image", finite=True)
    x = as_float32(image)
    if x.ndim not in (2, 3) or min(x.shape) < 2 * MIN_SIZE:
        raise DataError(message(f"an image of shape {x.shape}",
                                f"a 2D or 3D image with at least {2 * MIN_SIZE} pixels per "
                                "axis", "Use a larger field of view."))
    even = tuple(s - s % 2 for s in x.shape)
    x = x[tuple(slice(0, s) for s in even)]
    sp = _spacing(spacing, x.ndim)
    sub_shape = tuple(s // 2 for s in even)
    sub_sp = tuple(2.0 * d for d in sp)
    win = _window(sub_shape, window, tukey_alpha)
    pairs = []
    seen: set[tuple[int, ...]] = set()
    for offset in itertools.product((0, 1), repeat=x.ndim):
        partner = tuple(1 - o for o in offset)
        if partner in seen:
            continue
        seen.add(offset)
        s1 = x[tuple(slice(o, None, 2) for o in offset)]
        s2 = x[tuple(slice(o, None, 2) for o in partner)]
        f1 = _spectrum(s1, win)
        f2 = _spectrum(s2, win)
        # s2[j] = s1's object at j + delta sub-image pixels, delta = (partner - offset) / 2,
        # so F2 = exp(+2 pi i k.delta / N) F1 for the object; multiply by the conjugate ramp.
        delta = tuple(0.5 * (p - o) for o, p in zip(offset, partner))
        f2 = f2 * _phase_ramp(sub_shape, tuple(-d for d in delta))
        pairs.append((f1, f2))
    return _ring_correlation(pairs, sub_shape, sub_sp, n_bins, None)


# -- internals ---------------------------------------------------------------------------
def half_bit_threshold(n: np.ndarray) -> np.ndarray:
    """Van Heel & Schatz (2005) half-bit threshold for rings of ``n`` samples (NaN at 0)."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(n > 0, 1.0 / np.sqrt(np.where(n > 0, n, 1.0)), np.nan)
    return (0.2071 + 1.9102 * inv) / (1.2071 + 0.9102 * inv)


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) not in (2, 3) or min(shape) < MIN_SIZE:
        raise DataError(message(f"images of shape {shape}",
                                f"2D (YX) or 3D (ZYX) images with at least {MIN_SIZE} pixels "
                                "per axis", "Loop over channels/time points yourself and "
                                "pass one 2D or 3D image pair at a time."))


def _spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing):
        values = (float(spacing),) * ndim  # type: ignore[arg-type]
    else:
        values = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    if len(values) != ndim or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(message(f"spacing={spacing!r}",
                                  f"one positive pixel size or {ndim} of them (one per axis)",
                                  "Pass e.g. spacing=(0.3, 0.1, 0.1) for ZYX in micrometres."))
    return values


def _window(shape: tuple[int, ...], window: str, alpha: float) -> np.ndarray | None:
    from scipy.signal import windows

    if window == "none":
        return None
    if window not in ("tukey", "hann"):
        raise ConfigError(message(f"window={window!r}", "'tukey', 'hann' or 'none'",
                                  "Pick one of those."))
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(message(f"tukey_alpha={alpha}", "a value in [0, 1]",
                                  "0.25 tapers a quarter of each axis."))
    w = np.ones((), dtype=np.float32)
    for n in shape:
        w1 = windows.tukey(n, alpha) if window == "tukey" else windows.hann(n)
        w = np.multiply.outer(w, w1.astype(np.float32))
    return w


def _spectrum(x: np.ndarray, win: np.ndarray | None) -> np.ndarray:
    import scipy.fft

    xc = x - np.float32(x.mean(dtype=np.float64))
    if win is not None:
        xc = xc * win
    return scipy.fft.rfftn(xc)


def _phase_ramp(shape: tuple[int, ...], shift: tuple[float, ...]) -> np.ndarray:
    """``exp(2 pi i sum_j k_j shift_j / N_j)`` on the rfftn grid (shift in pixels)."""
    phase = np.zeros((), dtype=np.float64)
    for ax, (n, s) in enumerate(zip(shape, shift)):
        k = np.fft.rfftfreq(n) if ax == len(shape) - 1 else np.fft.fftfreq(n)
        phase = np.add.outer(phase, 2.0 * np.pi * k * s)
    return np.exp(1j * phase).astype(np.complex64)


def _ring_correlation(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    n_bins: int | None,
    max_frequency: float | None,
) -> FRCResult:
    nyquist = [(n // 2) / (n * d) for n, d in zip(shape, spacing)]
    step = max(1.0 / (n * d) for n, d in zip(shape, spacing))
    if max_frequency is None:
        f_max = min(nyquist)
    else:
        f_max = float(max_frequency)
        if not (math.isfinite(f_max) and step * 2 <= f_max <= max(nyquist) * (1 + 1e-9)):
            raise ConfigError(message(f"max_frequency={max_frequency}",
                                      f"a frequency in [{2 * step:.4g}, {max(nyquist):.4g}] "
                                      "cycles per unit", "Leave it unset for the smallest "
                                      "Nyquist frequency."))
    n_max = int(math.floor(f_max / step + 1e-9)) + 1
    if n_bins is None:
        n_bins = n_max
    elif not 3 <= int(n_bins) <= n_max:
        raise ConfigError(message(f"n_bins={n_bins}", f"3 to {n_max} rings for this image",
                                  "More rings than Fourier samples per radius leaves rings "
                                  "empty; leave n_bins unset."))
    n_bins = int(n_bins)
    df = f_max / (n_bins - 1)

    # physical frequency of each rfftn sample, built slab by slab along axis 0
    freqs = [np.fft.fftfreq(n, d) for n, d in zip(shape[:-1], spacing[:-1])]
    freqs.append(np.fft.rfftfreq(shape[-1], spacing[-1]))
    nlast = shape[-1]
    weight_last = np.full(freqs[-1].shape, 2.0)
    weight_last[0] = 1.0
    if nlast % 2 == 0:
        weight_last[-1] = 1.0
    rest2 = np.zeros((), dtype=np.float64)
    for f in freqs[1:]:
        rest2 = np.add.outer(rest2, f * f)
    weights_rest = np.broadcast_to(weight_last, rest2.shape).reshape(-1)

    num = np.zeros(n_bins)
    den1 = np.zeros(n_bins)
    den2 = np.zeros(n_bins)
    count = np.zeros(n_bins)
    rows_per_slab = max(1, (1 << 20) // max(1, rest2.size))
    for start in range(0, shape[0], rows_per_slab):
        stop = min(shape[0], start + rows_per_slab)
        f0 = freqs[0][start:stop]
        radius = np.sqrt(np.add.outer(f0 * f0, rest2)).reshape(-1)
        idx = np.rint(radius / df).astype(np.int64)
        keep = idx < n_bins
        idx = idx[keep]
        w = np.tile(weights_rest, stop - start)[keep]
        count += np.bincount(idx, weights=w, minlength=n_bins)
        for f1, f2 in pairs:
            s1 = f1[start:stop].reshape(-1)[keep]
            s2 = f2[start:stop].reshape(-1)[keep]
            cross = s1.real.astype(np.float64) * s2.real + s1.imag.astype(np.float64) * s2.imag
            num += np.bincount(idx, weights=w * cross, minlength=n_bins)
            den1 += np.bincount(idx, weights=w * _abs2(s1), minlength=n_bins)
            den2 += np.bincount(idx, weights=w * _abs2(s2), minlength=n_bins)
    denom = np.sqrt(den1 * den2)
    corr = np.full(n_bins, np.nan)
    np.divide(num, denom, out=corr, where=denom > 0)
    n_per_bin = np.rint(count).astype(np.int64)
    freq_centres = np.arange(n_bins) * df
    thr7 = np.full(n_bins, 1.0 / 7.0)
    thr_hb = half_bit_threshold(n_per_bin)
    for arr in (freq_centres, corr, n_per_bin, thr7, thr_hb):
        arr.setflags(write=False)
    return FRCResult(
        frequencies=freq_centres,
        correlation=corr,
        n_per_bin=n_per_bin,
        threshold_1_7=thr7,
        threshold_half_bit=thr_hb,
        resolution_1_7=_resolution(freq_centres, corr, thr7, n_per_bin),
        resolution_half_bit=_resolution(freq_centres, corr, thr_hb, n_per_bin),
        spacing=tuple(spacing),
    )


def _abs2(s: np.ndarray) -> np.ndarray:
    re = s.real.astype(np.float64)
    im = s.imag.astype(np.float64)
    return re * re + im * im


def _resolution(freqs: np.ndarray, corr: np.ndarray, thr: np.ndarray,
                n_per_bin: np.ndarray) -> float:
    """``1 / f`` at the first downward crossing (see :class:`FRCResult`).

    The search starts at the first ring (from ring 1 on) holding at least
    :data:`MIN_RING_SAMPLES` Fourier samples: ``inf`` if the curve is below the threshold
    there, NaN if it never falls below it.
    """
    diff = corr - thr
    rings = [k for k in range(1, len(freqs))
             if math.isfinite(diff[k]) and n_per_bin[k] >= MIN_RING_SAMPLES]
    if not rings:
        return math.nan
    if diff[rings[0]] < 0:
        return math.inf
    for prev, k in zip(rings, rings[1:]):
        if diff[k] < 0:
            t = diff[prev] / (diff[prev] - diff[k])
            f = freqs[prev] + t * (freqs[k] - freqs[prev])
            return float(1.0 / f)
    return math.nan
