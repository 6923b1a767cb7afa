"""Self-calibrated classical denoisers: gaussian, tv, nlm, bm3d, auto."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from fluorecon.core.errors import ConfigError
from fluorecon.methods import available, create
from fluorecon.methods.classical.denoising.auto import TIE_Z, select_candidate
from fluorecon.methods.classical.denoising import (
    NoiseModel,
    bm3d_available,
    denoise_auto,
    denoise_gaussian,
    denoise_nlm,
    denoise_tv,
)

GAIN, READ = 2.0, 3.0


def _phantom(shape, rng):
    """Blobs and a ramp, 2-40 photo-electrons."""
    pts = np.zeros(shape)
    pts[tuple(rng.integers(0, n, max(8, pts.size // 200)) for n in shape)] = 1.0
    blobs = ndi.gaussian_filter(pts, 1.5)
    ramp = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")[-1]
    return 2.0 + 30.0 * blobs / blobs.max() + 8.0 * ramp


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    clean = _phantom(shape, rng)
    noisy = GAIN * rng.poisson(clean) + rng.normal(0, READ, shape)
    return GAIN * clean, noisy.astype(np.float32)


def _psnr(x, ref):
    return 10 * np.log10(np.ptp(ref) ** 2 / np.mean((x.astype(np.float64) - ref) ** 2))


SHAPES = [(64, 64), (16, 32, 32)]
FAST = ["gaussian", "tv", "nlm"]


@pytest.mark.parametrize("shape", SHAPES, ids=["2d", "3d"])
@pytest.mark.parametrize("name", FAST)
def test_beats_noisy_input(name, shape):
    clean, noisy = _data(shape)
    before = noisy.copy()
    # 3D: two masks keep the test fast (the default takes up to four).
    m = create(name) if len(shape) == 2 else create(name, calibration_masks=2)
    out = m.predict(noisy, "YX" if len(shape) == 2 else "ZYX")
    np.testing.assert_array_equal(noisy, before)
    assert out.dtype == np.float32 and out.shape == noisy.shape
    assert _psnr(out, clean) > _psnr(noisy, clean) + 5.0
    assert m.calibration_ is not None and m.calibration_.method == name
    assert isinstance(m.noise_model_, NoiseModel)
    assert len(m.calibration_.losses) >= 7


@pytest.mark.parametrize("fn,param,oracle_grid", [
    (denoise_gaussian, "sigma", np.geomspace(0.4, 4.0, 25)),
    (denoise_tv, "weight", np.geomspace(0.1, 5.0, 25)),
])
def test_calibrated_parameter_close_to_oracle(fn, param, oracle_grid):
    clean, noisy = _data((96, 96), seed=3)
    nm = NoiseModel.from_camera(GAIN, READ)
    res = fn(noisy, noise_model=nm)
    scores = [_psnr(fn(noisy, noise_model=nm, **{param: v}).image, clean) for v in oracle_grid]
    oracle = oracle_grid[int(np.argmax(scores))]
    best = res.calibration.best_parameters[param]
    assert 1 / 1.5 < best / oracle < 1.5
    assert _psnr(res.image, clean) > max(scores) - 1.0


def test_nlm_self_calibrated_h_near_oracle():
    clean, noisy = _data((64, 64), seed=4)
    res = denoise_nlm(noisy)
    grid = np.geomspace(0.3, 2.0, 9)
    scores = [_psnr(denoise_nlm(noisy, h=h, noise_model=res.noise_model).image, clean)
              for h in grid]
    assert _psnr(res.image, clean) > max(scores) - 0.7


def test_known_noise_model_and_no_vst():
    clean, noisy = _data((64, 64))
    m = create("gaussian", gain=GAIN, read_noise=READ)
    out = m.predict(noisy, "YX")
    assert m.noise_model_ == NoiseModel(GAIN, READ ** 2)
    assert _psnr(out, clean) > _psnr(noisy, clean) + 5.0
    out2 = create("tv", vst=False).predict(noisy, "YX")
    assert _psnr(out2, clean) > _psnr(noisy, clean) + 4.0


def test_fixed_parameter_skips_calibration():
    _, noisy = _data((64, 64))
    m = create("gaussian", sigma=1.0)
    m.predict(noisy, "YX")
    assert m.calibration_.best_parameters == {"sigma": 1.0}
    assert len(m.calibration_.losses) == 1


def test_multichannel_cyx_each_channel_calibrated():
    clean0, noisy0 = _data((64, 64), seed=1)
    _, noisy1 = _data((64, 64), seed=2)
    stack = np.stack([noisy0, 3.0 * noisy1 + 50.0])  # channel 1 on another scale
    m = create("tv")
    out = m.predict(stack, "CYX")
    assert out.shape == stack.shape and out.dtype == np.float32
    assert len(m.results_) == 2
    assert m.results_[1].noise_model.a > 2 * m.results_[0].noise_model.a
    np.testing.assert_allclose(out[0], create("tv").predict(noisy0, "YX"), rtol=1e-5, atol=1e-4)
    assert _psnr(out[0], clean0) > _psnr(noisy0, clean0) + 5.0


def test_integer_input_is_not_rescaled():
    clean, noisy = _data((64, 64))
    u16 = np.clip(np.round(noisy), 0, None).astype(np.uint16)
    out = create("gaussian").predict(u16, "YX")
    assert abs(float(out.mean()) - float(u16.mean())) < 0.05 * float(u16.mean())


@pytest.mark.parametrize("name,kwargs", [
    ("gaussian", {"sigma": -1.0}),
    ("tv", {"weight": 0.0}),
    ("nlm", {"patch_size": 1}),
    ("gaussian", {"gain": 2.0}),
    ("tv", {"calibration_masks": 17, "calibration_stride": 4}),
    ("auto", {"candidates": ()}),
    ("auto", {"candidates": ("tv", "tv")}),
    ("auto", {"candidates": ("median",)}),
    ("gaussian", {"unknown": 1}),
])
def test_bad_config_is_one_line_config_error(name, kwargs):
    with pytest.raises(ConfigError) as info:
        create(name, **kwargs)
    assert "\n" not in str(info.value)


def test_registered_as_denoisers():
    assert {"gaussian", "tv", "nlm", "bm3d", "auto"} <= set(available("denoise"))


needs_bm3d = pytest.mark.skipif(not bm3d_available(),
                                reason="bm3d (optional extra fluorecon[bm3d]) not installed")


@needs_bm3d
def test_bm3d_with_vst_beats_noisy_input_2d():
    clean, noisy = _data((64, 64))
    m = create("bm3d", calibration_masks=2)
    out = m.predict(noisy, "YX")
    assert out.dtype == np.float32
    assert _psnr(out, clean) > _psnr(noisy, clean) + 4.0
    assert m.calibration_.best_parameters["sigma"] > 0


@needs_bm3d
def test_bm3d_3d_slicewise():
    clean, noisy = _data((4, 48, 48))
    out = create("bm3d", sigma=1.0).predict(noisy, "ZYX")
    assert _psnr(out, clean) > _psnr(noisy, clean) + 4.0


def test_bm3d_missing_package_is_one_line_config_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "bm3d":
            raise ImportError("no bm3d")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    _, noisy = _data((32, 32))
    with pytest.raises(ConfigError) as info:
        create("bm3d").predict(noisy, "YX")
    assert "fluorecon[bm3d]" in str(info.value) and "\n" not in str(info.value)
    res = denoise_auto(noisy)  # auto skips it and says why
    assert "bm3d" in res.skipped and "bm3d" not in res.candidates


@pytest.mark.parametrize("shape,candidates", [
    ((64, 64), ("gaussian", "tv", "nlm")),
    ((16, 32, 32), ("gaussian", "tv", "nlm")),
    pytest.param((64, 64), ("gaussian", "tv", "nlm", "bm3d"),
                 marks=[pytest.mark.slow, needs_bm3d]),
], ids=["2d", "3d", "2d-bm3d"])
def test_auto_picks_near_best_candidate(shape, candidates):
    clean, noisy = _data(shape, seed=5)
    res = denoise_auto(noisy, candidates=candidates, n_masks=None if len(shape) == 2 else 2)
    ran = list(res.candidates)
    assert res.chosen in ran
    assert [p["method"] for p in res.calibration.parameters_tested] == ran
    # the chosen candidate is the lowest loss or statistically tied with it
    assert res.z_scores[res.chosen] < TIE_Z
    assert res.calibration.best_loss in res.calibration.losses
    true = {}
    for name in ran:
        fn = {"gaussian": denoise_gaussian, "tv": denoise_tv, "nlm": denoise_nlm}.get(name)
        if fn is None:
            from fluorecon.methods.classical.denoising import denoise_bm3d as fn
        p = res.candidates[name].best_parameters
        true[name] = _psnr(fn(noisy, noise_model=res.noise_model, **p).image, clean)
    assert true[res.chosen] > max(true.values()) - 0.5
    assert _psnr(res.image, clean) == pytest.approx(true[res.chosen], abs=1e-3)


def test_auto_method_records_choice():
    _, noisy = _data((48, 48))
    m = create("auto", candidates=("gaussian", "tv"))
    m.predict(noisy, "YX")
    assert m.calibration_.method == "auto"
    assert m.calibration_.best_parameters["method"] in ("gaussian", "tv")
    assert set(m.candidates_) == {"gaussian", "tv"}


def test_select_candidate_breaks_ties_by_preference_only():
    rng = np.random.default_rng(0)
    base = rng.chisquare(1, size=20000)
    tied = {"gaussian": base, "tv": base + rng.normal(0, 1e-3, base.size) + 1e-5,
            "bm3d": base + rng.normal(0, 1e-3, base.size) + 2e-5}
    name, z = select_candidate(tied)
    assert name == "bm3d" and z["gaussian"] == 0.0 and 0 < z["bm3d"] < TIE_Z
    name, _ = select_candidate({k: v for k, v in tied.items() if k != "bm3d"})
    assert name == "gaussian"  # no preference among the others: lowest loss
    clear = {"gaussian": base, "bm3d": base + 0.05 + rng.normal(0, 1e-3, base.size)}
    name, z = select_candidate(clear)
    assert name == "gaussian" and z["bm3d"] > 10
