"""The tile planner: coverage, shapes, alignment, halo containment, memory budget, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError
from fluorecon.predict import (
    AUTO_MAX_OVERHEAD,
    auto_tile_shape,
    choose_tile_shape,
    computed_fraction,
    plan_tiles,
    window_size,
)
from fluorecon.predict.tiling import available_memory_bytes

CASES = [
    # shape, tile_shape, halo, divisible_by
    ((37, 53), (16, 20), 3, 1),
    ((37, 53), 16, 3, 4),
    ((37, 53), (10, 13), 5, 8),
    ((37, 53), 7, 0, 4),
    ((5, 6), 16, 2, 8),             # image smaller than one tile
    ((1, 9), 4, 1, 1),              # single row
    ((11, 29, 40), (5, 12, 16), (1, 3, 3), (2, 8, 8)),
    ((11, 29, 40), 8, 2, 4),
    ((11, 29, 40), (4, 9, 11), 0, 1),
    ((3, 7, 5), 64, 4, 8),
]


def _roundup(n: int, d: int) -> int:
    return -(-n // d) * d


def _per_axis(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


@pytest.mark.parametrize(("shape", "tile", "halo", "div"), CASES)
def test_write_slices_partition_the_image(shape, tile, halo, div):
    tiles = plan_tiles(shape, tile_shape=tile, halo=halo, divisible_by=div)
    count = np.zeros(shape, dtype=np.int32)
    for t in tiles:
        count[t.write_slices] += 1
        assert t.write_shape == tuple(s.stop - s.start for s in t.crop_slices)
        assert all(s.stop > s.start for s in t.write_slices)
    np.testing.assert_array_equal(count, 1)


@pytest.mark.parametrize(("shape", "tile", "halo", "div"), CASES)
def test_inputs_equal_and_divisible_windows_aligned(shape, tile, halo, div):
    nd = len(shape)
    divs = _per_axis(div, nd)
    tiles = plan_tiles(shape, tile_shape=tile, halo=halo, divisible_by=div)
    in_shapes = {t.input_shape for t in tiles}
    assert len(in_shapes) == 1
    (in_shape,) = in_shapes
    assert all(p % d == 0 for p, d in zip(in_shape, divs))
    assert all(p <= _roundup(n, d) for p, n, d in zip(in_shape, shape, divs))
    for t in tiles:
        for r, pad, inp, d, n, p in zip(t.read_slices, t.pad, t.input_slices, divs, shape,
                                        in_shape):
            assert 0 <= r.start < r.stop <= n
            assert r.stop - r.start <= p            # never read more than one window
            assert pad[0] == 0 and 0 <= pad[1] < d  # padding only to reach the multiple
            start = r.start + inp.start              # window start in image coordinates
            assert start % d == 0


@pytest.mark.parametrize(("shape", "tile", "halo", "div"), CASES)
def test_every_written_pixel_sees_its_halo(shape, tile, halo, div):
    """Window edges are at least ``halo`` from written pixels, unless they are borders."""
    nd = len(shape)
    halos, divs = _per_axis(halo, nd), _per_axis(div, nd)
    for t in plan_tiles(shape, tile_shape=tile, halo=halo, divisible_by=div):
        for r, inp, crop, w, h, d, n in zip(t.read_slices, t.input_slices, t.crop_slices,
                                            t.write_slices, halos, divs, shape):
            a = r.start + inp.start
            b = a + (inp.stop - inp.start)
            assert crop.start == w.start - a and crop.stop == w.stop - a
            assert a == 0 or a <= w.start - h
            assert b == _roundup(n, d) or b >= w.stop + h


def test_tile_count_is_minimal_and_cores_balanced():
    # 1D count: 1 + ceil((N - P) / (d * floor((P - 2h) / d))).
    n, t, h, d = 1000, 100, 7, 8
    tiles = plan_tiles((n, 16), tile_shape=(t, 16), halo=(h, 0), divisible_by=(d, 1))
    p = window_size(n, t, h, d)
    expected = 1 + math.ceil((_roundup(n, d) - p) / (d * ((p - 2 * h) // d)))
    assert len(tiles) == expected
    sizes = [tl.write_shape[0] for tl in tiles]
    assert max(sizes) - min(sizes) <= 2 * d + h


def test_halo_larger_than_image_gives_one_tile():
    tiles = plan_tiles((11, 29, 40), tile_shape=4, halo=50)
    assert len(tiles) == 1
    assert tiles[0].input_shape == (11, 29, 40)
    assert tiles[0].write_slices == (slice(0, 11), slice(0, 29), slice(0, 40))


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "edge"])
@pytest.mark.parametrize(("shape", "tile", "halo", "div"), [
    ((17, 23), 8, 0, 8), ((3, 30), 4, 1, 8), ((13, 9, 22), (2, 4, 5), 1, (4, 4, 8))])
def test_read_input_equals_slice_of_padded_image(mode, shape, tile, halo, div, rng):
    """Each network input is a window of the whole image padded at its end by ``mode``."""
    img = rng.random(shape).astype(np.float32)
    divs = _per_axis(div, len(shape))
    full = np.pad(img, [(0, _roundup(n, d) - n) for n, d in zip(shape, divs)], mode=mode)
    for t in plan_tiles(shape, tile_shape=tile, halo=halo, divisible_by=div, pad_mode=mode):
        x = t.read_input(img[t.read_slices], mode)
        starts = [r.start + i.start for r, i in zip(t.read_slices, t.input_slices)]
        win = tuple(slice(a, a + p) for a, p in zip(starts, t.input_shape))
        np.testing.assert_array_equal(x, full[win])


def _computed(shape, tile, halo, div):
    """Voxels the network computes for a plan, and its window volume."""
    plan = plan_tiles(shape, tile_shape=tile, halo=halo, divisible_by=div)
    window = math.prod(plan[0].input_shape)
    return len(plan) * window, window, len(plan)


@pytest.mark.parametrize(("shape", "halo", "div"), [((300, 260), 8, 8), ((37, 53), 3, 4),
                                                    ((20, 90, 70), (2, 6, 6), (1, 4, 4))])
@pytest.mark.parametrize("budget", [2**16, 2**19, 2**22])
def test_choose_tile_shape_fits_and_computes_least(shape, halo, div, budget):
    """Against brute force over every tile shape on the d-grid: the chosen plan fits the
    budget and no fitting plan computes fewer voxels."""
    bpv = 8.0
    nd = len(shape)
    halos, divs = _per_axis(halo, nd), _per_axis(div, nd)
    grids = [range(d, _roundup(n, d) + 1, d) for n, d in zip(shape, divs)]
    feasible = []
    for tile in itertools.product(*grids):
        total, window, count = _computed(shape, tile, halos, divs)
        if bpv * window <= budget:
            feasible.append((total, count))
    try:
        tile = choose_tile_shape(shape, bytes_per_voxel=bpv, memory_budget_bytes=budget,
                                 halo=halo, divisible_by=div, min_tile=1)
    except ConfigError:
        assert not feasible
        return
    total, window, count = _computed(shape, tile, halos, divs)
    assert bpv * window <= budget
    assert all(t % d == 0 for t, d in zip(tile, divs))
    assert (total, count) <= min(feasible)


def test_choose_tile_shape_splits_one_axis_and_pays_one_halo_per_boundary():
    """A budget just short of the whole image: two tiles along one axis (not 2 x 2), each
    window half the image plus one halo, so the network computes n + 2h per split axis."""
    n, h = 1024, 23
    budget = 4.0 * n * n * 0.9
    tile = choose_tile_shape((n, n), bytes_per_voxel=4, memory_budget_bytes=budget, halo=h,
                             divisible_by=4)
    plan = plan_tiles((n, n), tile_shape=tile, halo=h, divisible_by=4)
    assert len(plan) == 2
    assert sorted(plan[0].input_shape) == [_roundup(n // 2 + h, 4), n]


def test_choose_tile_shape_whole_image_when_it_fits():
    assert choose_tile_shape((11, 29, 40), bytes_per_voxel=4, memory_budget_bytes=2**30,
                             halo=3, divisible_by=4) == (12, 32, 40)


def test_choose_tile_shape_batch_shares_budget():
    one = choose_tile_shape((4096, 4096), bytes_per_voxel=64, memory_budget_bytes=2**28,
                            halo=10, divisible_by=8)
    four = choose_tile_shape((4096, 4096), bytes_per_voxel=64, memory_budget_bytes=2**28,
                             halo=10, divisible_by=8, batch_size=4)
    def batch_cost(tile, batch):
        return batch * 64 * math.prod(window_size(4096, t, 10, 8) for t in tile)

    assert batch_cost(one, 1) <= 2**28 and batch_cost(four, 4) <= 2**28
    assert batch_cost(four, 1) < batch_cost(one, 1) / 2


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"tile_shape": (8, 8, 8)}, "one integer per spatial axis"),
    ({"tile_shape": 0}, "tile_shape=0"),
    ({"halo": -1}, "halo=-1"),
    ({"divisible_by": 0}, "divisible_by=0"),
    ({"pad_mode": "wrap"}, "pad_mode='wrap'"),
    ({"tile_shape": "big"}, "tile_shape='big'"),
])
def test_plan_tiles_bad_arguments_one_line(kwargs, text):
    args = {"tile_shape": 8, "halo": 1, "divisible_by": 1} | kwargs
    with pytest.raises(ConfigError, match="^Got .*" + text.replace("(", r"\(")) as info:
        plan_tiles((20, 30), **args)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5), (0, 4)])
def test_plan_tiles_bad_shape(shape):
    with pytest.raises(ConfigError, match="^Got "):
        plan_tiles(shape, tile_shape=4, halo=0)


def test_choose_tile_shape_errors():
    with pytest.raises(ConfigError, match="Raise the memory budget"):
        choose_tile_shape((512, 512), bytes_per_voxel=1024, memory_budget_bytes=1000, halo=4)
    with pytest.raises(ConfigError, match="bytes_per_voxel"):
        choose_tile_shape((512, 512), bytes_per_voxel=0, memory_budget_bytes=1e9, halo=4)
    with pytest.raises(ConfigError, match="memory_budget_bytes"):
        choose_tile_shape((512, 512), bytes_per_voxel=4, memory_budget_bytes=float("nan"),
                          halo=4)


def test_plan_is_deterministic_and_c_ordered():
    a = plan_tiles((11, 29, 40), tile_shape=(5, 12, 16), halo=2, divisible_by=2)
    b = plan_tiles((11, 29, 40), tile_shape=(5, 12, 16), halo=2, divisible_by=2)
    assert a == b
    idx = [t.index for t in a]
    assert idx == sorted(idx)
    assert idx == list(itertools.product(*(range(m + 1) for m in np.max(idx, axis=0))))


def test_random_plans_satisfy_all_invariants():
    """Seeded sweep over awkward sizes: partition, equal inputs, alignment, halo, reads."""
    rng = np.random.default_rng(2024)
    for _ in range(300):
        nd = int(rng.integers(2, 4))
        shape = tuple(int(v) for v in rng.integers(1, 90, size=nd))
        tile = tuple(int(v) for v in rng.integers(1, 40, size=nd))
        halo = tuple(int(v) for v in rng.integers(0, 12, size=nd))
        div = tuple(int(v) for v in rng.choice([1, 2, 4, 8, 16], size=nd))
        tiles = plan_tiles(shape, tile_shape=tile, halo=halo, divisible_by=div)
        count = np.zeros(shape, dtype=np.int32)
        (in_shape,) = {t.input_shape for t in tiles}
        for t in tiles:
            count[t.write_slices] += 1
            for r, inp, w, p, h, d, n in zip(t.read_slices, t.input_slices, t.write_slices,
                                             in_shape, halo, div, shape):
                a = r.start + inp.start
                assert a % d == 0 and p % d == 0 and r.stop - r.start <= p
                assert a == 0 or a <= w.start - h
                assert a + p == _roundup(n, d) or a + p >= w.stop + h
        np.testing.assert_array_equal(count, 1)


@pytest.mark.parametrize("shape, tile, halo, div", [c for c in CASES])
def test_computed_fraction_counts_the_windows_of_the_plan(shape, tile, halo, div):
    plan = plan_tiles(shape, tile_shape=tile, halo=halo, divisible_by=div)
    windows = sum(math.prod(s.stop - s.start for s in t.input_slices) for t in plan)
    assert computed_fraction(shape, tile, halo, div) == pytest.approx(
        windows / math.prod(shape))


def test_auto_tile_shape_keeps_the_base_budget_where_tiles_are_cheap():
    """A 2D image whose tiles at the base budget compute little halo: nothing is raised,
    and the tiles are those of choose_tile_shape."""
    kw = dict(bytes_per_voxel=1232, halo=23, divisible_by=4)
    tile, budget = auto_tile_shape((1024, 1024), base_budget_bytes=2**28,
                                   max_budget_bytes=2**34, **kw)
    assert budget == 2**28
    assert tile == choose_tile_shape((1024, 1024), memory_budget_bytes=2**28, **kw)
    assert 1.0 < computed_fraction((1024, 1024), tile, 23, 4) <= AUTO_MAX_OVERHEAD


@pytest.mark.parametrize("shape", [(64, 512, 512), (48, 200, 300)])
def test_auto_tile_shape_raises_the_budget_for_halo_bound_3d_tiles(shape):
    """A 3D network whose halo makes base-budget tiles fail (or be mostly halo): the
    budget is doubled until the overhead is met, never past the cap, and the tiles fit."""
    kw = dict(bytes_per_voxel=1360, halo=23, divisible_by=4)
    try:
        base = choose_tile_shape(shape, memory_budget_bytes=2**28, **kw)
        assert computed_fraction(shape, base, 23, 4) > 2 * AUTO_MAX_OVERHEAD
    except ConfigError as err:
        assert "budget" in str(err)
    tile, budget = auto_tile_shape(shape, base_budget_bytes=2**28, max_budget_bytes=2**36,
                                   **kw)
    assert 2**28 < budget <= 2**36 and math.log2(budget / 2**28).is_integer()
    assert computed_fraction(shape, tile, 23, 4) <= AUTO_MAX_OVERHEAD
    # the smallest such budget: half of it would not reach the overhead
    try:
        half = choose_tile_shape(shape, memory_budget_bytes=budget / 2, **kw)
        assert computed_fraction(shape, half, 23, 4) > AUTO_MAX_OVERHEAD
    except ConfigError:
        pass
    assert tile == choose_tile_shape(shape, memory_budget_bytes=budget, **kw)


def test_auto_tile_shape_stops_at_the_cap():
    kw = dict(bytes_per_voxel=1360, halo=23, divisible_by=4)
    tile, budget = auto_tile_shape((128, 1024, 1024), base_budget_bytes=2**28,
                                   max_budget_bytes=3 * 2**30, **kw)
    assert budget == 3 * 2**30
    assert computed_fraction((128, 1024, 1024), tile, 23, 4) > AUTO_MAX_OVERHEAD
    with pytest.raises(ConfigError, match="budget"):
        auto_tile_shape((128, 1024, 1024), base_budget_bytes=2**20,
                        max_budget_bytes=2**24, **kw)


def test_available_memory_is_known_here():
    avail = available_memory_bytes()
    assert avail is None or 2**26 < avail < 2**50
