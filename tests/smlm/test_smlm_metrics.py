"""SMLM-challenge metrics on hand-made cases, and the FRC of renderings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fluorecon.core.errors import DataError
from fluorecon.metrics.smlm import localization_scores, match_localizations, rendering_frc
from fluorecon.simulate.smlm import Localizations


def test_hand_made_case() -> None:
    truth = Localizations.build(frame=[0, 0, 0, 1], x=[100.0, 500.0, 900.0, 100.0],
                                y=[100.0, 100.0, 100.0, 100.0])
    test = Localizations.build(frame=[0, 0, 1, 1], x=[103.0, 504.0, 100.0, 2000.0],
                               y=[104.0, 97.0, 100.0, 2000.0])
    s = localization_scores(test, truth, tolerance=50.0)
    assert (s.tp, s.fp, s.fn) == (3, 1, 1)
    assert s.recall == pytest.approx(0.75) and s.precision == pytest.approx(0.75)
    assert s.jaccard == pytest.approx(3 / 5)
    assert s.rmse_lateral == pytest.approx(math.sqrt((25 + 25 + 0) / 3))
    assert s.bias_x == pytest.approx(7 / 3)
    assert math.isnan(s.rmse_axial)


def test_matching_is_one_to_one_and_per_frame() -> None:
    # two test points near one true emitter: one TP, one FP; the same point in another frame
    # never matches
    truth = Localizations.build(frame=[0], x=[0.0], y=[0.0])
    test = Localizations.build(frame=[0, 0, 1], x=[10.0, 5.0, 0.0], y=[0.0, 0.0, 0.0])
    m = match_localizations(test, truth, tolerance=20.0)
    assert m.tp == 1 and list(m.test_index) == [1] and m.fp == 2


def test_hungarian_beats_greedy() -> None:
    # greedy nearest matching would pair t0-g1 (4 nm) and leave g0 unmatched
    truth = Localizations.build(frame=[0, 0], x=[0.0, 10.0], y=[0.0, 0.0])
    test = Localizations.build(frame=[0, 0], x=[6.0, 15.0], y=[0.0, 0.0])
    m = match_localizations(test, truth, tolerance=7.0)
    assert m.tp == 2


def test_axial_tolerance() -> None:
    truth = Localizations.build(frame=[0, 0], x=[0.0, 500.0], y=[0.0, 0.0], z=[0.0, 0.0])
    test = Localizations.build(frame=[0, 0], x=[5.0, 505.0], y=[0.0, 0.0], z=[30.0, 300.0])
    s = localization_scores(test, truth, tolerance=50.0, axial_tolerance=100.0)
    assert s.tp == 1 and s.rmse_axial == pytest.approx(30.0)
    with pytest.raises(DataError):
        localization_scores(Localizations.build(frame=[0], x=[0.0], y=[0.0]), truth,
                            axial_tolerance=10.0)


def test_empty_tables() -> None:
    e = Localizations.empty()
    truth = Localizations.build(frame=[0], x=[0.0], y=[0.0])
    s = localization_scores(e, truth)
    assert s.tp == 0 and s.recall == 0 and math.isnan(s.precision) and math.isnan(s.rmse_lateral)


def test_rendering_frc_tracks_precision() -> None:
    rng = np.random.default_rng(0)
    # 3000 random sites, each localised 15 times with 8 nm or 30 nm precision
    sites = rng.uniform(100, 1900, (3000, 2))
    base = np.repeat(sites, 15, axis=0)
    res = []
    for prec in (8.0, 30.0):
        pts = base + rng.normal(0, prec, base.shape)
        locs = Localizations.build(frame=rng.integers(0, 1000, len(pts)), x=pts[:, 0],
                                   y=pts[:, 1])
        res.append(rendering_frc(locs, pixel_size=4.0, field_nm=(2000.0, 2000.0))
                   .resolution_1_7)
    assert res[0] < 0.6 * res[1]
    assert 2 * 30.0 < res[1] < 10 * 30.0
