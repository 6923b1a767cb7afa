"""Calibration of predictive distributions: coverage of central intervals, expected
calibration error (ECE) and a recalibration factor fitted on held-out data.

A restoration network that reports a per-pixel uncertainty (a Laplace scale, an ensemble
standard deviation, or both) is *calibrated* when its central ``p``-intervals contain the
truth in a fraction ``p`` of pixels, for every ``p``. This module measures that on data with
ground truth and fits one multiplicative factor ``s`` on validation data that widens (or
narrows) every predicted distribution about its centre; the factor is stored with the model
and applied at prediction time.

Three predictive families are supported (:class:`Predictive`):

``laplace``
    location ``mu``, scale ``b`` (CARE / probabilistic models: std ``sqrt(2) b``).
``gaussian``
    mean ``mu``, std ``sigma`` (deep-ensemble mean and spread).
``laplace-mixture`` / ``gaussian-mixture``
    ``K`` equally weighted components with locations ``mu_k`` and scales ``b_k``
    (an ensemble of probabilistic models: aleatoric + epistemic).

References
----------
.. [1] V. Kuleshov, N. Fenner, S. Ermon, "Accurate uncertainties for deep learning using
   calibrated regression", ICML 2018.
.. [2] D. Levi, L. Gispan, N. Giladi, E. Fetaya, "Evaluating and calibrating uncertainty
   prediction in regression tasks", Sensors 22, 5540 (2022).
.. [3] B. Lakshminarayanan, A. Pritzel, C. Blundell, "Simple and scalable predictive
   uncertainty estimation using deep ensembles", NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy import optimize, special

from fluorecon.core.config import BaseConfig
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.rng import SeedLike, make_rng

__all__ = [
    "DEFAULT_LEVELS", "ECE_LEVELS", "FIT_LEVELS", "CalibrationRecord", "Predictive",
    "calibrate", "central_interval",
    "coverage", "expected_calibration_error", "fit_recalibration", "pit",
]

Family = Literal["laplace", "gaussian", "laplace-mixture", "gaussian-mixture"]
FAMILIES: tuple[str, ...] = ("laplace", "gaussian", "laplace-mixture", "gaussian-mixture")

#: Nominal levels of the central intervals reported by default.
DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
#: Levels over which the expected calibration error is averaged.
ECE_LEVELS: tuple[float, ...] = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2))
_TINY = 1e-12


@dataclass(frozen=True)
class Predictive:
    """A per-pixel predictive distribution.

    Parameters
    ----------
    family : {"laplace", "gaussian", "laplace-mixture", "gaussian-mixture"}
    loc : ndarray
        Location(s): the image shape for single distributions, ``(K, *shape)`` for mixtures.
    scale : ndarray
        Laplace scale ``b`` or Gaussian std ``sigma``, same shape as ``loc``, ``>= 0``.

    Notes
    -----
    A recalibration factor ``s`` maps a distribution ``X`` to ``m + s (X - m)`` with ``m``
    its centre (the location, or the mixture mean): every component location moves away
    from ``m`` by ``s`` and every scale is multiplied by ``s``. For single distributions
    this is simply ``scale -> s * scale``.
    """

    family: Family
    loc: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(message(f"predictive family {self.family!r}",
                                      f"one of {', '.join(FAMILIES)}", "Pick a family."))
        loc = np.asarray(self.loc, np.float32)
        scale = np.asarray(self.scale, np.float32)
        if loc.shape != scale.shape:
            raise DataError(message(f"loc of shape {loc.shape} and scale of shape "
                                    f"{scale.shape}", "equal shapes", "Pass matching arrays."))
        if self.is_mixture and loc.ndim < 2:
            raise DataError(message(f"a mixture with loc of shape {loc.shape}",
                                    "(K, *image shape)", "Stack the members on axis 0."))
        if not (np.all(np.isfinite(loc)) and np.all(np.isfinite(scale))):
            raise DataError(message("non-finite locations or scales", "finite values",
                                    "Check the predictions."))
        if np.any(scale < 0):
            raise DataError(message("negative scales", "scales >= 0", "Check the predictions."))
        object.__setattr__(self, "loc", loc)
        object.__setattr__(self, "scale", scale)

    @property
    def is_mixture(self) -> bool:
        """Whether the distribution is an equally weighted mixture of ``K`` components."""
        return self.family.endswith("-mixture")

    @property
    def base(self) -> str:
        """``"laplace"`` or ``"gaussian"``."""
        return self.family.split("-")[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """Image shape (without the component axis)."""
        return tuple(self.loc.shape[1:] if self.is_mixture else self.loc.shape)

    @property
    def mean(self) -> np.ndarray:
        """Mean of the distribution (float32, image shape)."""
        return self.loc.mean(axis=0) if self.is_mixture else self.loc

    @property
    def std(self) -> np.ndarray:
        """Standard deviation (float32, image shape): aleatoric and epistemic parts added
        in quadrature for mixtures, ``var = mean_k(v_k) + var_k(mu_k)``."""
        var = _component_var(self.base, self.scale)
        if self.is_mixture:
            var = var.mean(axis=0) + self.loc.var(axis=0)
        return np.sqrt(var).astype(np.float32)

    def scaled(self, factor: float) -> "Predictive":
        """The distribution widened by ``factor`` about its centre (see Notes)."""
        if not (np.isfinite(factor) and factor > 0):
            raise ConfigError(message(f"recalibration factor {factor!r}", "a positive factor",
                                      "Fit it with fit_recalibration()."))
        if self.is_mixture:
            m = self.mean
            loc = m + np.float32(factor) * (self.loc - m)
        else:
            loc = self.loc
        return Predictive(self.family, loc, self.scale * np.float32(factor))

    def subsample(self, index: np.ndarray) -> "Predictive":
        """The distribution at flat pixel indices ``index``."""
        if self.is_mixture:
            k = self.loc.shape[0]
            return Predictive(self.family, self.loc.reshape(k, -1)[:, index],
                              self.scale.reshape(k, -1)[:, index])
        return Predictive(self.family, self.loc.reshape(-1)[index],
                          self.scale.reshape(-1)[index])


def _component_var(base: str, scale: np.ndarray) -> np.ndarray:
    s = scale.astype(np.float64)
    return 2.0 * s * s if base == "laplace" else s * s


def _cdf(base: str, z: np.ndarray) -> np.ndarray:
    """Standard CDF of the base family at standardised ``z``."""
    if base == "laplace":
        return np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))
    return special.ndtr(z)


def _quantile_half_width(base: str, level: np.ndarray | float) -> np.ndarray:
    """Half-width of the standard central ``level`` interval (units of the scale)."""
    p = np.asarray(level, np.float64)
    if base == "laplace":
        return -np.log1p(-p)
    return special.ndtri(0.5 + 0.5 * p)


def _check_levels(levels: Sequence[float]) -> np.ndarray:
    lv = np.asarray(list(levels), np.float64)
    if lv.ndim != 1 or lv.size == 0 or np.any(lv <= 0) or np.any(lv >= 1):
        raise ConfigError(message(f"levels {list(levels)!r}", "levels strictly between 0 and 1",
                                  "Pass e.g. levels=(0.5, 0.8, 0.9, 0.95)."))
    return lv


def _check_truth(dist: Predictive, truth: Any) -> np.ndarray:
    y = np.asarray(truth, np.float64)
    if y.shape != dist.shape:
        raise DataError(message(f"ground truth of shape {y.shape}",
                                f"the prediction's shape {dist.shape}",
                                "Pass the registered ground truth."))
    if not np.all(np.isfinite(y)):
        raise DataError(message("non-finite ground truth", "finite values", "Check the data."))
    return y


def pit(dist: Predictive, truth: Any) -> np.ndarray:
    """Probability integral transform ``F(y)`` of the truth under the prediction.

    Parameters
    ----------
    dist : Predictive
    truth : array_like
        Ground truth, image shape.

    Returns
    -------
    ndarray, float64, image shape
        Values in ``[0, 1]``; uniform when the prediction is calibrated.

    Notes
    -----
    Zero scales are treated as point masses (``F`` jumps at the location; ``F(y) = 0.5``
    exactly at it). Mixtures average the component CDFs.
    """
    y = _check_truth(dist, truth)
    s = np.maximum(dist.scale.astype(np.float64), _TINY)
    if dist.is_mixture:
        return _cdf(dist.base, (y[None] - dist.loc) / s).mean(axis=0)
    return _cdf(dist.base, (y - dist.loc) / s)


def central_interval(dist: Predictive, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the central ``level`` interval (single distributions).

    For Laplace ``mu -/+ b ln(1/(1-p))``; for Gaussian ``mu -/+ sigma z_{(1+p)/2}``.
    Mixtures have no closed form: use :func:`coverage`, which works through :func:`pit`.
    """
    lv = float(_check_levels([level])[0])
    if dist.is_mixture:
        raise ConfigError(message("a mixture for central_interval", "a single Laplace or "
                                  "Gaussian distribution", "Use coverage() for mixtures."))
    h = dist.scale * np.float32(_quantile_half_width(dist.base, lv))
    return dist.loc - h, dist.loc + h


def coverage(dist: Predictive, truth: Any, levels: Sequence[float] = DEFAULT_LEVELS,
             *, mask: Any = None) -> dict[float, float]:
    """Fraction of pixels whose truth lies in the central ``p``-interval, for every level.

    Parameters
    ----------
    dist : Predictive
    truth : array_like
        Ground truth of the image shape.
    levels : sequence of float
        Nominal levels in ``(0, 1)``.
    mask : array_like of bool, optional
        Pixels to count (default all).

    Returns
    -------
    dict of float to float
        ``{p: empirical coverage}``.

    Notes
    -----
    The truth lies in the central ``p``-interval exactly when ``|2 F(y) - 1| <= p``, so
    coverage is computed from the PIT for every family, mixtures included.
    """
    lv = _check_levels(levels)
    u = np.abs(2.0 * pit(dist, truth) - 1.0)
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.shape != u.shape or not m.any():
            raise DataError(message(f"a mask of shape {m.shape} with {int(m.sum())} pixels",
                                    f"a boolean mask of shape {u.shape} selecting pixels",
                                    "Pass a matching mask."))
        u = u[m]
    u = np.sort(u.ravel())
    return {float(p): float(np.searchsorted(u, p, side="right") / u.size) for p in lv}


def expected_calibration_error(dist: Predictive, truth: Any,
                               levels: Sequence[float] = ECE_LEVELS, *,
                               mask: Any = None) -> float:
    """Mean absolute gap between empirical coverage and nominal level.

    ``ECE = (1/L) sum_l |coverage(p_l) - p_l|`` over ``levels`` (default 0.05, ..., 0.95),
    in fractions (multiply by 100 for points).
    """
    cov = coverage(dist, truth, levels, mask=mask)
    return float(np.mean([abs(c - p) for p, c in cov.items()]))


class CalibrationRecord(BaseConfig):
    """The recalibration factor of a model and the coverage it was fitted and checked on.

    Stored in a model's ``config.json`` (``calibration``) or an ensemble's
    ``ensemble.json``; ``factor`` multiplies every predicted scale at prediction time.
    """

    version: int = Field(default=1, ge=1, le=1, description="Schema version.")
    family: str = Field(description="Predictive family the factor applies to.")
    uncertainty: str = Field(description="Uncertainty mode: probabilistic, ensemble or both.")
    factor: float = Field(gt=0, description="Multiplicative scale factor (1: unchanged).")
    fit_levels: list[float] = Field(description="Levels the factor was fitted at.")
    levels: list[float] = Field(description="Nominal central-interval levels reported.")
    coverage_before: list[float] = Field(description="Coverage at each level before.")
    coverage_after: list[float] = Field(description="Coverage at each level after (on the "
                                                    "fitting data).")
    ece_before: float = Field(ge=0, description="Expected calibration error before.")
    ece_after: float = Field(ge=0, description="Expected calibration error after.")
    n_pixels: int = Field(ge=1, description="Pixels used to fit the factor.")
    data: dict[str, Any] = Field(default_factory=dict, description="Description of the "
                                                                   "calibration data.")


#: Level(s) the recalibration factor is fitted at by default.
FIT_LEVELS: tuple[float, ...] = (0.9,)


def fit_recalibration(dist: Predictive, truth: Any, *,
                      levels: Sequence[float] = FIT_LEVELS, mask: Any = None,
                      max_pixels: int = 200_000, seed: SeedLike = 0,
                      bounds: tuple[float, float] = (1e-3, 1e3)) -> float:
    """Fit the factor ``s`` that makes the central intervals cover their nominal levels.

    Parameters
    ----------
    dist : Predictive
        Predictions on validation data (not the training data).
    truth : array_like
        Ground truth.
    levels : sequence of float
        Levels whose squared coverage gaps are minimised. Default 0.9 alone: the factor
        makes the 90 % interval exact on the validation data (the interval most often
        reported); pass :data:`ECE_LEVELS` to minimise the gaps over 0.05, ..., 0.95
        instead (better on average when the predicted shape is right, worse at the tails
        when it is not).
    mask : array_like of bool, optional
        Pixels to use.
    max_pixels : int
        Random subsample of pixels used (seeded), for speed.
    seed : int or Generator
    bounds : (float, float)
        Search range of ``s``.

    Returns
    -------
    float
        ``s > 0``; apply with :meth:`Predictive.scaled`.

    Notes
    -----
    Minimises ``sum_l (cov_l(s) - p_l)^2``. For single distributions the standardised
    residual ``t = |y - mu| / b`` is all that matters: ``cov_l(s) = P(t <= s q_l)`` with
    ``q_l`` the standard half-width, so each level alone would give
    ``s_l = quantile_p_l(t) / q_l``; the least-squares ``s`` is found among a fine grid and
    refined by a bounded scalar search. Mixtures are searched the same way on their PIT.
    This is the single-parameter (variance scaling) recalibration of [2]_; an isotonic map
    [1]_ would fix shape errors too, but a scalar is robust with few validation images and
    transfers to new images.
    """
    lv = _check_levels(levels)
    y = _check_truth(dist, truth).ravel()
    idx = np.arange(y.size)
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.shape != dist.shape:
            raise DataError(message(f"a mask of shape {m.shape}", f"shape {dist.shape}",
                                    "Pass a matching mask."))
        idx = idx[m.ravel()]
    if idx.size == 0:
        raise DataError(message("no pixels to calibrate on", "at least one pixel",
                                "Check the mask."))
    if idx.size > max_pixels:
        idx = np.sort(make_rng(seed).choice(idx, size=max_pixels, replace=False))
    sub = dist.subsample(idx)
    ys = y[idx]

    if not sub.is_mixture:
        t = np.abs(ys - sub.loc) / np.maximum(sub.scale.astype(np.float64), _TINY)
        t = np.sort(t)
        q = _quantile_half_width(sub.base, lv)
        if lv.size == 1:
            # Closed form: the p-quantile of t over the standard half-width.
            s_exact = float(np.quantile(t, lv[0], method="inverted_cdf") / q[0])
            return float(np.clip(s_exact, bounds[0], bounds[1])) if s_exact > 0 else bounds[0]

        def loss(log_s: float) -> float:
            cov = np.searchsorted(t, np.exp(log_s) * q, side="right") / t.size
            return float(np.sum((cov - lv) ** 2))
    else:
        centre = sub.loc.mean(axis=0)
        dev = sub.loc - centre
        sc = np.maximum(sub.scale.astype(np.float64), _TINY)

        def loss(log_s: float) -> float:
            s = np.exp(log_s)
            f = _cdf(sub.base, (ys[None] - centre - s * dev) / (s * sc)).mean(axis=0)
            u = np.sort(np.abs(2.0 * f - 1.0))
            cov = np.searchsorted(u, lv, side="right") / u.size
            return float(np.sum((cov - lv) ** 2))

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    if sub.is_mixture and lv.size == 1:
        # Coverage grows with s: bisect on log s for cov(s) = p.
        def cov1(log_s: float) -> float:
            s = np.exp(log_s)
            f = _cdf(sub.base, (ys[None] - centre - s * dev) / (s * sc)).mean(axis=0)
            return float(np.mean(np.abs(2.0 * f - 1.0) <= lv[0]))

        a_, b_ = lo, hi
        for _ in range(40):
            mid = 0.5 * (a_ + b_)
            if cov1(mid) < lv[0]:
                a_ = mid
            else:
                b_ = mid
        return float(np.exp(b_))
    grid = np.linspace(lo, hi, 121 if not sub.is_mixture else 61)
    vals = np.array([loss(g) for g in grid])
    best = int(np.argmin(vals))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    fine = np.linspace(a, b, 41)
    fvals = np.array([loss(g) for g in fine])
    g0 = fine[int(np.argmin(fvals))]
    half = (b - a) / 40
    res = optimize.minimize_scalar(loss, bounds=(max(a, g0 - half), min(b, g0 + half)),
                                   method="bounded", options={"xatol": 1e-4})
    g = float(res.x) if res.fun <= fvals.min() else float(g0)
    return float(np.exp(g))


def calibrate(dist: Predictive, truth: Any, *, uncertainty: str,
              levels: Sequence[float] = DEFAULT_LEVELS,
              fit_levels: Sequence[float] = FIT_LEVELS, mask: Any = None,
              data: dict[str, Any] | None = None, seed: SeedLike = 0) -> CalibrationRecord:
    """Fit the recalibration factor and report coverage and ECE before and after.

    ``fit_levels`` are passed to :func:`fit_recalibration`; ``levels`` are reported.

    Returns
    -------
    CalibrationRecord
        With ``coverage_after``/``ece_after`` measured on the same (validation) data; check
        them on separate test data with :func:`coverage` after :meth:`Predictive.scaled`.
    """
    lv = [float(p) for p in _check_levels(levels)]
    factor = fit_recalibration(dist, truth, levels=fit_levels, mask=mask, seed=seed)
    after = dist.scaled(factor)
    cb = coverage(dist, truth, lv, mask=mask)
    ca = coverage(after, truth, lv, mask=mask)
    n = int(np.asarray(mask, bool).sum()) if mask is not None else int(np.prod(dist.shape))
    return CalibrationRecord(
        family=dist.family, uncertainty=uncertainty, factor=factor, levels=lv,
        fit_levels=[float(p) for p in fit_levels], coverage_before=[cb[p] for p in lv],
        coverage_after=[ca[p] for p in lv],
        ece_before=expected_calibration_error(dist, truth, mask=mask),
        ece_after=expected_calibration_error(after, truth, mask=mask),
        n_pixels=n, data=dict(data or {}))
