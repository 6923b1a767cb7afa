"""Noise2Self (grid masking), Deep Image Prior with its held-out stopping rule, and the
calibration of a probabilistic model's predicted scale, on simulated Poisson-Gaussian data.

Each quality assertion comes with the control a broken method fails: Noise2Self trained
without masking learns the identity; DIP run without its stopping rule overfits the noise.
"""

import numpy as np
import pytest
from scipy.stats import spearmanr

from fluorecon.core import ConfigError
from fluorecon.methods import get_method
from fluorecon.methods.learned import (
    CARE,
    DeepImagePrior,
    DIPConfig,
    Noise2Self,
    deep_image_prior,
    donut_interpolate,
    grid_mask,
    load_model_method,
)
from fluorecon.methods.learned.n2s import GridMaskObjective, donut_weights
from fluorecon.metrics import psnr
from fluorecon.simulate import simulate_pair
from fluorecon.simulate.camera import camera_inverse

SMALL = dict(patch_size=32, batch_size=8, depth=2, base_filters=8, learning_rate=2e-3,
             validation_interval=50, validation_patches=8)


def _noisy_psnr(pair):
    return psnr(camera_inverse(pair.input, pair.camera), pair.target)


def _gain_adu(out, pair):
    return psnr(camera_inverse(out, pair.camera), pair.target) - _noisy_psnr(pair)


@pytest.fixture(scope="module")
def test2d():
    return simulate_pair("denoise", (96, 96), photons=20.0, seed=9)


# -- Noise2Self -----------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 16, 20), (2, 1, 8, 12, 12)])
def test_grid_masking(shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape).astype(np.float32)
    before = x.copy()
    nd = len(shape) - 2
    masked, target, weight = GridMaskObjective("mse", 4).make_batch(x, x, rng)
    assert np.array_equal(x, before) and target is x
    mask = weight == 1
    # one grid phase for the batch, all channels together: 1/4**nd of the pixels
    assert mask.mean() == pytest.approx(4.0 ** -nd)
    assert (mask == mask[:1, :1]).all()
    assert np.array_equal(masked[~mask], x[~mask])
    # masked values: weighted mean of the in-bounds neighbours, never the pixel itself
    interp = donut_interpolate(x, nd)
    assert np.allclose(masked[mask], interp[mask])
    idx = tuple(np.argwhere(mask)[0])
    lo = [max(0, i - 1) for i in idx[2:]]
    win = x[idx[:2] + tuple(slice(a, i + 2) for a, i in zip(lo, idx[2:]))]
    k = donut_weights(nd)[tuple(slice(a - i + 1, a - i + 1 + n)
                                for a, i, n in zip(lo, idx[2:], win.shape))]
    assert masked[idx] == pytest.approx(float((win * k).sum() / k.sum()), rel=1e-5)
    x2 = x.copy()
    x2[mask] += 10.0  # changing the masked pixels changes no masked replacement
    assert np.allclose(donut_interpolate(x2, nd)[mask], interp[mask])
    assert grid_mask((5, 6), 2, (1, 0)).sum() == 2 * 3


def test_n2s_denoises_2d_and_unmasked_control_does_not(test2d):
    m = Noise2Self(steps=200, **SMALL).fit(test2d.input, axes="YX")
    before = test2d.input.copy()
    out = m.predict(test2d.input, "YX")
    assert np.array_equal(test2d.input, before)
    assert out.dtype == np.float32 and out.shape == test2d.input.shape
    gain = _gain_adu(out, test2d)
    assert gain > 5.0, gain
    mc = m.model_config
    assert mc.method == "n2s" and not mc.unet.residual
    assert mc.training_data["masking"] == {"grid_spacing": 4, "replacement": "donut"}

    class Unmasked(Noise2Self):  # the same training without masking: learns the identity
        def _objective(self):
            class Visible(GridMaskObjective):
                def make_batch(self, x, y, rng):
                    return x, y, None

            return Visible(self.config.loss_name, self.config.grid_spacing)

    control = Unmasked(steps=200, **SMALL).fit(test2d.input, axes="YX")
    assert _gain_adu(control.predict(test2d.input, "YX"), test2d) < 2.0

    # J-invariant prediction: each pixel from the pass that masks it. Changing a pixel
    # leaves its own output unchanged, and the result still denoises.
    jinv = Noise2Self(m.config.model_copy(update={"j_invariant_prediction": True}))
    jinv.net, jinv.model_config = m.net, m.model_config
    assert jinv.receptive_field == m.receptive_field + 1
    base = jinv.predict(test2d.input, "YX")
    assert _gain_adu(base, test2d) > 5.0
    poked = test2d.input.astype(np.float32).copy()
    poked[40, 50] += 500.0
    changed = jinv.predict(poked, "YX")
    assert changed[40, 50] == base[40, 50]
    assert not np.array_equal(m.predict(poked, "YX")[40, 50], out[40, 50])


def test_n2s_3d_multichannel_save_load_and_registry(tmp_path):
    pair = simulate_pair("denoise", (16, 48, 48), photons=15.0, seed=3)
    cfg = dict(patch_size=(8, 24, 24), batch_size=4, depth=1, base_filters=4,
               learning_rate=3e-3, validation_interval=30, validation_patches=4,
               grid_spacing=3)
    m = Noise2Self(steps=60, **cfg).fit(pair.input, "ZYX")
    out = m.predict(pair.input, "ZYX")
    assert out.shape == pair.input.shape and m.model_config.unet.ndim == 3
    assert _gain_adu(out, pair) > 4.0
    # two channels, masked together, predicted jointly; model folder round trip
    two = np.stack([pair.input[4], pair.input[5]])
    mc2 = Noise2Self(steps=5, patch_size=16, batch_size=2, depth=1, base_filters=4,
                     validation_interval=5, validation_patches=2).fit(two, "CYX")
    assert mc2.model_config.axes == "CYX" and mc2.model_config.unet.in_channels == 2
    mc2.save(tmp_path / "n2s")
    loaded = load_model_method(tmp_path / "n2s")
    assert isinstance(loaded, Noise2Self)
    np.testing.assert_array_equal(loaded.predict(two, "CYX"), mc2.predict(two, "CYX"))
    assert get_method("n2s") is Noise2Self and Noise2Self.kind == "denoise"
    with pytest.raises(ConfigError, match="grid_spacing"):
        Noise2Self(patch_size=4, depth=1, grid_spacing=8)


# -- Deep Image Prior -----------------------------------------------------------------
def test_dip_stopping_rule_stops_before_overfitting():
    pair = simulate_pair("denoise", (48, 48), photons=20.0, seed=9)
    noisy = camera_inverse(pair.input, pair.camera).astype(np.float32)
    before = noisy.copy()
    calls = []
    dip = DeepImagePrior(base_filters=8, min_iterations=50, patience=80,
                         max_iterations=1000)
    out = dip.fit(noisy, "YX", progress=lambda d, t: calls.append((d, t))).predict(noisy, "YX")
    assert np.array_equal(noisy, before) and out.dtype == np.float32
    res = dip.last_result_[0]
    gain = psnr(out, pair.target) - psnr(noisy, pair.target)
    assert gain > 6.0, (gain, str(res))
    assert res.stopped_early and res.returned == "best"
    assert res.iterations == res.best_iteration + 80 and res.iterations < 500
    assert calls[-1][0] == calls[-1][1]  # the progress bar completes on an early stop

    # The same fit without the rule, run long: the network reproduces the noise.
    plain = DeepImagePrior(base_filters=8, min_iterations=50, patience=None,
                           keep_best=False, max_iterations=500)
    late = plain.predict(noisy, "YX")
    late_res = plain.last_result_[0]
    assert not late_res.stopped_early and late_res.returned == "last"
    assert psnr(late, pair.target) < psnr(out, pair.target) - 3.0
    # the trajectories agree up to the stop (same seed); after it the fit loss keeps
    # falling while the held-out loss rises: the overfitting the rule detects
    n = res.iterations
    np.testing.assert_allclose(late_res.holdout_loss[:n], res.holdout_loss, rtol=1e-4)
    b = res.best_iteration - 1
    assert late_res.fit_loss[-1] < 0.6 * late_res.fit_loss[b]
    assert late_res.holdout_loss[-1] > 1.2 * late_res.holdout_loss[b]
    assert "returned the average at iteration" in str(res)


def test_dip_bf16_fits_like_fp32_and_the_monitor_sees_the_averages():
    """bf16 forward passes (opt-in) restore as well as fp32 and really run in bf16; the
    monitor hook reports the averaged output the fit returns."""
    pair = simulate_pair("denoise", (48, 48), photons=20.0, seed=9)
    noisy = camera_inverse(pair.input, pair.camera).astype(np.float32)
    kw = dict(base_filters=8, min_iterations=50, patience=80, max_iterations=1000)
    outs, gains = {}, {}
    for precision in ("fp32", "bf16"):
        cfg = DIPConfig(precision=precision, **kw)
        outs[precision], res = deep_image_prior(noisy, config=cfg)
        gains[precision] = psnr(outs[precision], pair.target) - psnr(noisy, pair.target)
        assert res.stopped_early, (precision, str(res))
    assert gains["fp32"] > 6.0 and gains["bf16"] > 6.0, gains
    assert abs(gains["bf16"] - gains["fp32"]) < 1.0, gains
    assert not np.array_equal(outs["bf16"], outs["fp32"])

    seen: list[tuple[int, np.ndarray]] = []
    cfg = DIPConfig(base_filters=8, min_iterations=10, patience=None, keep_best=False,
                    max_iterations=30)
    last, res = deep_image_prior(noisy, config=cfg, monitor_every=10,
                                 monitor=lambda it, avg: seen.append((it, avg)))
    assert [it for it, _ in seen] == [10, 20, 30] and res.returned == "last"
    assert seen[-1][1].shape == noisy.shape and seen[-1][1].dtype == np.float32
    np.testing.assert_allclose(seen[-1][1], last, rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match="monitor_every"):
        deep_image_prior(noisy, config=cfg, monitor=print, monitor_every=0)


def test_dip_3d_and_registry():
    pair = simulate_pair("denoise", (8, 16, 16), photons=20.0, seed=4)
    noisy = camera_inverse(pair.input, pair.camera).astype(np.float32)
    dip = get_method("dip")(depth=2, base_filters=4, max_iterations=40, min_iterations=10,
                            patience=10)
    out = dip.predict(np.stack([noisy, noisy]), "CZYX")  # channels fitted one by one
    assert out.shape == (2, 8, 16, 16) and out.dtype == np.float32
    assert np.isfinite(out).all() and len(dip.last_result_) == 2
    np.testing.assert_array_equal(out[0], out[1])  # seeded: same image, same fit
    assert DeepImagePrior.kind == "denoise" and dip.receptive_field is None
    with pytest.raises(ConfigError, match="min_iterations"):
        DeepImagePrior(max_iterations=10, min_iterations=10)


# -- probabilistic scale --------------------------------------------------------------
def test_probabilistic_scale_ranks_the_actual_error():
    train = [simulate_pair("denoise", (96, 96), photons=20.0, seed=s) for s in (1, 2)]
    test = simulate_pair("denoise", (96, 96), photons=20.0, seed=9)
    care = CARE(steps=300, probabilistic=True, **{**SMALL, "learning_rate": 4e-3})
    care.fit([p.input for p in train], [p.target for p in train], axes="YX")
    mean, scale = care.predict_laplace_block(test.input, "YX")
    err = np.abs(mean - test.target)
    rho = spearmanr(scale.ravel(), err.ravel()).statistic
    assert rho > 0.3, rho
    # the scale is informative beyond a constant: the pixels it calls most uncertain
    # carry several times the error of those it calls least uncertain
    order = np.argsort(scale.ravel())
    k = order.size // 10
    assert err.ravel()[order[-k:]].mean() > 2.0 * err.ravel()[order[:k]].mean()
