"""Generalisation harness: train on one structure class, test on others."""

from __future__ import annotations

import math

import pytest

from fluorecon.core.errors import ConfigError
from fluorecon.methods.learned import CARE
from fluorecon.trust.hallucination import generalisation_test


def test_per_class_table():
    res = generalisation_test(
        lambda: CARE(steps=60, patch_size=32, depth=1, base_filters=8, batch_size=8,
                     validation_interval=30),
        train_structure="filaments", test_structures=("filaments", "beads"),
        shape=(64, 64), photons=20, n_train=2, n_test=1)
    assert [r.structure for r in res.rows] == ["filaments", "beads"]
    assert [r.in_training for r in res.rows] == [True, False]
    for r in res.rows:
        assert math.isfinite(r.psnr_prediction) and -1 <= r.ssim_prediction <= 1
        assert 0 <= r.invented <= 1 and 0 <= r.erased <= 1
    # a trained network beats its noisy input on its own class
    assert res.rows[0].psnr_prediction > res.rows[0].psnr_input
    assert set(res.examples["beads"]) == {"input", "truth", "prediction", "invented", "erased"}
    assert len(res.table()[0]) == 8
    with pytest.raises(ConfigError):
        generalisation_test(lambda: CARE(), task="upsample")
