"""Injected hallucinations: AUROC of the consistency and ensemble maps."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.simulate.pairs import simulate_pair
from fluorecon.trust.hallucination import (
    auroc,
    inject_structures,
    injected_hallucination_test,
    invention_maps,
)


def test_auroc_basics(rng):
    labels = np.r_[np.ones(50, bool), np.zeros(150, bool)]
    assert auroc(np.r_[np.ones(50) * 2, np.zeros(150)], labels) == 1.0
    assert auroc(np.r_[np.zeros(50), np.ones(150)], labels) == 0.0
    assert auroc(np.ones(200), labels) == 0.5
    s = rng.normal(size=20000)
    assert auroc(s, rng.random(20000) < 0.3) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(DataError):
        auroc(np.ones(10), np.zeros(10, bool))


@pytest.mark.parametrize("shape", [(64, 64), (6, 48, 48)])
@pytest.mark.parametrize("kind", ["beads", "filaments"])
def test_inject_structures(shape, kind, rng):
    img = rng.random(shape).astype(np.float32)
    before = img.copy()
    out, structure = inject_structures(img, kind=kind, n=4, amplitude=2.5, seed=0)
    np.testing.assert_array_equal(img, before)
    np.testing.assert_allclose(out - img, structure, atol=1e-6)
    assert structure.max() == pytest.approx(2.5, rel=1e-5) and structure.min() >= 0
    assert out.dtype == np.float32
    out2, _ = inject_structures(img, kind=kind, n=4, amplitude=2.5, seed=0)
    np.testing.assert_array_equal(out, out2)
    with pytest.raises(ConfigError):
        inject_structures(img, kind="stars")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(128, 128), (8, 64, 64)])
def test_injected_hallucinations_are_detected(shape):
    pair = simulate_pair("denoise", shape, photons=30, seed=2)
    strong = injected_hallucination_test(pair.input, pair.target, amplitude=0.3, seed=1)
    assert strong.auroc["consistency"] >= 0.9
    assert strong.detected_fraction >= 0.5
    assert strong.false_flag_fraction < 0.01
    faint = injected_hallucination_test(pair.input, pair.target, amplitude=0.02, seed=1)
    assert faint.auroc["consistency"] < strong.auroc["consistency"] - 0.15
    assert faint.amplitude_sigma < strong.amplitude_sigma


def test_ensemble_disagreement_detects_member_hallucination(rng):
    pair = simulate_pair("denoise", (128, 128), photons=30, seed=3)
    members = np.stack([pair.target + rng.normal(scale=0.3, size=pair.target.shape)
                        for _ in range(4)]).astype(np.float32)
    res = injected_hallucination_test(pair.input, members.mean(0), members=members,
                                      amplitude=0.3, seed=2)
    assert res.auroc["ensemble_std"] >= 0.9
    assert res.auroc["combined"] >= 0.9
    with pytest.raises(DataError):
        injected_hallucination_test(pair.input, pair.target, members=members[:1])


def test_invention_maps(rng):
    truth = np.zeros((64, 64), np.float32)
    truth[::8, :] = 1.0  # lines the prediction reproduces
    pred = truth + rng.normal(scale=0.02, size=truth.shape).astype(np.float32)
    pred[20:22, 20:22] = 1.0  # invented
    pred[8, 30:40] = 0.0      # erased
    inv, era = invention_maps(pred, truth, tau=0.3)
    assert inv[20:22, 20:22].all() and era[8, 30:40].all()
    assert inv.sum() == 4 and era.sum() == 10
