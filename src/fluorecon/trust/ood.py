"""Out-of-distribution warnings: is an input like the data the model was trained on?

At training time a few statistics of every training input are recorded in the model
(:class:`InputStats`, in ``config.json`` under ``input_stats``): the intensity range, the
noise level of the Poisson-Gaussian model relative to that range, and the distribution of
spectral power over spatial-frequency bands. At prediction time the same statistics of
the new input are compared with the training range and every departure becomes a warning
that names the quantity, its value, the training range and what it means.

These checks are deliberately simple and explainable: a network trained at one noise
level and applied at another (the most common misuse of CARE-type models) is caught by the
noise check; a different sample or magnification by the spectral check; a different
camera offset, gain or exposure by the intensity check.

References
----------
.. [1] M. Weigert et al., "Content-aware image restoration", Nature Methods 15, 1090 (2018)
   (networks do not generalise across noise levels and structures).
.. [2] A. Foi et al., "Practical Poissonian-Gaussian noise modeling and fitting for
   single-image raw-data", IEEE TIP 17, 1737 (2008).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.config import BaseConfig
from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import ConfigError, DataError, FluoreconError, message
from fluorecon.methods.classical.denoising.noise import estimate_noise_model

__all__ = ["FeatureRange", "InputStats", "OODReport", "OODWarning", "check_ood",
           "compute_input_stats", "image_features"]

#: Spatial-frequency bands (radial frequency as a fraction of Nyquist) of the spectral
#: features; the last band reaches the corners of the spectrum (sqrt(2) x Nyquist).
BAND_EDGES: tuple[float, ...] = (0.0, 0.0625, 0.125, 0.25, 0.5, 0.75, 1.5)
_MAX_PLANES = 8


def _planes(image: np.ndarray, axes: str) -> list[np.ndarray]:
    """Up to ``_MAX_PLANES`` evenly spaced YX planes of an image with any axes."""
    ax = check_axes(axes, ndim=image.ndim)
    if "Y" not in ax or "X" not in ax:
        raise DataError(message(f"axes {axes!r}", "Y and X axes", "Pass the image's axes."))
    other = [i for i, a in enumerate(ax) if a not in "YX"]
    arr = np.transpose(image, other + [ax.index("Y"), ax.index("X")])
    arr = arr.reshape((-1,) + arr.shape[-2:])
    idx = np.unique(np.linspace(0, arr.shape[0] - 1, min(_MAX_PLANES, arr.shape[0])).round()
                    .astype(int))
    return [as_float32(arr[i]) for i in idx]


def _band_power(plane: np.ndarray) -> np.ndarray:
    """Fraction of non-DC power (of the plane minus its mean) in each band."""
    p = plane.astype(np.float64) - plane.mean()
    win = np.outer(np.hanning(p.shape[0]), np.hanning(p.shape[1]))
    spec = np.abs(np.fft.rfft2(p * win)) ** 2
    fy = np.fft.fftfreq(p.shape[0])[:, None] * 2.0
    fx = np.fft.rfftfreq(p.shape[1])[None, :] * 2.0
    rad = np.sqrt(fy * fy + fx * fx)
    total = spec[rad > 0].sum()
    if total <= 0:
        return np.full(len(BAND_EDGES) - 1, 1.0 / (len(BAND_EDGES) - 1))
    out = np.array([spec[((rad > 0) if lo == 0 else (rad >= lo)) & (rad < hi)].sum()
                    for lo, hi in zip(BAND_EDGES[:-1], BAND_EDGES[1:])])
    return out / total


def image_features(image: Any, axes: str) -> dict[str, float]:
    """Statistics of one input image (all channels pooled).

    Parameters
    ----------
    image : array_like
        Any axes with ``Y`` and ``X``.
    axes : str

    Returns
    -------
    dict of str to float
        ``intensity_low`` / ``intensity_median`` / ``intensity_high`` (0.1, 50, 99.9
        percentiles, input units); ``noise_relative``: noise std at the median intensity
        divided by the 0.1-99.9 percentile range (NaN when no noise could be measured or
        the predicted variance at the median is not positive);
        ``band_k`` for each spatial-frequency band: log10 of the fraction of spectral
        power in it (Hann-windowed YX planes, DC removed).

    Notes
    -----
    The noise std is ``sqrt(a m + b)`` at the median ``m`` from a Poisson-Gaussian fit
    (:func:`~fluorecon.methods.classical.denoising.noise.estimate_noise_model`).
    """
    arr = as_float32(np.asarray(image))
    if not np.all(np.isfinite(arr)):
        raise DataError(message("an image with NaN or infinite values", "finite values",
                                "Check the input."))
    planes = _planes(arr, axes)
    values = np.concatenate([p.ravel() for p in planes])
    lo, med, hi = (float(v) for v in np.percentile(values, [0.1, 50.0, 99.9]))
    feats = {"intensity_low": lo, "intensity_median": med, "intensity_high": hi}
    span = max(hi - lo, 1e-12)
    try:
        nm = estimate_noise_model(np.stack(planes), axes="ZYX")
        var = float(nm.variance(med))
        feats["noise_relative"] = float(math.sqrt(var) / span) if var > 0 else float("nan")
    except FluoreconError:
        feats["noise_relative"] = float("nan")
    bands = np.mean([_band_power(p) for p in planes], axis=0)
    for k, v in enumerate(bands):
        feats[f"band_{k}"] = float(np.log10(max(v, 1e-12)))
    return feats


class FeatureRange(BaseConfig):
    """Range of one statistic over the training inputs."""

    min: float = Field(description="Smallest value over training images.")
    max: float = Field(description="Largest value over training images.")
    mean: float = Field(description="Mean over training images.")


class InputStats(BaseConfig):
    """Statistics of the training inputs, stored in a model to warn about unlike inputs."""

    version: int = Field(default=1, ge=1, le=1, description="Schema version.")
    n_images: int = Field(ge=1, description="Training images measured.")
    axes: str = Field(description="Axes of the measured training images.")
    band_edges: list[float] = Field(description="Spatial-frequency band edges (x Nyquist).")
    features: dict[str, FeatureRange] = Field(description="Range of every statistic.")


def compute_input_stats(images: Any, axes: str) -> InputStats:
    """Measure :func:`image_features` on each training input and keep their ranges.

    Parameters
    ----------
    images : array_like or list of array_like
        Training inputs (as passed to ``fit``); an ``S`` or ``T`` axis holds separate images.
    axes : str
        Axes of every image.
    """
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise DataError(message("no training images", "at least one image",
                                "Pass the training inputs."))
    ax = check_axes(axes)
    rows: list[dict[str, float]] = []
    for img in items:
        arr = np.asarray(img)
        check_axes(ax, ndim=arr.ndim)
        lead = [i for i, a in enumerate(ax) if a in "ST"]
        if lead:
            rest = "".join(a for a in ax if a not in "ST")
            flat = np.moveaxis(arr, lead, list(range(len(lead))))
            flat = flat.reshape((-1,) + flat.shape[len(lead):])
            rows.extend(image_features(f, rest) for f in flat)
        else:
            rows.append(image_features(arr, ax))
    feats: dict[str, FeatureRange] = {}
    for key in rows[0]:
        vals = np.array([r[key] for r in rows], np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            feats[key] = FeatureRange(min=float(vals.min()), max=float(vals.max()),
                                      mean=float(vals.mean()))
    return InputStats(n_images=len(rows), axes=ax, band_edges=list(BAND_EDGES),
                      features=feats)


@dataclass(frozen=True)
class OODWarning:
    """One departure from the training data."""

    quantity: str
    value: float
    low: float
    high: float
    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class OODReport:
    """Statistics of an input, compared with the training inputs."""

    features: dict[str, float]
    warnings: list[OODWarning]

    @property
    def ok(self) -> bool:
        """No warning."""
        return not self.warnings


def check_ood(image: Any, axes: str, stats: InputStats | dict[str, Any], *,
              noise_factor: float = 1.5, intensity_tolerance: float = 0.5,
              spectral_factor: float = 3.0) -> OODReport:
    """Compare an input with the training statistics and explain every departure.

    Parameters
    ----------
    image : array_like
        The input to be restored (one image; pass separate frames separately).
    axes : str
    stats : InputStats or dict
        From :func:`compute_input_stats` (``model_config.input_stats``).
    noise_factor : float
        Warn when the relative noise level is more than this factor outside the training
        range (below or above).
    intensity_tolerance : float
        Warn when the 0.1 or 99.9 percentile lies outside the training range widened by
        this fraction of the mean training intensity range on each side.
    spectral_factor : float
        Warn when the power fraction of a frequency band is more than this factor outside
        its training range.

    Returns
    -------
    OODReport
    """
    st = stats if isinstance(stats, InputStats) else InputStats.build(**stats)
    if noise_factor <= 1 or spectral_factor <= 1 or intensity_tolerance < 0:
        raise ConfigError(message(f"noise_factor={noise_factor}, spectral_factor="
                                  f"{spectral_factor}, intensity_tolerance="
                                  f"{intensity_tolerance}", "factors > 1 and a tolerance >= 0",
                                  "Pass e.g. 1.5, 3 and 0.5."))
    ax = check_axes(axes)
    if spatial_axes(ax) != spatial_axes(st.axes):
        raise DataError(message(f"an input with spatial axes {spatial_axes(ax)!r}",
                                f"the training inputs' {spatial_axes(st.axes)!r}",
                                "Use a model trained on data of this dimensionality."))
    feats = image_features(image, ax)
    warns: list[OODWarning] = []
    f = st.features
    if "intensity_low" in f and "intensity_high" in f:
        span = max(f["intensity_high"].mean - f["intensity_low"].mean, 1e-12)
        tol = intensity_tolerance * span
        for key, what in (("intensity_low", "dark level (0.1 percentile)"),
                          ("intensity_high", "bright level (99.9 percentile)")):
            v, r = feats[key], f[key]
            if v < r.min - tol or v > r.max + tol:
                warns.append(OODWarning(key, v, r.min, r.max, (
                    f"{what} {v:.4g} is outside the training range [{r.min:.4g}, "
                    f"{r.max:.4g}] by more than {intensity_tolerance:.0%} of the training "
                    "intensity range: different camera offset, gain, exposure or labelling; "
                    "the stored normalisation will map it differently from training")))
    if "noise_relative" in f and np.isfinite(feats["noise_relative"]) \
            and feats["noise_relative"] > 0 and f["noise_relative"].min > 0:
        v, r = feats["noise_relative"], f["noise_relative"]
        if v > r.max * noise_factor or v < r.min / noise_factor:
            ratio = v / r.max if v > r.max else r.min / v
            more = v > r.max
            warns.append(OODWarning("noise_relative", v, r.min, r.max, (
                f"noise level {v:.3g} (std / intensity range) is {ratio:.1f}x "
                f"{'above' if more else 'below'} the training range [{r.min:.3g}, "
                f"{r.max:.3g}]: " + ("the model never saw noise this strong and may invent "
                                     "or erase structure" if more else
                                     "the model was trained on noisier data and may "
                                     "over-smooth"))))
    for key in sorted(k for k in f if k.startswith("band_")):
        if key not in feats:
            continue
        v, r = feats[key], f[key]
        lim = math.log10(spectral_factor)
        if v > r.max + lim or v < r.min - lim:
            k = int(key.split("_")[1])
            lo_e, hi_e = st.band_edges[k], min(st.band_edges[k + 1], 1.415)
            ratio = 10 ** (v - r.max) if v > r.max else 10 ** (r.min - v)
            warns.append(OODWarning(key, v, r.min, r.max, (
                f"spatial frequencies {lo_e:.3g}-{hi_e:.3g} x Nyquist hold {ratio:.1f}x "
                f"{'more' if v > r.max else 'less'} of the power than in training: "
                "different structures, pixel size or blur than the model learned")))
    return OODReport(features=feats, warnings=warns)


def stats_from_config(input_stats: dict[str, Any] | None) -> InputStats | None:
    """Read ``ModelConfig.input_stats`` (None when the model has none)."""
    return None if input_stats is None else InputStats.build(**input_stats)


def features_table(report: OODReport, stats: InputStats, keys: Sequence[str] | None = None
                   ) -> list[list[object]]:
    """Rows ``[quantity, value, training min, training max, ok]`` for reports."""
    names = keys or [k for k in report.features if k in stats.features]
    flagged = {w.quantity for w in report.warnings}
    return [[k, report.features[k], stats.features[k].min, stats.features[k].max,
             "warning" if k in flagged else "ok"] for k in names]
