"""Localisation metrics of the SMLM challenge 2016, and FRC resolution of renderings.

Matching (Sage et al. 2015, 2019): in every frame, test localisations are paired one-to-one
with ground-truth emitters so that the number of pairs closer than the tolerance is largest
and, among those, the summed distance smallest (Hungarian assignment on the distance
matrix with pairs beyond the tolerance forbidden). Then, with TP pairs, FP unmatched
localisations and FN unmatched emitters,

- recall ``TP / (TP + FN)``, precision ``TP / (TP + FP)``,
- Jaccard index ``TP / (TP + FP + FN)``,
- lateral RMSE ``sqrt(mean(dx^2 + dy^2))`` and axial RMSE ``sqrt(mean(dz^2))`` over the pairs,
- efficiency ``100 - sqrt((100 - 100 J)^2 + alpha^2 RMSE^2)`` (alpha = 1 / nm lateral,
  0.5 / nm axial; Sage et al. 2019).

References
----------
.. [1] D. Sage et al., "Quantitative evaluation of software packages for single-molecule
   localization microscopy", Nat. Methods 12, 717-724 (2015).
.. [2] D. Sage et al., "Super-resolution fight club", Nat. Methods 16, 387-395 (2019).
.. [3] R. P. J. Nieuwenhuizen et al., "Measuring image resolution in optical nanoscopy",
   Nat. Methods 10, 557-562 (2013).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.rng import SeedLike, make_rng
from fluorecon.methods.classical.smlm.postprocess import render_histogram
from fluorecon.metrics.fourier_correlation import FRCResult, frc
from fluorecon.simulate.smlm import Localizations

__all__ = ["Match", "SMLMScores", "localization_scores", "match_localizations",
           "rendering_frc"]


@dataclass(frozen=True)
class Match:
    """Result of :func:`match_localizations`.

    Attributes
    ----------
    test_index, truth_index : ndarray of int64, shape (TP,)
        Row indices of the matched pairs in the test and truth tables.
    n_test, n_truth : int
    """

    test_index: np.ndarray
    truth_index: np.ndarray
    n_test: int
    n_truth: int

    @property
    def tp(self) -> int:
        """True positives (pairs)."""
        return int(self.test_index.size)

    @property
    def fp(self) -> int:
        """Unmatched test localisations."""
        return self.n_test - self.tp

    @property
    def fn(self) -> int:
        """Unmatched true emitters."""
        return self.n_truth - self.tp


@dataclass(frozen=True)
class SMLMScores:
    """SMLM-challenge scores (see the module notes). Distances in nm, ratios in [0, 1]."""

    tp: int
    fp: int
    fn: int
    recall: float
    precision: float
    jaccard: float
    rmse_lateral: float
    rmse_axial: float
    bias_x: float
    bias_y: float
    efficiency_lateral: float
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (NaN for undefined values)."""
        return asdict(self)


def match_localizations(test: Localizations, truth: Localizations, *,
                        tolerance: float = 250.0, axial_tolerance: float | None = None
                        ) -> Match:
    """Pair test localisations with true emitters frame by frame (Hungarian assignment).

    Parameters
    ----------
    test, truth : Localizations
    tolerance : float
        Largest lateral distance of a pair, nm (the SMLM challenge uses 250 nm, half the
        challenge's FWHM, for its 2D data; use about 2x the expected precision for tight
        matching).
    axial_tolerance : float, optional
        Largest axial distance, nm (3D: both tables need ``z``).

    Returns
    -------
    Match

    Notes
    -----
    Within a frame, candidate pairs come from a KD-tree (distance <= tolerance); the
    assignment minimises the summed distance over a cost matrix where forbidden pairs cost
    more than any allowed matching, so the number of pairs is maximal first.
    """
    if tolerance <= 0:
        raise ConfigError(message(f"tolerance {tolerance}", "a positive distance in nm",
                                  "Use e.g. 250."))
    use_z = axial_tolerance is not None
    if use_z and (test.z is None or truth.z is None):
        raise DataError(message("an axial tolerance for tables without z", "z in both",
                                "Drop axial_tolerance for 2D data."))
    ti_all, gi_all = [], []
    t_order = np.argsort(test.frame, kind="stable")
    g_order = np.argsort(truth.frame, kind="stable")
    tf, gf = test.frame[t_order], truth.frame[g_order]
    for f in np.intersect1d(np.unique(tf), np.unique(gf)):
        ti = t_order[np.searchsorted(tf, f):np.searchsorted(tf, f, side="right")]
        gi = g_order[np.searchsorted(gf, f):np.searchsorted(gf, f, side="right")]
        tp_ = np.column_stack([test.x[ti], test.y[ti]])
        gp_ = np.column_stack([truth.x[gi], truth.y[gi]])
        sparse = cKDTree(tp_).sparse_distance_matrix(cKDTree(gp_), tolerance,
                                                     output_type="ndarray")
        if sparse.size == 0:
            continue
        a, b, d = sparse["i"], sparse["j"], sparse["v"]
        if use_z:
            assert test.z is not None and truth.z is not None and axial_tolerance is not None
            okz = np.abs(test.z[ti[a]] - truth.z[gi[b]]) <= axial_tolerance
            a, b, d = a[okz], b[okz], d[okz]
            if a.size == 0:
                continue
        # solve only on the rows/columns that have an allowed pair
        ua, ia = np.unique(a, return_inverse=True)
        ub, ib = np.unique(b, return_inverse=True)
        big = tolerance * (len(ua) + len(ub) + 1) * 10.0
        cost = np.full((ua.size, ub.size), big)
        cost[ia, ib] = d
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] < big
        ti_all.append(ti[ua[r[ok]]])
        gi_all.append(gi[ub[c[ok]]])
    ti_arr = np.concatenate(ti_all) if ti_all else np.zeros(0, np.int64)
    gi_arr = np.concatenate(gi_all) if gi_all else np.zeros(0, np.int64)
    return Match(test_index=ti_arr.astype(np.int64), truth_index=gi_arr.astype(np.int64),
                 n_test=len(test), n_truth=len(truth))


def localization_scores(test: Localizations, truth: Localizations, *,
                        tolerance: float = 250.0, axial_tolerance: float | None = None
                        ) -> SMLMScores:
    """Recall, precision, Jaccard, RMSE and efficiency of ``test`` against ``truth``.

    Parameters
    ----------
    test, truth : Localizations
    tolerance, axial_tolerance : float
        See :func:`match_localizations`.

    Returns
    -------
    SMLMScores
        Ratios are NaN when their denominator is 0, RMSEs NaN without pairs; the axial
        RMSE is NaN unless both tables have ``z``.

    Examples
    --------
    >>> t = Localizations.build(frame=[0, 0], x=[100.0, 900.0], y=[100.0, 900.0])
    >>> g = Localizations.build(frame=[0, 0], x=[103.0, 500.0], y=[104.0, 500.0])
    >>> s = localization_scores(t, g, tolerance=50)
    >>> s.tp, s.fp, s.fn, round(s.jaccard, 3), s.rmse_lateral
    (1, 1, 1, 0.333, 5.0)
    """
    m = match_localizations(test, truth, tolerance=tolerance, axial_tolerance=axial_tolerance)
    tp, fp, fn = m.tp, m.fp, m.fn

    def ratio(a: int, b: int) -> float:
        return a / b if b else math.nan

    dx = test.x[m.test_index] - truth.x[m.truth_index]
    dy = test.y[m.test_index] - truth.y[m.truth_index]
    rmse = float(np.sqrt(np.mean(dx ** 2 + dy ** 2))) if tp else math.nan
    rmse_z = math.nan
    if tp and test.z is not None and truth.z is not None:
        rmse_z = float(np.sqrt(np.mean((test.z[m.test_index] - truth.z[m.truth_index]) ** 2)))
    jac = ratio(tp, tp + fp + fn)
    eff = 100.0 - math.sqrt((100.0 - 100.0 * jac) ** 2 + rmse ** 2) if tp else math.nan
    return SMLMScores(tp=tp, fp=fp, fn=fn, recall=ratio(tp, tp + fn),
                      precision=ratio(tp, tp + fp), jaccard=jac, rmse_lateral=rmse,
                      rmse_axial=rmse_z, bias_x=float(dx.mean()) if tp else math.nan,
                      bias_y=float(dy.mean()) if tp else math.nan,
                      efficiency_lateral=eff / 100.0 if tp else math.nan,
                      tolerance=float(tolerance))


def rendering_frc(locs: Localizations, *, pixel_size: float = 10.0,
                  field_nm: tuple[float, float] | None = None, split: str = "random",
                  block_frames: int = 50, seed: SeedLike = 0) -> FRCResult:
    """FRC resolution of a localisation rendering (Nieuwenhuizen et al. 2013).

    Parameters
    ----------
    locs : Localizations
    pixel_size : float
        Render pixel size, nm (well below the expected resolution; 10 nm is usual).
    field_nm : (height, width), optional
    split : {"random", "blocks"}
        How the localisations are halved: at random (per localisation), or by alternating
        blocks of ``block_frames`` frames (less sensitive to repeated localisations of one
        molecule, which otherwise inflate the correlation).
    block_frames : int
    seed : int or Generator

    Returns
    -------
    FRCResult
        ``resolution_1_7`` (the fixed 1/7 threshold of Nieuwenhuizen et al.) and
        ``resolution_half_bit``, in nm.
    """
    if len(locs) < 2:
        raise DataError(message(f"{len(locs)} localisations", "at least 2", "Localise more "
                                "frames."))
    if split == "random":
        half = make_rng(seed).random(len(locs)) < 0.5
    elif split == "blocks":
        half = (locs.frame // max(1, block_frames)) % 2 == 0
    else:
        raise ConfigError(message(f"split {split!r}", "'random' or 'blocks'", "Pick one."))
    fld = field_nm or (float(locs.y.max()) + pixel_size, float(locs.x.max()) + pixel_size)
    a = render_histogram(locs.select(half), pixel_size=pixel_size, field_nm=fld)
    b = render_histogram(locs.select(~half), pixel_size=pixel_size, field_nm=fld)
    return frc(a, b, spacing=pixel_size)
