"""Tiled prediction equals whole-image prediction; lazy reads; batching; outputs; methods."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.core.errors import AxesError, ConfigError, DataError
from fluorecon.methods.base import Method, MethodConfig
from fluorecon.predict import plan_tiles, predict_method_tiled, predict_tiled

SHAPES = {2: (37, 53), 3: (11, 29, 40)}
TILES = {2: (16, 20), 3: (5, 12, 13)}


def _roundup(n: int, d: int) -> int:
    return -(-n // d) * d


def _kernel(nd: int, h: int) -> np.ndarray:
    """Asymmetric positive kernel of half-width ``h``: detects any crop offset error."""
    k = np.random.default_rng(7).random((2 * h + 1,) * nd)
    return (k / k.sum()).astype(np.float32)


def local_fn(nd: int, h: int, mode: str) -> Any:
    """Correlation with support exactly ``[-h, h]`` per axis, then a pixel-wise nonlinearity."""
    k = _kernel(nd, h)[None]

    def fn(batch: np.ndarray) -> np.ndarray:
        y = ndimage.correlate(batch, k, mode=mode, cval=0.0)
        return y * y + 0.5 * y

    return fn


def pooled_fn(nd: int, d: int) -> Any:
    """A tiny 'U-Net': d-block average pooling, 3-tap coarse filter (zero border), nearest
    upsampling, plus a 3-tap fine filter. Equivariant only to shifts by multiples of ``d``;
    receptive field ``2 d - 1``."""
    kc, kf = _kernel(nd, 1)[None], _kernel(nd, 1)[None] * 0.5

    def fn(batch: np.ndarray) -> np.ndarray:
        b, *sp = batch.shape
        assert all(s % d == 0 for s in sp)
        shp = [b]
        for s in sp:
            shp += [s // d, d]
        pooled = batch.reshape(shp).mean(axis=tuple(range(2, 2 + 2 * nd, 2)))
        coarse = ndimage.correlate(pooled, kc, mode="constant")
        for ax in range(1, nd + 1):
            coarse = np.repeat(coarse, d, axis=ax)
        return coarse + ndimage.correlate(batch, kf, mode="constant")

    return fn


def whole(fn: Any, img: np.ndarray, div: tuple[int, ...], pad_mode: str = "reflect"
          ) -> np.ndarray:
    """Whole-image prediction: pad the end to multiples of ``div``, apply, crop."""
    padded = np.pad(img, [(0, _roundup(n, d) - n) for n, d in zip(img.shape, div)],
                    mode=pad_mode)
    out = fn(padded[None].astype(np.float32))[0]
    return out[tuple(slice(0, n) for n in img.shape)]


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("halo", [0, 1, 4])
@pytest.mark.parametrize("mode", ["reflect", "constant", "nearest"])
def test_tiled_equals_whole_image_for_local_function(nd, halo, mode, rng):
    """divisible_by=1: tiled == fn(image), borders included, whatever fn's border rule."""
    img = rng.random(SHAPES[nd]).astype(np.float32)
    fn = local_fn(nd, halo, mode)
    ref = fn(img[None])[0]
    tiled = predict_tiled(fn, img, "ZYX"[-nd:], tile_shape=TILES[nd], halo=halo)
    assert len(plan_tiles(img.shape, tile_shape=TILES[nd], halo=halo)) >= 4
    assert tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("nd", [2, 3])
def test_too_small_halo_is_detected(nd, rng):
    """The equality test can fail: one pixel too little halo gives visible seams."""
    img = rng.random(SHAPES[nd]).astype(np.float32)
    fn = local_fn(nd, 3, "reflect")
    tiled = predict_tiled(fn, img, "ZYX"[-nd:], tile_shape=TILES[nd], halo=2)
    assert np.abs(tiled - fn(img[None])[0]).max() > 1e-3


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("div", [4, 8])
@pytest.mark.parametrize("pad_mode", ["reflect", "symmetric"])
def test_tiled_equals_whole_image_with_divisibility(nd, div, pad_mode, rng):
    """A down-sampling function: exact when windows sit on the d-grid and are padded as
    whole-image prediction pads (at the end, to a multiple of d)."""
    img = rng.random(SHAPES[nd]).astype(np.float32)
    fn = pooled_fn(nd, div)
    divs = (div,) * nd
    ref = whole(fn, img, divs, pad_mode)
    tiled = predict_tiled(fn, img, "ZYX"[-nd:], tile_shape=TILES[nd], halo=2 * div - 1,
                          divisible_by=div, pad_mode=pad_mode)
    np.testing.assert_allclose(tiled, ref, rtol=0, atol=1e-6)


def test_tiled_equals_whole_image_anisotropic_3d(rng):
    img = rng.random((11, 29, 40)).astype(np.float32)
    fn = pooled_fn(3, 2)
    tiles = plan_tiles(img.shape, tile_shape=(3, 8, 9), halo=(3, 3, 5), divisible_by=2)
    assert max(t.index[0] for t in tiles) >= 1   # several tiles along Z too
    tiled = predict_tiled(fn, img, "ZYX", tile_shape=(3, 8, 9), halo=(3, 3, 5),
                          divisible_by=2)
    np.testing.assert_allclose(tiled, whole(fn, img, (2, 2, 2)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("nd", [2, 3])
def test_batching_matches_single_tiles(nd, rng):
    img = rng.random((3, *SHAPES[nd])).astype(np.float32)
    seen: list[int] = []
    base = local_fn(nd, 2, "reflect")

    def fn(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape[0])
        return base(batch)

    axes = "T" + "ZYX"[-nd:]
    one = predict_tiled(fn, img, axes, tile_shape=TILES[nd], halo=2, batch_size=1)
    assert set(seen) == {1}
    n_tiles = len(seen)
    seen.clear()
    five = predict_tiled(fn, img, axes, tile_shape=TILES[nd], halo=2, batch_size=5)
    assert max(seen) == 5 and sum(seen) == n_tiles and len(seen) == math.ceil(n_tiles / 5)
    np.testing.assert_array_equal(one, five)


@pytest.mark.parametrize("axes", ["CYX", "YXC", "TZCYX"])
def test_non_spatial_axes_are_looped(axes, rng):
    sizes = {"T": 2, "C": 3, "Z": 7, "Y": 21, "X": 26}
    img = rng.random([sizes[a] for a in axes]).astype(np.float32)
    nd = sum(a in "ZYX" for a in axes)
    fn = local_fn(nd, 2, "reflect")
    tiled = predict_tiled(fn, img, axes, tile_shape=9, halo=2)
    # reference: move spatial axes last, apply to every block
    sp = [i for i, a in enumerate(axes) if a in "ZYX"]
    lead = [i for i, a in enumerate(axes) if a not in "ZYX"]
    moved = np.transpose(img, lead + sp)
    ref = fn(moved.reshape(-1, *moved.shape[len(lead):])).reshape(moved.shape)
    np.testing.assert_allclose(np.transpose(tiled, lead + sp), ref, atol=1e-6,
                               rtol=0)


def test_integer_input_by_value_and_not_modified(rng):
    img = rng.integers(0, 4000, size=(37, 53)).astype(np.uint16)
    before = img.copy()
    fn = local_fn(2, 1, "reflect")
    tiled = predict_tiled(fn, img, "YX", tile_shape=12, halo=1)
    np.testing.assert_array_equal(img, before)
    ref = fn(img.astype(np.float32)[None])[0]
    np.testing.assert_allclose(tiled, ref, rtol=1e-6, atol=0)


class CountingArray:
    """Array-like that records the shape of every read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim
        self.reads: list[tuple[int, ...]] = []

    def __getitem__(self, index: Any) -> np.ndarray:
        out = np.asarray(self.array[index])
        self.reads.append(out.shape)
        return out


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("div", [1, 4])
def test_memmap_read_tile_by_tile(nd, div, tmp_path, rng):
    shape = (2, *SHAPES[nd])
    mm = np.lib.format.open_memmap(tmp_path / "img.npy", mode="w+", dtype=np.uint16,
                                   shape=shape)
    mm[:] = rng.integers(0, 1000, size=shape)
    mm.flush()
    src = CountingArray(np.load(tmp_path / "img.npy", mmap_mode="r"))
    assert isinstance(src.array, np.memmap)
    fn = pooled_fn(nd, div) if div > 1 else local_fn(nd, 3, "reflect")
    halo = 2 * div - 1 if div > 1 else 3
    tiles = plan_tiles(shape[1:], tile_shape=TILES[nd], halo=halo, divisible_by=div)
    tiled = predict_tiled(fn, src, "S" + "ZYX"[-nd:], tile_shape=TILES[nd], halo=halo,
                          divisible_by=div)
    in_shape = tiles[0].input_shape
    assert len(src.reads) == 2 * len(tiles)
    for r in src.reads:      # one spatial block of at most one window (tile + halo)
        assert len(r) == nd and all(a <= b for a, b in zip(r, in_shape))
    ref = np.stack([whole(fn, np.asarray(src.array[i], np.float32), (div,) * nd)
                    for i in range(2)])
    np.testing.assert_allclose(tiled, ref, rtol=0, atol=1e-4)


def test_dask_input_computed_per_tile(rng):
    da = pytest.importorskip("dask.array")
    img = rng.random((37, 53)).astype(np.float32)
    src = CountingArray(img)
    lazy = da.from_array(src, chunks=(8, 8), asarray=False)
    fn = local_fn(2, 2, "reflect")
    tiled = predict_tiled(fn, lazy, "YX", tile_shape=(10, 12), halo=2)
    np.testing.assert_allclose(tiled, fn(img[None])[0], rtol=0, atol=1e-6)
    tiles = plan_tiles(img.shape, tile_shape=(10, 12), halo=2)
    # only chunks under each tile's read region are computed, one chunk per read
    bound = 0
    for t in tiles:
        cy = range(t.read_slices[0].start // 8, (t.read_slices[0].stop - 1) // 8 + 1)
        cx = range(t.read_slices[1].start // 8, (t.read_slices[1].stop - 1) // 8 + 1)
        bound += len(cy) * len(cx)
    reads = [r for r in src.reads if math.prod(r) > 0]   # dask probes (0, 0) for its meta
    assert all(r[0] <= 8 and r[1] <= 8 for r in reads)
    assert len(reads) <= bound


def test_zarr_input_and_output(rng):
    zarr = pytest.importorskip("zarr")
    img = rng.random((2, 29, 40)).astype(np.float32)
    zin = zarr.create_array(store=zarr.storage.MemoryStore(), shape=img.shape,
                            chunks=(1, 16, 16), dtype="float32")
    zin[:] = img
    zout = zarr.create_array(store=zarr.storage.MemoryStore(), shape=img.shape,
                             chunks=(1, 16, 16), dtype="float32")
    fn = local_fn(2, 2, "constant")
    res = predict_tiled(fn, zin, "CYX", tile_shape=13, halo=2, out=zout)
    assert res is zout
    np.testing.assert_allclose(zout[:], fn(img), rtol=0, atol=1e-6)


def test_out_numpy_written_in_place(rng):
    img = rng.random((37, 53)).astype(np.float32)
    out = np.full(img.shape, np.nan, dtype=np.float64)
    res = predict_tiled(local_fn(2, 1, "reflect"), img, "YX", tile_shape=8, halo=1, out=out)
    assert res is out and np.isfinite(out).all()


@pytest.mark.parametrize("batch_size", [1, 4])
def test_progress_reports_tiles_over_all_blocks(batch_size, rng):
    img = rng.random((3, 37, 53)).astype(np.float32)
    calls: list[tuple[int, int]] = []
    predict_tiled(local_fn(2, 1, "reflect"), img, "TYX", tile_shape=16, halo=1,
                  batch_size=batch_size, progress=lambda d, t: calls.append((d, t)))
    n = 3 * len(plan_tiles((37, 53), tile_shape=16, halo=1))
    assert calls[-1] == (n, n)
    assert all(t == n for _, t in calls)
    assert [d for d, _ in calls] == sorted({d for d, _ in calls})
    assert len(calls) == math.ceil(n / batch_size)


def test_automatic_tile_shape_uses_budget(rng):
    img = rng.random((64, 80)).astype(np.float32)
    shapes: list[tuple[int, ...]] = []
    base = local_fn(2, 2, "reflect")

    def fn(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return base(batch)

    budget = 32 * 32 * 16
    tiled = predict_tiled(fn, img, "YX", halo=2, memory_budget_bytes=budget,
                          bytes_per_voxel=16, batch_size=2)
    assert all(16 * math.prod(s) <= budget for s in shapes)
    assert len(shapes) > 1
    np.testing.assert_allclose(tiled, base(img[None])[0], rtol=0, atol=1e-6)


def test_default_budget_is_raised_for_halo_bound_tiles(rng, monkeypatch):
    """Without a budget, tiles that would be mostly halo (or not fit 256 MiB at all) get a
    larger budget, up to a quarter of the available memory; an explicit budget is a hard
    limit. The result still equals the whole-image prediction."""
    from fluorecon.predict import tiling

    monkeypatch.setattr(tiling, "available_memory_bytes", lambda: 2.0**34)
    img = rng.random((11, 29, 40)).astype(np.float32)
    shapes: list[tuple[int, ...]] = []
    base = local_fn(3, 3, "reflect")

    def fn(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return base(batch)

    bpv = 2.0**28 / 500  # the smallest tile window (about 11 x 14 x 14) needs > 256 MiB
    with pytest.raises(ConfigError, match="budget"):
        predict_tiled(fn, img, "ZYX", halo=3, memory_budget_bytes=2**28, bytes_per_voxel=bpv)
    tiled = predict_tiled(fn, img, "ZYX", halo=3, bytes_per_voxel=bpv)
    assert bpv * math.prod(shapes[-1][1:]) <= 2.0**34 / 4
    np.testing.assert_allclose(tiled, base(img[None])[0], rtol=0, atol=1e-6)
    monkeypatch.setattr(tiling, "available_memory_bytes", lambda: 2.0**28)  # no headroom
    with pytest.raises(ConfigError, match="budget"):
        predict_tiled(fn, img, "ZYX", halo=3, bytes_per_voxel=bpv)


def test_errors_are_one_line(rng):
    img = rng.random((20, 30)).astype(np.float32)
    fn = local_fn(2, 1, "reflect")
    cases = [
        (ConfigError, dict(batch_size=0)),
        (ConfigError, dict(out=np.zeros((20, 31), np.float32))),
        (ConfigError, dict(tile_shape=(8, 8, 8))),
        (ConfigError, dict(pad_mode="wrap")),
        (ConfigError, dict(halo=-2)),
    ]
    for exc, kw in cases:
        args = {"tile_shape": 8, "halo": 1} | kw
        with pytest.raises(exc, match="^Got ") as info:
            predict_tiled(fn, img, "YX", **args)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="^Got fn"):
        predict_tiled("not callable", img, "YX", tile_shape=8, halo=1)  # type: ignore[arg-type]
    with pytest.raises(AxesError):
        predict_tiled(fn, img, "ZYX", tile_shape=8, halo=1)
    bad = img.copy()
    bad[15, 25] = np.nan
    with pytest.raises(DataError, match="NaN"):
        predict_tiled(fn, bad, "YX", tile_shape=8, halo=1)
    with pytest.raises(RuntimeError, match="keep the shape"):
        predict_tiled(lambda b: b[:, 1:], img, "YX", tile_shape=8, halo=1)


# -- methods -------------------------------------------------------------------------

class _LocalMethod(Method):
    """Test method: asymmetric local filter with a bounded receptive field."""

    name: ClassVar[str] = "test-local"
    kind: ClassVar[str] = "denoise"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    half: ClassVar[int | None] = 2
    divisible_by: ClassVar[int] = 1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blocks: list[tuple[int, ...]] = []

    @property
    def receptive_field(self) -> int | None:
        return self.half

    def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
        self.blocks.append(block.shape)
        h = self.half if self.half is not None else 2
        return ndimage.correlate(block, _kernel(block.ndim, h), mode="constant")


class _PooledMethod(_LocalMethod):
    name: ClassVar[str] = "test-pooled"
    half: ClassVar[int | None] = 7
    divisible_by: ClassVar[int] = 4

    def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
        self.blocks.append(block.shape)
        div = self.divisible_by
        padded = np.pad(block, [(0, _roundup(n, div) - n) for n in block.shape],
                        mode="reflect")
        out = pooled_fn(block.ndim, div)(padded[None])[0]
        return out[tuple(slice(0, n) for n in block.shape)]


class _GlobalMethod(_LocalMethod):
    name: ClassVar[str] = "test-global"
    half: ClassVar[int | None] = None

    def predict_block(self, block: np.ndarray, axes: str) -> np.ndarray:
        return block - block.mean()


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("cls", [_LocalMethod, _PooledMethod])
def test_method_tiled_equals_method_predict(nd, cls, rng):
    img = rng.random((2, *SHAPES[nd])).astype(np.float32)
    axes = "C" + "ZYX"[-nd:]
    m = cls()
    ref = m.predict(img, axes)
    m.blocks.clear()
    calls: list[tuple[int, int]] = []
    tiled = predict_method_tiled(m, img, axes, tile_shape=TILES[nd],
                                 progress=lambda d, t: calls.append((d, t)))
    assert len(m.blocks) > 2 and len(set(m.blocks)) == 1
    assert all(s % cls.divisible_by == 0 for s in m.blocks[0])
    assert calls[-1][0] == calls[-1][1] == len(m.blocks)
    np.testing.assert_allclose(tiled, ref, rtol=0, atol=1e-6)


def test_method_unbounded_receptive_field(rng):
    img = rng.random((37, 53)).astype(np.float32)
    m = _GlobalMethod()
    with pytest.raises(ConfigError, match="unbounded") as info:
        predict_method_tiled(m, img, "YX", tile_shape=16)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unbounded"):
        predict_method_tiled(m, img, "YX", memory_budget_bytes=1000, bytes_per_voxel=4)
    # no tiling needed: whole blocks, same as predict
    np.testing.assert_allclose(predict_method_tiled(m, img, "YX"), m.predict(img, "YX"),
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(predict_method_tiled(m, img, "YX", tile_shape=64),
                               m.predict(img, "YX"), rtol=0, atol=1e-6)


def test_method_dimensionality_checked(rng):
    class Only2D(_LocalMethod):
        spatial_dims: ClassVar[tuple[int, ...]] = (2,)

    with pytest.raises(AxesError, match="2D spatial data"):
        predict_method_tiled(Only2D(), rng.random((5, 8, 8)).astype(np.float32), "ZYX",
                             tile_shape=4)


# -- a tiny untrained U-Net (zero-padded convolutions, pooling, upsampling) ----------------

@pytest.mark.parametrize(("nd", "shape", "depth", "tile"), [
    (2, (70, 91), 2, (12, 16)),
    (3, (11, 29, 40), 1, (4, 6, 8)),
])
def test_untrained_unet_tiled_equals_whole_image(nd, shape, depth, tile, rng):
    torch = pytest.importorskip("torch")
    from fluorecon.methods.learned.unet import UNet, UNetConfig

    cfg = UNetConfig(ndim=nd, depth=depth, base_filters=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = UNet(cfg).double().eval()

    def fn(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(batch.astype(np.float64))[:, None])[:, 0].numpy()

    img = rng.random(shape).astype(np.float32)
    div, rf = cfg.divisible_by, cfg.receptive_field
    assert len(plan_tiles(shape, tile_shape=tile, halo=rf, divisible_by=div)) >= 4
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny convolutions: threads only contend on shared CPUs
    try:
        ref = whole(fn, img, (div,) * nd).astype(np.float32)
        tiled = predict_tiled(fn, img, "ZYX"[-nd:], tile_shape=tile, halo=rf,
                              divisible_by=div, batch_size=2)
        short = predict_tiled(fn, img, "ZYX"[-nd:], tile_shape=tile, halo=rf // 4,
                              divisible_by=div)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(tiled, ref, rtol=1e-6, atol=1e-6)
    assert np.abs(short - ref).max() > 2e-5   # too little halo shows (20x the tolerance)


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("axes_kind", ["C_first", "T_and_C"])
def test_joint_channels_map_c_in_to_c_out(nd, axes_kind, rng):
    """A channel-mixing local function: tiles see all channels and may change their count."""
    h = 2
    sp = SHAPES[nd]
    axes = ("TC" if axes_kind == "T_and_C" else "C") + "ZYX"[3 - nd:]
    shape = ((2,) if axes_kind == "T_and_C" else ()) + (3,) + sp
    img = rng.random(shape).astype(np.float32)
    mix = np.array([[1.0, -2.0, 0.5], [0.25, 0.0, 3.0]], np.float32)  # 3 -> 2 channels
    k = _kernel(nd, h)

    def fn(batch: np.ndarray) -> np.ndarray:  # (B, 3, *sp) -> (B, 2, *sp)
        assert batch.shape[1] == 3
        mixed = np.einsum("oc,bc...->bo...", mix, batch)
        return np.stack([np.stack([ndimage.convolve(c, k, mode="mirror") for c in b])
                         for b in mixed]).astype(np.float32)

    whole = (fn(img[None])[0] if axes_kind == "C_first"
             else np.stack([fn(t[None])[0] for t in img]))
    tiled = predict_tiled(fn, img, axes, tile_shape=TILES[nd], halo=h, batch_size=3,
                          joint_channels=True, out_channels=2)
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5)


def test_joint_channels_errors(rng):
    img = rng.random((2, 16, 16)).astype(np.float32)
    with pytest.raises(ConfigError, match="C axis"):
        predict_tiled(lambda b: b, img[0], "YX", halo=0, joint_channels=True)
    with pytest.raises(ConfigError, match="joint_channels"):
        predict_tiled(lambda b: b, img, "CYX", halo=0, out_channels=3)
    with pytest.raises(RuntimeError, match="must return"):
        predict_tiled(lambda b: b, img, "CYX", halo=0, tile_shape=8, joint_channels=True,
                      out_channels=1)
