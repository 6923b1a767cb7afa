"""Blended overlapping tiles (seamless, convex) and test-time augmentation (D4 average)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.core.errors import ConfigError, DataError
from fluorecon.predict import (
    TRANSFORMS,
    predict_blended,
    predict_tiled,
    ramp,
    tta_predict,
    with_tta,
)

SHAPES = {2: (37, 53), 3: (11, 29, 40)}


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("length", [1, 2, 7, 16])
def test_ramps_are_complementary_and_positive(kind, length):
    r = ramp(length, kind)
    assert r.shape == (length,) and (r > 0).all() and (r < 1).all()
    np.testing.assert_allclose(r + r[::-1], 1.0, atol=1e-12)
    assert (np.diff(r) > 0).all()


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("blend", ["linear", "cosine"])
@pytest.mark.parametrize("div", [1, 4])
def test_blend_of_identical_tiles_is_exact(nd, blend, div, rng):
    """Weights are normalised: a pixel-wise fn comes back unchanged (weights sum to 1)."""
    img = rng.random(SHAPES[nd]).astype(np.float32)
    calls: list[tuple[int, ...]] = []

    def fn(b: np.ndarray) -> np.ndarray:
        calls.append(b.shape)
        return 3 * b + 1

    res = predict_blended(fn, img, "ZYX"[-nd:], tile_shape=(8,) * (nd - 2) + (16, 20),
                          overlap=(2,) * (nd - 2) + (6, 6), blend=blend, divisible_by=div)
    assert len(calls) >= 4 and len({c for c in calls}) == 1
    assert res.dtype == np.float32
    np.testing.assert_allclose(res, 3 * img + 1, rtol=2e-6, atol=2e-6)


def _tile_dependent(b: np.ndarray) -> np.ndarray:
    """Output depends on the whole tile (unbounded receptive field): adds the tile mean."""
    axes = tuple(range(1, b.ndim))
    return b + b.mean(axis=axes, keepdims=True)


@pytest.mark.parametrize("blend", ["linear", "cosine"])
def test_constant_input_gives_constant_output(blend):
    img = np.full((37, 53), 5.0, dtype=np.float32)
    res = predict_blended(_tile_dependent, img, "YX", tile_shape=16, overlap=6, blend=blend)
    np.testing.assert_allclose(res, 10.0, rtol=1e-6)


@pytest.mark.parametrize("nd", [2, 3])
def test_ramp_has_no_seams_where_crop_stitch_has_steps(nd):
    """A smooth ramp stays smooth: blending spreads tile differences over the overlap."""
    shape = SHAPES[nd]
    img = np.broadcast_to(np.linspace(0, 10, shape[-1], dtype=np.float32), shape).copy()
    slope = 10 / (shape[-1] - 1)
    tile = (8,) * (nd - 2) + (16, 16)
    stitched = predict_tiled(_tile_dependent, img, "ZYX"[-nd:], tile_shape=tile, halo=0)
    blended = predict_blended(_tile_dependent, img, "ZYX"[-nd:], tile_shape=tile,
                              overlap=(2,) * (nd - 2) + (8, 8), blend="cosine")
    step_stitched = np.abs(np.diff(stitched, axis=-1) - slope).max()
    step_blended = np.abs(np.diff(blended, axis=-1) - slope).max()
    # crop-stitch jumps by the difference of tile means (~ slope * tile width)
    assert step_stitched > 8 * slope
    # blending: the same difference spread over >= 8 pixels by a cosine (max slope pi/2/L)
    assert step_blended < 0.3 * step_stitched
    # the ramp stays monotone and varies only along X
    assert (np.diff(blended, axis=-1) > 0).all()
    np.testing.assert_allclose(np.diff(blended, axis=-2), 0, atol=1e-5)


def test_blend_out_zarr_and_progress(rng):
    zarr = pytest.importorskip("zarr")
    img = rng.random((2, 29, 40)).astype(np.float32)
    zout = zarr.create_array(store=zarr.storage.MemoryStore(), shape=img.shape,
                             chunks=(1, 16, 16), dtype="float32")
    zout[:] = 99.0   # must be overwritten, not accumulated onto
    calls: list[tuple[int, int]] = []
    res = predict_blended(lambda b: b, img, "CYX", tile_shape=16, overlap=4, out=zout,
                          batch_size=3, progress=lambda d, t: calls.append((d, t)))
    assert res is zout
    np.testing.assert_allclose(zout[:], img, atol=2e-6)
    assert calls[-1][0] == calls[-1][1]


def test_blend_errors():
    img = np.zeros((32, 32), np.float32)
    with pytest.raises(ConfigError, match="overlap=15"):
        predict_blended(lambda b: b, img, "YX", tile_shape=16, overlap=15, divisible_by=4)
    with pytest.raises(ConfigError, match="blend='gaussian'"):
        predict_blended(lambda b: b, img, "YX", tile_shape=16, overlap=4,
                        blend="gaussian")  # type: ignore[arg-type]


# -- test-time augmentation --------------------------------------------------------------

def _symmetric_gaussian(b: np.ndarray) -> np.ndarray:
    sigma = (0,) + (1.5,) * (b.ndim - 1)
    if b.ndim == 4:
        sigma = (0, 0.8, 1.5, 1.5)    # anisotropic Z; YX still rotation-symmetric
    return ndimage.gaussian_filter(b, sigma=sigma, mode="reflect")


@pytest.mark.parametrize(("nd", "shape"), [(2, (2, 16, 16)), (2, (3, 9, 14)),
                                           (3, (2, 5, 12, 12)), (3, (1, 4, 7, 10))])
def test_tta_exact_for_equivariant_function(nd, shape, rng):
    x = rng.random(shape).astype(np.float32)
    before = x.copy()
    res = tta_predict(_symmetric_gaussian, x, ndim_spatial=nd)
    np.testing.assert_array_equal(x, before)
    assert res.dtype == np.float32 and res.shape == x.shape
    np.testing.assert_allclose(res, _symmetric_gaussian(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("nd", [2, 3])
def test_tta_of_shift_is_mean_of_four_shifts(nd, rng):
    """Conjugating a +1 X shift by D4 gives +-1 shifts along Y and X, each twice."""
    x = rng.random((2,) + (4,) * (nd - 2) + (9, 11)).astype(np.float32)
    res = tta_predict(lambda b: np.roll(b, 1, axis=-1), x, ndim_spatial=nd)
    ref = sum(np.roll(x, s, axis=a) for s in (1, -1) for a in (-1, -2)) / 4
    np.testing.assert_allclose(res, ref, rtol=0, atol=1e-6)


def test_tta_calls_fn_eight_times_with_transposed_shapes(rng):
    shapes: list[tuple[int, ...]] = []

    def fn(b):
        shapes.append(b.shape)
        return b

    x = rng.random((2, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(tta_predict(fn, x, ndim_spatial=2), x, atol=1e-7)
    assert len(shapes) == len(TRANSFORMS) == 8
    assert set(shapes) == {(2, 5, 7), (2, 7, 5)}


def test_tiled_tta_equals_whole_image_tta(rng):
    """TTA commutes with exact tiling for a local function."""
    img = rng.random((37, 53)).astype(np.float32)
    k = rng.random((1, 5, 5)).astype(np.float32)

    def fn(b):
        return ndimage.correlate(b, k, mode="constant")

    tta_fn = with_tta(fn, ndim_spatial=2)
    tiled = predict_tiled(tta_fn, img, "YX", tile_shape=(12, 16), halo=2)
    np.testing.assert_allclose(tiled, tta_fn(img[None])[0], rtol=0, atol=1e-5)
    assert np.abs(tiled - fn(img[None])[0]).max() > 1e-3   # TTA did change the result


def test_tta_errors(rng):
    with pytest.raises(ConfigError, match="ndim_spatial=4"):
        tta_predict(lambda b: b, np.zeros((1, 4, 4, 4, 4)), ndim_spatial=4)
    with pytest.raises(DataError, match="batch axis"):
        tta_predict(lambda b: b, np.zeros((4, 4)), ndim_spatial=2)
    with pytest.raises(RuntimeError, match="keep the shape"):
        tta_predict(lambda b: b[:, :2], np.zeros((1, 4, 4)), ndim_spatial=2)
