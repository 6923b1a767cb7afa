"""structN2V (masks along a line for row- or column-correlated noise), mirror-only
augmentation and mirror-only test-time augmentation."""

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.ndimage import convolve1d

from fluorecon.methods.learned import Noise2Void, blind_spot_mask, load_model_method
from fluorecon.methods.learned.n2v import N2VConfig, struct_offsets
from fluorecon.methods.learned.training import augment_batch
from fluorecon.metrics import psnr
from fluorecon.predict import MIRRORS, TRANSFORMS, tta_predict
from fluorecon.simulate.phantoms import make_phantom


@pytest.mark.parametrize("struct", ["horizontal", "vertical", "cross"])
@pytest.mark.parametrize("replacement", ["uniform", "median"])
@pytest.mark.parametrize("shape", [(2, 2, 40, 40), (1, 1, 6, 24, 24)])
def test_struct_mask_hides_the_pattern(struct, replacement, shape):
    rng = np.random.default_rng(3)
    x = rng.random(shape).astype(np.float32)
    before = x.copy()
    masked, mask = blind_spot_mask(x, rng, fraction=0.02, radius=3, replacement=replacement,
                                   struct=struct, struct_span=5)
    assert np.array_equal(x, before)
    pattern = struct_offsets(struct, 5)
    assert len(pattern) == (8 if struct == "cross" else 4)
    assert all((dy == 0) != (dx == 0) for dy, dx in pattern)
    # exactly the masked centres and their in-patch pattern pixels change
    expected = mask.astype(bool)
    centres = np.argwhere(expected)
    for idx in centres:
        for dy, dx in pattern:
            q = idx.copy()
            q[-2] += dy
            q[-1] += dx
            if 0 <= q[-2] < shape[-2] and 0 <= q[-1] < shape[-1]:
                expected[tuple(q)] = True
    changed = masked != x
    assert np.array_equal(changed, expected)
    # pattern values are uniform draws within the patch-channel's range
    hidden = expected & ~mask.astype(bool)
    lo = x.reshape(shape[0], shape[1], -1).min(axis=2)
    hi = x.reshape(shape[0], shape[1], -1).max(axis=2)
    n_idx, c_idx = np.nonzero(hidden)[:2]
    assert np.all(masked[hidden] >= lo[n_idx, c_idx]) and np.all(masked[hidden] <= hi[n_idx, c_idx])
    # a centre's replacement never comes from its own pattern (nor from itself)
    for idx in centres[:20]:
        on_line = []
        for dy, dx in pattern:
            q = idx.copy()
            q[-2] += dy
            q[-1] += dx
            if 0 <= q[-2] < shape[-2] and 0 <= q[-1] < shape[-1]:
                on_line.append(x[tuple(q)])
        v = masked[tuple(idx)]
        assert v != x[tuple(idx)]
        if replacement == "uniform":
            assert v not in on_line
            lo_w = [max(0, i - 3) for i in idx[2:]]
            window = x[tuple(idx[:2]) + tuple(slice(a, i + 4) for a, i in zip(lo_w, idx[2:]))]
            assert v in window


def test_struct_offsets_and_config():
    assert struct_offsets("none", 5).shape == (0, 2)
    assert sorted(map(tuple, struct_offsets("horizontal", 3))) == [(0, -1), (0, 1)]
    with pytest.raises(ValueError, match="struct mask"):
        struct_offsets("diagonal", 5)
    # a directional pattern turns 90-degree turns off by default and refuses them
    assert N2VConfig(struct_mask="horizontal").rotate is False
    assert N2VConfig(struct_mask="vertical", augment=False, rotate=True).rotate is True
    assert N2VConfig(struct_mask="cross").rotate is True
    assert N2VConfig().rotate is True
    with pytest.raises(ValidationError, match="rotate=True"):
        N2VConfig(struct_mask="horizontal", rotate=True)
    with pytest.raises(ValidationError, match="odd"):
        N2VConfig(struct_mask="horizontal", struct_span=4)


@pytest.mark.parametrize("rotate", [True, False])
def test_augment_batch_mirror_only(rotate):
    rng = np.random.default_rng(0)
    patch = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x = np.repeat(patch, 200, axis=0)
    out, same = augment_batch(x, x.copy(), rng, rotate=rotate)
    assert np.array_equal(out, same)
    mirrors = {np.asarray(p).tobytes() for p in (patch, patch[..., ::-1], patch[..., ::-1, :],
                                                  patch[..., ::-1, ::-1])}
    seen = {o.tobytes() for o in out[:, None]}
    if rotate:
        assert len(seen) == 8 and mirrors < seen
    else:
        assert seen == mirrors


def test_tta_mirrors_only():
    calls = []

    def blur_x(b):  # equivariant to the mirrors, not to 90-degree turns
        calls.append(1)
        return convolve1d(b, [0.25, 0.5, 0.25], axis=-1, mode="reflect")

    x = np.random.default_rng(1).random((2, 9, 9)).astype(np.float32)
    ref = blur_x(x)
    calls.clear()
    out = tta_predict(blur_x, x, ndim_spatial=2, rotations=False)
    assert len(calls) == len(MIRRORS) == 4
    np.testing.assert_allclose(out, ref, atol=1e-6)
    full = tta_predict(blur_x, x, ndim_spatial=2)
    assert len(calls) == 4 + len(TRANSFORMS)
    assert np.abs(full - ref).max() > 0.01  # the turns mix in a Y blur


def _row_correlated(shape, seed, photons=30.0, sigma=4.0):
    """A phantom with shot noise plus read noise correlated along X (3-pixel box)."""
    rng = np.random.default_rng(seed)
    clean = (make_phantom("mixed", shape, seed=seed) * photons + 2.0).astype(np.float32)
    read = convolve1d(rng.normal(size=shape), np.ones(3) / np.sqrt(3), axis=-1) * sigma
    return clean, (rng.poisson(clean) + read).astype(np.float32)


def test_structn2v_removes_row_correlated_noise(tmp_path):
    """Plain N2V reads the correlated part of the noise from the masked pixel's row
    neighbours and keeps it as signal; structN2V hides them and removes it."""
    clean, noisy = _row_correlated((96, 96), 1)
    rng_x = float(clean.max() - clean.min())
    small = dict(steps=300, patch_size=32, batch_size=8, depth=2, base_filters=16,
                 masked_pixel_percentage=3.0, validation_interval=50, validation_patches=8)
    scores = {}
    for struct in ("none", "horizontal"):
        m = Noise2Void(struct_mask=struct, **small).fit(noisy, axes="YX")
        out = m.predict(noisy, "YX")
        scores[struct] = psnr(out, clean, data_range=rng_x)
    noisy_psnr = psnr(noisy, clean, data_range=rng_x)
    # measured: noisy 16.9, N2V 20.3, structN2V 23.5 dB (phantom seeds 2 and 3: +4.8 and
    # +2.5 dB over N2V)
    assert scores["horizontal"] > noisy_psnr + 5.0, (noisy_psnr, scores)
    assert scores["horizontal"] > scores["none"] + 1.5, (noisy_psnr, scores)
    # the struct settings and the mirror-only augmentation are saved with the model
    m.save(tmp_path / "model")
    back = load_model_method(tmp_path / "model")
    assert back.config.struct_mask == "horizontal" and back.config.rotate is False
    assert back.model_config.training_data["masking"]["struct_mask"] == "horizontal"
    np.testing.assert_array_equal(back.predict(noisy, "YX"), out)
