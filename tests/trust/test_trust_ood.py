"""Out-of-distribution warnings: fire for another noise level or intensity, not for matched
data."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import DataError
from fluorecon.simulate.pairs import simulate_pair
from fluorecon.trust.ood import InputStats, check_ood, compute_input_stats, image_features

SHAPES = [(128, 128), (8, 96, 96)]


def _inputs(shape, photons, seeds):
    return [simulate_pair("denoise", shape, photons=photons, seed=s).input for s in seeds]


@pytest.mark.parametrize("shape", SHAPES)
def test_matched_data_raise_no_warning(shape):
    axes = "YX" if len(shape) == 2 else "ZYX"
    stats = compute_input_stats(_inputs(shape, 30, range(3)), axes)
    assert stats.n_images == 3
    for seed in (10, 11):
        rep = check_ood(_inputs(shape, 30, [seed])[0], axes, stats)
        assert rep.ok, [str(w) for w in rep.warnings]


@pytest.mark.parametrize("shape", SHAPES)
def test_other_noise_level_warns_with_reason(shape):
    axes = "YX" if len(shape) == 2 else "ZYX"
    stats = compute_input_stats(_inputs(shape, 30, range(3)), axes)
    noisy = check_ood(_inputs(shape, 3, [10])[0], axes, stats)
    w = [x for x in noisy.warnings if x.quantity == "noise_relative"]
    assert w and "above" in w[0].reason and w[0].value > w[0].high
    clean = check_ood(_inputs(shape, 1000, [10])[0], axes, stats)
    w = [x for x in clean.warnings if x.quantity == "noise_relative"]
    assert w and "below" in w[0].reason


def test_intensity_shift_warns():
    stats = compute_input_stats(np.stack(_inputs((128, 128), 30, range(3))), "SYX")
    assert stats.n_images == 3
    img = _inputs((128, 128), 30, [10])[0] + 400.0
    rep = check_ood(img, "YX", stats)
    assert {"intensity_low", "intensity_high"} <= {w.quantity for w in rep.warnings}


def test_stats_round_trip_and_features():
    imgs = _inputs((96, 96), 30, range(2))
    stats = compute_input_stats(imgs, "YX")
    again = InputStats.build(**stats.model_dump(mode="json"))
    assert again == stats
    rep = check_ood(imgs[0], "YX", stats.model_dump(mode="json"))
    assert rep.ok
    f = image_features(imgs[0], "YX")
    bands = [10 ** v for k, v in f.items() if k.startswith("band_")]
    assert sum(bands) == pytest.approx(1.0, abs=1e-6)
    assert f["intensity_low"] <= f["intensity_median"] <= f["intensity_high"]
    with pytest.raises(DataError):
        check_ood(np.zeros((4, 64, 64)), "ZYX", stats)
