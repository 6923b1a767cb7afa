"""A measured PSF from an image of sub-resolution beads: detect, select, register, average.

:func:`psf_from_beads` is the one public algorithm; the CLI command
``fluorecon psf-from-beads`` wraps it. It follows the procedure of the PSF distillers of
Huygens, PSFj and the EPFL PSF tools [1]_ [2]_:

1. **Detect** candidate beads as local maxima of the Gaussian-smoothed image above a
   threshold (default: the median plus ``threshold_sigmas`` robust noise standard
   deviations, the noise taken from the median absolute deviation).
2. **Select** isolated beads: the extraction box must lie inside the image, no other
   candidate brighter than ``isolation_ratio`` times the bead may lie within the box,
   integer-valued data must not saturate, and (with three or more candidates) the
   bead's amplitude must lie within ``brightness_range`` times the median amplitude
   (rejecting aggregates of several beads and dim debris).
3. **Localise** each bead with sub-pixel precision: an iterated centroid in a window
   around the peak, then a refinement by upsampled phase cross-correlation
   (``skimage.registration.phase_cross_correlation``) against the first average.
4. **Average**: every bead, background-subtracted (median of its box's outer shell) and
   scaled to unit sum, is shifted by cubic-spline interpolation so that its centre falls
   on the box centre, then the beads are averaged (mean or median).
5. **Background and normalisation**: the median of the average's outer shell is
   subtracted, negatives are clipped, the result is re-centred on the centroid of its
   above-half-maximum core and scaled to sum 1, centred at ``shape // 2`` (the
   convention of :mod:`fluorecon.simulate.psf` and the deconvolution methods).
6. **Report** the FWHM along each axis in physical units (:func:`~fluorecon.simulate.psf.
   psf_fwhm`), with the per-bead FWHM spread as a quality check.

References
----------
.. [1] T. Theer, C. Hetzer, L. Meyer, S. Ionescu et al., "PSFj: know your fluorescence
   microscope", Nature Methods 11, 981-982 (2014).
.. [2] D. Sage et al., "DeconvolutionLab2: an open-source software for deconvolution
   microscopy", Methods 115, 28-41 (2017).
.. [3] M. Guizar-Sicairos, S. T. Thurman, J. R. Fienup, "Efficient subpixel image
   registration algorithms", Optics Letters 33, 156-158 (2008).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.registration import phase_cross_correlation

from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.simulate.psf import psf_fwhm

__all__ = ["BeadPSFResult", "psf_from_beads"]

_MARGIN = 3  # extra pixels cut around each box so that sub-pixel shifts stay inside


@dataclass(frozen=True)
class BeadPSFResult:
    """What :func:`psf_from_beads` returns.

    Attributes
    ----------
    psf : numpy.ndarray
        float32 PSF of ``psf_shape``, non-negative, summing to 1, centred at
        ``shape // 2``.
    fwhm : tuple of float
        FWHM of ``psf`` along each axis, in the units of ``spacing`` (NaN where the
        profile does not fall to half maximum inside the box).
    spacing : tuple of float
        Pixel size per axis.
    positions : numpy.ndarray, shape (n_beads, ndim)
        Sub-pixel centres (pixels, array order) of the beads averaged.
    bead_fwhm : numpy.ndarray, shape (n_beads, ndim)
        FWHM of each bead on its own (units of ``spacing``; NaN where undefined).
    n_candidates : int
        Local maxima found above the threshold.
    rejected : dict of str to int
        Candidates rejected, by reason (``"border"``, ``"neighbour"``, ``"saturated"``,
        ``"brightness"``, ``"max_beads"``).
    threshold : float
        Detection threshold used (image units, on the smoothed image).
    """

    psf: np.ndarray
    fwhm: tuple[float, ...]
    spacing: tuple[float, ...]
    positions: np.ndarray
    bead_fwhm: np.ndarray
    n_candidates: int
    rejected: dict[str, int] = field(default_factory=dict)
    threshold: float = math.nan

    @property
    def n_beads(self) -> int:
        """Number of beads averaged."""
        return int(self.positions.shape[0])

    def summary(self, unit: str = "µm") -> str:
        """One line: beads used, FWHM per axis and its spread over beads."""
        names = "ZYX"[-len(self.fwhm):]
        spread = np.nanstd(self.bead_fwhm, axis=0) if self.n_beads > 1 else \
            np.full(len(self.fwhm), np.nan)
        parts = [f"{a} {w:.3g} ± {s:.2g} {unit}" if math.isfinite(s) else f"{a} {w:.3g} {unit}"
                 for a, w, s in zip(names, self.fwhm, spread)]
        rej = ", ".join(f"{v} {k}" for k, v in self.rejected.items() if v)
        return (f"{self.n_beads} of {self.n_candidates} beads averaged"
                f"{' (rejected: ' + rej + ')' if rej else ''}; FWHM " + ", ".join(parts))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no PSF array)."""
        return {"n_beads": self.n_beads, "n_candidates": self.n_candidates,
                "rejected": dict(self.rejected), "fwhm": [float(v) for v in self.fwhm],
                "spacing": list(self.spacing), "threshold": float(self.threshold),
                "psf_shape": list(self.psf.shape),
                "positions": self.positions.round(3).tolist(),
                "bead_fwhm": [[None if not math.isfinite(v) else round(float(v), 5)
                               for v in row] for row in self.bead_fwhm]}


def psf_from_beads(
    image: Any,
    *,
    psf_shape: int | Sequence[int],
    spacing: float | Sequence[float] | None = None,
    threshold: float | None = None,
    threshold_sigmas: float = 8.0,
    smoothing: float = 1.0,
    min_distance: int | None = None,
    isolation_ratio: float = 0.05,
    brightness_range: tuple[float, float] | None = (0.5, 2.0),
    max_beads: int | None = None,
    register: bool = True,
    upsample_factor: int = 20,
    combine: Literal["mean", "median"] = "mean",
) -> BeadPSFResult:
    """Distil a PSF from an image of isolated sub-resolution fluorescent beads.

    Parameters
    ----------
    image : array_like
        2D ``YX`` or 3D ``ZYX`` bead image (any supported dtype; camera offset may be
        present, it is removed as background). Not modified.
    psf_shape : int or sequence of int
        Shape of the PSF to extract (odd sizes are best: the centre is ``shape // 2``),
        one size for all axes or one per axis. Choose it large enough that the PSF falls
        to background inside it.
    spacing : float or sequence of float, optional
        Pixel size per axis (e.g. micrometres, ``(z_step, pixel, pixel)``); default 1.
    threshold : float, optional
        Detection threshold on the smoothed image (image units). Default:
        ``median + threshold_sigmas * 1.4826 * MAD`` of the image.
    threshold_sigmas : float
        Robust standard deviations above the median for the default threshold.
    smoothing : float
        Standard deviation (pixels) of the Gaussian smoothing used for detection only.
    min_distance : int, optional
        Minimum distance (pixels) between detected maxima; default a quarter of the
        smallest box size (at least 2).
    isolation_ratio : float
        A bead is rejected if another candidate with amplitude above this fraction of its
        own lies inside its box.
    brightness_range : (float, float) or None
        Accepted amplitude range relative to the median amplitude (with >= 3
        candidates); None accepts all.
    max_beads : int, optional
        Use at most this many beads (the brightest accepted ones).
    register : bool
        Refine the centroids by upsampled phase cross-correlation against the first
        average [3]_.
    upsample_factor : int
        Sub-pixel precision of the registration, ``1 / upsample_factor`` pixels.
    combine : {"mean", "median"}
        How the aligned, unit-sum beads are averaged.

    Returns
    -------
    BeadPSFResult

    Raises
    ------
    DataError
        Not 2D/3D, non-finite, or no isolated bead found (the message says why beads
        were rejected).
    ConfigError
        Invalid parameters.

    Notes
    -----
    For beads that are not much smaller than the resolution, the measured PSF is the PSF
    convolved with the bead: with Gaussian approximations the true width is
    :math:`\\sqrt{w^2 - w_b^2}` for a bead profile of FWHM :math:`w_b`.

    Examples
    --------
    >>> from fluorecon.simulate.psf import gaussian_psf
    >>> import numpy as np
    >>> img = np.zeros((64, 64), np.float32)
    >>> for y, x in [(16, 16), (16, 48), (48, 16), (48, 48)]:
    ...     img[y - 7:y + 8, x - 7:x + 8] += 1000 * gaussian_psf((15, 15), 1.5)
    >>> res = psf_from_beads(img + 10, psf_shape=15)
    >>> res.n_beads, round(res.fwhm[0], 1)
    (4, 3.5)
    """
    check_image_array(image, name="bead image")
    img = as_float32(image).astype(np.float64)
    nd = img.ndim
    if nd not in (2, 3):
        raise DataError(message(f"a bead image of shape {img.shape}", "a 2D YX or 3D ZYX image",
                                "Pass one bead stack (split channels/time points first)."))
    box = _per_axis_int(psf_shape, nd, "psf_shape")
    sp = _per_axis_float(1.0 if spacing is None else spacing, nd, "spacing")
    if any(b < 3 for b in box) or any(b > n for b, n in zip(box, img.shape)):
        raise ConfigError(message(f"psf_shape {box} for an image of shape {img.shape}",
                                  "sizes >= 3 and at most the image size",
                                  "Pass e.g. psf_shape=(31, 31, 31)."))
    if combine not in ("mean", "median"):
        raise ConfigError(message(f"combine={combine!r}", "'mean' or 'median'", "Pick one."))
    if not 0 <= isolation_ratio <= 1:
        raise ConfigError(message(f"isolation_ratio={isolation_ratio}", "a value in [0, 1]",
                                  "Pass e.g. 0.05."))
    if brightness_range is not None and not 0 <= brightness_range[0] < brightness_range[1]:
        raise ConfigError(message(f"brightness_range={brightness_range}", "0 <= low < high",
                                  "Pass e.g. (0.5, 2.0)."))
    if upsample_factor < 1 or smoothing < 0 or threshold_sigmas <= 0:
        raise ConfigError(message(f"upsample_factor={upsample_factor}, smoothing={smoothing}, "
                                  f"threshold_sigmas={threshold_sigmas}",
                                  "upsample_factor >= 1, smoothing >= 0, threshold_sigmas > 0",
                                  "Fix the parameters."))

    # 1. detection
    med = float(np.median(img))
    sigma_n = 1.4826 * float(np.median(np.abs(img - med)))
    smooth = ndimage.gaussian_filter(img, smoothing) if smoothing > 0 else img
    thr = float(threshold) if threshold is not None else \
        med + threshold_sigmas * max(sigma_n, 1e-12 * max(abs(med), 1.0))
    md = max(2, min(box) // 4) if min_distance is None else int(min_distance)
    peaks = peak_local_max(smooth, min_distance=md, threshold_abs=thr, exclude_border=False)
    n_cand = int(len(peaks))
    rejected = {"border": 0, "neighbour": 0, "saturated": 0, "brightness": 0, "max_beads": 0}
    if n_cand == 0:
        raise DataError(message(f"no bead above the threshold {thr:.4g} (image median "
                                f"{med:.4g})", "at least one bright, isolated bead",
                                "Lower --threshold / threshold_sigmas or check the image."))
    amps = smooth[tuple(peaks.T)] - med
    half = np.array([b // 2 for b in box])
    keep = []
    sat_value = (np.iinfo(np.asarray(image).dtype).max
                 if np.issubdtype(np.asarray(image).dtype, np.integer) else None)
    for i, (p, a) in enumerate(zip(peaks, amps)):
        lo = p - half - _MARGIN
        hi = p - half + np.array(box) + _MARGIN
        if np.any(lo < 0) or np.any(hi > np.array(img.shape)):
            rejected["border"] += 1
            continue
        others = np.delete(np.arange(n_cand), i)
        near = np.all(np.abs(peaks[others] - p) <= half + _MARGIN, axis=1)
        if np.any(amps[others][near] > isolation_ratio * a):
            rejected["neighbour"] += 1
            continue
        if sat_value is not None:
            sl = tuple(slice(int(c) - 1, int(c) + 2) for c in p)
            if np.asarray(image)[sl].max() >= sat_value:
                rejected["saturated"] += 1
                continue
        keep.append(i)
    if brightness_range is not None and len(keep) >= 3:
        ref = float(np.median(amps[keep]))
        ok = [i for i in keep if brightness_range[0] * ref <= amps[i] <= brightness_range[1] * ref]
        rejected["brightness"] = len(keep) - len(ok)
        keep = ok
    keep = sorted(keep, key=lambda i: -amps[i])
    if max_beads is not None and len(keep) > max_beads:
        rejected["max_beads"] = len(keep) - int(max_beads)
        keep = keep[: int(max_beads)]
    if not keep:
        why = ", ".join(f"{v} {k}" for k, v in rejected.items() if v)
        raise DataError(message(f"{n_cand} candidate beads, none usable ({why})",
                                "at least one isolated bead fully inside the image",
                                "Use a smaller psf_shape, a lower isolation_ratio or "
                                "brightness_range=None."))

    # 2. extraction, background, first centring
    big = tuple(b + 2 * _MARGIN for b in box)
    boxes, centres = [], []
    for i in keep:
        start = peaks[i] - half - _MARGIN
        sl = tuple(slice(int(s), int(s) + n) for s, n in zip(start, big))
        b = img[sl] - _shell_median(img[sl])
        b = b / max(float(np.clip(b, 0, None).sum()), 1e-12)
        boxes.append(b)
        centres.append(_centroid(b, half + _MARGIN, radius=np.maximum(half / 2, 1.5)))
    target = np.array([h + _MARGIN for h in half], np.float64)
    shifts = [target - c for c in centres]
    aligned = [_shift(b, s) for b, s in zip(boxes, shifts)]

    # 3. refinement by registration to the first average
    if register and len(boxes) > 1:
        ref = np.mean(aligned, axis=0)
        inner = tuple(slice(_MARGIN, _MARGIN + n) for n in box)
        new_shifts = []
        for b, s, a in zip(boxes, shifts, aligned):
            d, _, _ = phase_cross_correlation(ref[inner], a[inner],
                                              upsample_factor=upsample_factor,
                                              normalization=None)
            new_shifts.append(s + np.asarray(d, np.float64))
        shifts = new_shifts
        aligned = [_shift(b, s) for b, s in zip(boxes, shifts)]

    # 4. average, background, normalisation, final centring
    inner = tuple(slice(_MARGIN, _MARGIN + n) for n in box)
    stack = np.stack([a[inner] for a in aligned])
    avg = np.mean(stack, axis=0) if combine == "mean" else np.median(stack, axis=0)
    avg = np.clip(avg - _shell_median(avg), 0, None)
    c = _core_centroid(avg)
    avg = np.clip(_shift(avg, half - c), 0, None)
    avg = np.clip(avg - _shell_median(avg), 0, None)
    total = float(avg.sum())
    if not total > 0:
        raise DataError(message("beads that average to nothing above background",
                                "beads brighter than the background",
                                "Check the threshold and the image."))
    psf = (avg / total).astype(np.float32)
    positions = np.array([peaks[i] - half - _MARGIN + (target - s) for i, s in
                          zip(keep, shifts)], np.float64).reshape(len(keep), nd)
    bead_fwhm = np.array([_fwhm_or_nan(np.clip(s, 0, None), sp) for s in stack])
    return BeadPSFResult(psf=psf, fwhm=_fwhm_or_nan(psf, sp), spacing=sp, positions=positions,
                         bead_fwhm=bead_fwhm.reshape(len(keep), nd), n_candidates=n_cand,
                         rejected=rejected, threshold=thr)


# -- helpers ------------------------------------------------------------------------------
def _per_axis_int(value: int | Sequence[int], nd: int, name: str) -> tuple[int, ...]:
    vals = [value] * nd if np.ndim(value) == 0 else list(value)  # type: ignore[arg-type]
    if len(vals) != nd or any(int(v) != v for v in vals):
        raise ConfigError(message(f"{name}={value!r} for a {nd}D image",
                                  f"one integer or {nd} integers", f"Fix {name}."))
    return tuple(int(v) for v in vals)


def _per_axis_float(value: float | Sequence[float], nd: int, name: str) -> tuple[float, ...]:
    vals = [value] * nd if np.ndim(value) == 0 else list(value)  # type: ignore[arg-type]
    if len(vals) != nd or any(not (math.isfinite(float(v)) and float(v) > 0) for v in vals):
        raise ConfigError(message(f"{name}={value!r} for a {nd}D image",
                                  f"one positive number or {nd}", f"Fix {name}."))
    return tuple(float(v) for v in vals)


def _shell_median(box: np.ndarray) -> float:
    """Median of the voxels on the faces of ``box`` (the local background)."""
    mask = np.zeros(box.shape, bool)
    for ax in range(box.ndim):
        idx = [slice(None)] * box.ndim
        idx[ax] = [0, box.shape[ax] - 1]
        mask[tuple(idx)] = True
    return float(np.median(box[mask]))


def _centroid(box: np.ndarray, start: np.ndarray, *, radius: np.ndarray,
              iterations: int = 5) -> np.ndarray:
    """Iterated intensity centroid in an ellipsoidal window of ``radius`` (pixels)."""
    grids = np.indices(box.shape, dtype=np.float64)
    w = np.clip(box, 0, None)
    c = np.asarray(start, np.float64)
    for _ in range(iterations):
        d2 = sum(((g - ci) / r) ** 2 for g, ci, r in zip(grids, c, radius))
        ww = w * (d2 <= 1.0)
        s = ww.sum()
        if not s > 0:
            break
        new = np.array([(g * ww).sum() / s for g in grids])
        if np.max(np.abs(new - c)) < 1e-3:
            c = new
            break
        c = new
    return c


def _core_centroid(psf: np.ndarray) -> np.ndarray:
    """Centroid of the connected above-half-maximum core around the maximum."""
    peak = np.unravel_index(int(np.argmax(psf)), psf.shape)
    labels, _ = ndimage.label(psf >= 0.5 * psf[peak])
    core = labels == labels[peak]
    w = psf * core
    grids = np.indices(psf.shape, dtype=np.float64)
    return np.array([(g * w).sum() / w.sum() for g in grids])


def _shift(box: np.ndarray, shift: Sequence[float]) -> np.ndarray:
    return ndimage.shift(box, shift, order=3, mode="nearest")


def _fwhm_or_nan(psf: np.ndarray, spacing: tuple[float, ...]) -> tuple[float, ...]:
    try:
        return psf_fwhm(psf, spacing)
    except DataError:
        out = []
        for ax in range(psf.ndim):  # per axis, so one bad axis does not hide the others
            try:
                prof = np.moveaxis(psf, ax, -1)
                idx = np.unravel_index(int(np.argmax(psf)), psf.shape)
                line = prof[tuple(i for a, i in enumerate(idx) if a != ax)]
                out.append(psf_fwhm(line, spacing[ax])[0])
            except DataError:
                out.append(math.nan)
        return tuple(out)
