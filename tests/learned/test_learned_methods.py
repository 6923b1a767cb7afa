"""CARE, Noise2Noise, Noise2Void and N2V2 on simulated Poisson-Gaussian data (2D and 3D):
each must beat the noisy input by a margin an identity (or unmasked) network cannot."""

import numpy as np
import pytest

from fluorecon.core import AxesError, ConfigError
from fluorecon.methods import get_method
from fluorecon.methods.learned import CARE, N2V2, Noise2Noise, Noise2Void, blind_spot_mask
from fluorecon.metrics import psnr
from fluorecon.simulate import simulate_pair
from fluorecon.simulate.camera import camera_inverse

SMALL = dict(patch_size=32, batch_size=8, depth=2, base_filters=8, learning_rate=2e-3,
             validation_interval=50, validation_patches=8)


def _pairs(shape, seeds, photons=20.0):
    return [simulate_pair("denoise", shape, photons=photons, seed=s) for s in seeds]


@pytest.fixture(scope="module")
def data2d():
    return _pairs((96, 96), (1, 2)), _pairs((96, 96), (9,))[0]


def _noisy_psnr(pair):
    return psnr(camera_inverse(pair.input, pair.camera), pair.target)


@pytest.fixture(scope="module")
def care2d(data2d):
    train, _ = data2d
    care = CARE(steps=150, **SMALL)
    return care.fit([p.input for p in train], [p.target for p in train], axes="YX")


def test_care_restores_2d(care2d, data2d):
    _, test = data2d
    before = test.input.copy()
    out = care2d.predict(test.input, "YX")
    assert np.array_equal(test.input, before)
    assert out.dtype == np.float32 and out.shape == test.input.shape
    gain = psnr(out, test.target) - _noisy_psnr(test)  # output in photons, like the target
    assert gain > 6.0, gain
    mc = care2d.model_config
    assert mc.unet.residual and mc.axes == "YX" and mc.method == "care"
    assert mc.training_data["pairs"] == 2 and mc.provenance["steps_done"] == 150


@pytest.mark.parametrize("cls,kwargs,margin", [
    (Noise2Void, {}, 4.0),
    (N2V2, {}, 3.0),
])
def test_blind_spot_methods_denoise_2d(data2d, cls, kwargs, margin):
    _, test = data2d
    m = cls(steps=200, masked_pixel_percentage=3.0, **SMALL, **kwargs)
    m.fit(test.input, axes="YX")  # self-supervised: trained on the image it denoises
    out = m.predict(test.input, "YX")  # in ADU, like the input
    gain = psnr(camera_inverse(out, test.camera), test.target) - _noisy_psnr(test)
    assert gain > margin, gain
    assert m.model_config.unet.n2v2 == (cls is N2V2) and not m.model_config.unet.residual


def test_n2v_without_blind_spot_learns_identity(data2d):
    """The control that makes the margins above meaningful: the same training with
    unmasked inputs (a 'broken N2V') does not denoise."""
    from fluorecon.methods.learned import n2v as n2v_module

    _, test = data2d

    class Unmasked(Noise2Void):
        def _objective(self):
            base = super()._objective()

            class NoMask(type(base)):
                def make_batch(self, x, y, rng):
                    return x, y, None

            return NoMask(base.loss, base.fraction, base.radius, base.replacement)

    m = Unmasked(steps=200, masked_pixel_percentage=3.0, **SMALL)
    m.fit(test.input, axes="YX")
    out = m.predict(test.input, "YX")
    gain = psnr(camera_inverse(out, test.camera), test.target) - _noisy_psnr(test)
    assert gain < 2.0, gain
    assert n2v_module.BlindSpotObjective  # the real objective exists and is used by N2V


def test_n2v_3d_and_n2n_3d():
    pair = _pairs((16, 48, 48), (3,), photons=15.0)[0]
    cfg = dict(patch_size=(8, 24, 24), batch_size=4, depth=1, base_filters=4,
               learning_rate=3e-3, validation_interval=30, validation_patches=4)
    n2v = Noise2Void(steps=60, masked_pixel_percentage=3.0, **cfg).fit(pair.input, "ZYX")
    out = n2v.predict(pair.input, "ZYX")
    assert out.shape == pair.input.shape and n2v.model_config.unet.ndim == 3
    assert psnr(camera_inverse(out, pair.camera), pair.target) - _noisy_psnr(pair) > 5.0
    # Noise2Noise: a second, independent noisy recording of the same sample
    from fluorecon.simulate.camera import camera_forward

    second = camera_forward(np.clip(pair.expected, 0, None), pair.camera,
                            rng=np.random.default_rng(7))
    n2n = Noise2Noise(steps=60, **cfg).fit([pair.input, second], [second, pair.input], "ZYX")
    out = camera_inverse(n2n.predict(pair.input, "ZYX"), pair.camera)
    assert psnr(out, pair.target) - _noisy_psnr(pair) > 6.0


def test_multichannel_care_and_probabilistic_scale():
    pairs = _pairs((64, 64), (4, 5), photons=10.0)
    rng = np.random.default_rng(0)
    from fluorecon.simulate.camera import camera_forward

    # two noisy views of the same sample as two input channels, one clean target
    xs = [np.stack([p.input, camera_forward(np.clip(p.expected, 0, None), p.camera, rng=rng)])
          for p in pairs]
    care = CARE(steps=80, probabilistic=True, **SMALL)
    care.fit(xs, [p.target for p in pairs], axes="CYX", target_axes="YX")
    mc = care.model_config
    assert mc.axes == "CYX" and mc.unet.in_channels == 2 and mc.unet.out_channels == 1
    assert not mc.unet.residual and mc.input_norm.n_channels == 2
    assert mc.provenance["loss"] == "laplace"
    out = care.predict(xs[0], "CYX")
    assert out.shape == (1, 64, 64)
    mean, scale = care.predict_laplace_block(xs[0], "CYX")
    assert np.array_equal(mean, out) and (scale > 0).all()
    with pytest.raises(AxesError, match="C axis"):
        care.predict(xs[0][0], "YX")
    with pytest.raises(ConfigError, match="probabilistic"):
        CARE(steps=1, **SMALL).fit(pairs[0].input, pairs[0].target, "YX") \
            .predict_laplace_block(pairs[0].input, "YX")


def test_untrained_and_registry():
    import fluorecon.methods.learned_names  # noqa: F401  (the lead imports it in the registry)

    with pytest.raises(ConfigError, match="untrained"):
        CARE().predict(np.zeros((8, 8), np.float32), "YX")
    for name, cls in (("care", CARE), ("n2n", Noise2Noise), ("n2v", Noise2Void),
                      ("n2v2", N2V2)):
        assert get_method(name) is cls
    assert CARE.kind == "restore" and Noise2Void.kind == "denoise"
    assert CARE(depth=2).receptive_field == 23 and N2V2(depth=2).receptive_field == 26
    assert CARE(depth=3, patch_size=64).divisible_by == 8
    with pytest.raises(ConfigError, match="divisible"):
        CARE(depth=3, patch_size=36)
    with pytest.raises(ConfigError, match="laplace"):
        CARE(loss="laplace")
    # every learned method's default rate follows its batch size (training.default_learning_rate)
    assert Noise2Void(batch_size=128).config.learning_rate == pytest.approx(2e-3)
    assert CARE(batch_size=8).config.training_config().learning_rate == 1e-3


@pytest.mark.parametrize("replacement", ["uniform", "median"])
@pytest.mark.parametrize("shape", [(3, 2, 40, 40), (2, 1, 12, 20, 20)])
def test_blind_spot_mask(replacement, shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape).astype(np.float32)
    before = x.copy()
    masked, mask = blind_spot_mask(x, rng, fraction=0.04, radius=2, replacement=replacement)
    assert np.array_equal(x, before)
    frac = mask.mean()
    assert 0.02 < frac <= 0.045
    changed = mask == 1
    assert np.array_equal(masked[~changed], x[~changed])
    assert not np.any(masked[changed] == x[changed])  # never its own value (continuous data)
    # channels are masked independently
    if shape[1] > 1:
        assert not np.array_equal(mask[:, 0], mask[:, 1])
    # the median replacement equals the median of the window without the centre
    idx = tuple(np.argwhere(changed)[0])
    lo = [max(0, i - 2) for i in idx[2:]]
    window = x[idx[:2] + tuple(slice(a, i + 3) for a, i in zip(lo, idx[2:]))].copy()
    centre = tuple(i - a for i, a in zip(idx[2:], lo))
    rest = np.delete(window.ravel(), np.ravel_multi_index(centre, window.shape))
    if replacement == "median":
        assert np.isclose(masked[idx], np.median(rest))
    else:
        assert masked[idx] in rest


@pytest.mark.parametrize("nd", [2, 3])
def test_multichannel_model_tiled_equals_whole_image(nd):
    """A 2 -> 1 channel CARE model predicted tile by tile (batched) equals whole blocks,
    for sizes that are not multiples of the downsampling factor."""
    from fluorecon.predict import predict_method_tiled

    rng = np.random.default_rng(3)
    sp = (36, 45) if nd == 2 else (12, 20, 23)
    x = rng.random((2,) + sp).astype(np.float32) * 50
    y = x.mean(0)
    care = CARE(steps=2, patch_size=8, depth=2, base_filters=4, batch_size=2,
                validation_interval=2).fit(x, y, axes="C" + "ZYX"[3 - nd:],
                                             target_axes="ZYX"[3 - nd:])
    assert care.channel_counts == (2, 1)
    axes = "TC" + "ZYX"[3 - nd:]
    image = np.stack([x, x[::-1]])  # two time points
    whole = care.predict(image, axes)
    tiles = (16, 20) if nd == 2 else (8, 8, 12)
    tiled = predict_method_tiled(care, image, axes, tile_shape=tiles, batch_size=3)
    assert tiled.shape == whole.shape == (2, 1) + sp
    np.testing.assert_allclose(tiled, whole, rtol=1e-4, atol=1e-4 * float(np.abs(whole).max()))


@pytest.mark.parametrize("nd", [2, 3])
def test_bf16_training_restores_as_well_as_fp32(nd):
    """bf16 autocast training (opt-in; "auto" picks it on CPUs with AMX) against fp32 on
    the same data, seed and steps: both restore by a clear margin, within 0.5 dB of each
    other, and their predictions differ far less than either differs from the truth."""
    if nd == 2:
        pairs, axes, cfg = _pairs((64, 64), (4, 5)), "YX", dict(SMALL, steps=120)
    else:
        pairs, axes = _pairs((16, 48, 48), (3, 4), photons=15.0), "ZYX"
        cfg = dict(patch_size=(8, 24, 24), batch_size=4, depth=1, base_filters=4,
                   learning_rate=3e-3, validation_interval=30, validation_patches=4, steps=60)
    test = pairs[0]
    gains, outs = {}, {}
    for precision in ("fp32", "bf16"):
        care = CARE(precision=precision, **cfg)
        care.fit([p.input for p in pairs], [p.target for p in pairs], axes=axes)
        assert care.train_result.precision == precision
        assert care.model_config.provenance["precision"] == precision
        outs[precision] = care.predict(test.input, axes)
        assert outs[precision].dtype == np.float32  # weights and outputs stay fp32
        gains[precision] = psnr(outs[precision], test.target) - _noisy_psnr(test)
    assert min(gains.values()) > 5.0, gains
    assert abs(gains["bf16"] - gains["fp32"]) < 0.5, gains
    spread = np.sqrt(np.mean((outs["bf16"] - outs["fp32"]) ** 2))
    error = np.sqrt(np.mean((outs["fp32"] - test.target) ** 2))
    assert 0 < spread < 0.5 * error, (spread, error)  # 0: bf16 did not run
