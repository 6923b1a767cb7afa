"""Ensembles, predictive distributions of learned models, calibration stored in the model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, InputFileError, OutputExistsError
from fluorecon.methods.learned import CARE, load_model_method
from fluorecon.simulate.pairs import simulate_pair
from fluorecon.trust.calibration import coverage
from fluorecon.trust.ensembles import (
    Ensemble,
    calibrate_uncertainty,
    is_ensemble_folder,
    load_predictor,
    predict_uncertainty,
    save_model_config,
    train_ensemble,
)

TINY = dict(steps=120, patch_size=32, depth=1, base_filters=8, batch_size=8,
            validation_interval=40, probabilistic=True)


def _pairs(seeds, shape=(64, 64), photons=20.0):
    return [simulate_pair("denoise", shape, photons=photons, seed=s) for s in seeds]


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    train = _pairs(range(3))
    return train_ensemble("care", [p.input for p in train], [p.target for p in train],
                          axes="YX", k=2, data_split="bootstrap", seed=3, config=TINY)


def test_members_differ_and_record_statistics(ensemble):
    assert ensemble.k == 2 and ensemble.probabilistic
    assert ensemble.config.seeds == [3, 4]
    assert len(ensemble.config.member_images) == 2
    test = _pairs([50])[0]
    a, b = (m.predict(test.input, "YX") for m in ensemble.members)
    assert not np.allclose(a, b)
    for m in ensemble.members:
        assert m.model_config.input_stats is not None
        assert m.model_config.input_stats["n_images"] == 3


@pytest.mark.parametrize("mode", ["probabilistic", "ensemble", "both"])
def test_predict_uncertainty_modes(ensemble, mode):
    test = _pairs([51])[0]
    res = predict_uncertainty(ensemble, test.input, "YX", mode=mode)
    assert res.mean.shape == test.input.shape and res.mean.dtype == np.float32
    assert res.std.shape == test.input.shape and np.all(res.std > 0)
    assert res.members is not None and res.members.shape == (2, 64, 64)
    np.testing.assert_allclose(res.mean, res.members.mean(0), rtol=1e-5, atol=1e-4)
    if mode == "both":  # aleatoric + epistemic: at least as wide as either part
        alea = predict_uncertainty(ensemble, test.input, "YX", mode="probabilistic").std
        assert np.all(res.std >= alea * 0.999 - 1e-6)
    stack = np.stack([test.input, test.input])
    res2 = predict_uncertainty(ensemble, stack, "TYX", mode=mode)
    np.testing.assert_allclose(res2.mean[1], res.mean, rtol=1e-5, atol=1e-4)


def test_calibration_coverage_after_recalibration(ensemble, tmp_path):
    val, test = _pairs(range(20, 24)), _pairs(range(30, 34))
    for mode in ("probabilistic", "ensemble", "both"):
        rec = calibrate_uncertainty(ensemble, [p.input for p in val], [p.target for p in val],
                                    "YX", mode=mode)
        assert rec.coverage_after[rec.levels.index(0.9)] == pytest.approx(0.9, abs=0.01)
        covs = []
        for p in test:
            res = predict_uncertainty(ensemble, p.input, "YX", mode=mode)
            assert res.factor == pytest.approx(rec.factor)
            covs.append(coverage(res.predictive, p.target, (0.9,))[0.9])
        assert abs(float(np.mean(covs)) - 0.9) <= 0.03, (mode, covs)
    ensemble.save(tmp_path / "ens")
    assert is_ensemble_folder(tmp_path / "ens")
    again = load_predictor(tmp_path / "ens")
    assert isinstance(again, Ensemble)
    assert set(again.config.calibration) == {"probabilistic", "ensemble", "both"}
    p = test[0]
    np.testing.assert_allclose(predict_uncertainty(again, p.input, "YX", mode="both").std,
                               predict_uncertainty(ensemble, p.input, "YX", mode="both").std,
                               rtol=1e-5)
    with pytest.raises(OutputExistsError):
        ensemble.save(tmp_path / "ens")


def test_single_model_calibration_saved_in_config(ensemble, tmp_path):
    model = ensemble.members[0]
    folder = model.save(tmp_path / "m")
    loaded = load_model_method(folder)
    val = _pairs([40, 41])
    rec = calibrate_uncertainty(loaded, [p.input for p in val], [p.target for p in val], "YX")
    save_model_config(loaded, folder)
    data = json.loads((folder / "config.json").read_text())
    assert data["calibration"]["probabilistic"]["factor"] == pytest.approx(rec.factor)
    again = load_model_method(folder)
    res = predict_uncertainty(again, val[0].input, "YX")
    assert res.factor == pytest.approx(rec.factor)
    with pytest.raises(ConfigError):
        predict_uncertainty(again, val[0].input, "YX", mode="ensemble")
    # old model folders (without the new fields) still load
    del data["calibration"], data["input_stats"]
    (folder / "config.json").write_text(json.dumps(data))
    old = load_model_method(folder)
    assert old.model_config.calibration is None and old.model_config.input_stats is None
    # a config of another model is refused
    other = CARE(**{**TINY, "steps": 2, "probabilistic": False})
    other.fit([val[0].input], [val[0].target], "YX")
    with pytest.raises(InputFileError):
        save_model_config(other, folder)


def test_point_models_refuse_probabilistic_mode(tmp_path):
    pair = _pairs([60])[0]
    m = CARE(**{**TINY, "steps": 2, "probabilistic": False}).fit(pair.input, pair.target, "YX")
    with pytest.raises(ConfigError):
        predict_uncertainty(m, pair.input, "YX", mode="probabilistic")
    with pytest.raises(ConfigError):
        train_ensemble("care", pair.input, pair.target, axes="YX", k=0, config=TINY)
    with pytest.raises(ConfigError):
        train_ensemble("care", pair.input, pair.target, axes="YX", k=2,
                       config={**TINY, "seed": 1})
    with pytest.raises(ConfigError):
        train_ensemble("tv", pair.input, pair.target, axes="YX", k=2)


def test_predict_uncertainty_3d():
    pairs = _pairs([0], shape=(8, 32, 32))
    m = CARE(**{**TINY, "steps": 10, "patch_size": (4, 16, 16)}).fit(
        pairs[0].input, pairs[0].target, "ZYX")
    res = predict_uncertainty(m, pairs[0].input, "ZYX")
    assert res.mean.shape == (8, 32, 32) and res.std.shape == (8, 32, 32)
    assert res.members is None and res.factor == 1.0
