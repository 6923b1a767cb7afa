"""Phantoms: seeded, non-negative float32 in [0, 1], non-trivial, realistic structure."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.core.errors import ConfigError
from fluorecon.simulate.phantoms import (
    PHANTOM_KINDS,
    beads,
    filaments,
    make_phantom,
    nuclei,
    rings,
)

SHAPES = [(96, 96), (24, 64, 64)]
# (min, max) fraction of pixels above 10 % of the maximum, per kind and dimensionality
FOREGROUND = {
    "filaments": ((0.02, 0.4), (0.001, 0.2)),
    "beads": ((0.01, 0.3), (0.001, 0.2)),
    "nuclei": ((0.05, 0.7), (0.05, 0.7)),
    "rings": ((0.01, 0.4), (0.005, 0.4)),
    "mixed": ((0.02, 0.5), (0.005, 0.4)),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", PHANTOM_KINDS)
def test_phantom_basic_properties(kind, shape):
    a = make_phantom(kind, shape, seed=0)
    assert a.shape == shape and a.dtype == np.float32
    assert np.all(np.isfinite(a)) and a.min() >= 0.0
    assert a.max() == pytest.approx(1.0)
    lo, hi = FOREGROUND[kind][len(shape) - 2]
    assert lo < (a > 0.1).mean() < hi
    # seeded: same seed same image, other seed another image
    np.testing.assert_array_equal(a, make_phantom(kind, shape, seed=0))
    b = make_phantom(kind, shape, seed=1)
    assert np.abs(a - b).sum() > 0.5 * (a.sum() + b.sum())  # objects elsewhere
    # realistic intensity variation: foreground is not a binary mask
    fg = a[a > 0.1]
    assert np.percentile(fg, 90) / np.percentile(fg, 10) > 1.5


@pytest.mark.parametrize("shape", SHAPES)
def test_filaments_are_smooth_thin_and_anti_aliased(shape):
    a = filaments(shape, n_filaments=1, seed=4)
    fg = a > 0.1
    # one connected curve (possibly leaving and re-entering the field)
    n_parts = ndimage.label(fg)[1]
    assert 1 <= n_parts <= 3
    # thin: the foreground is a small multiple of the curve length, not a blob
    skeleton_len = fg.sum()
    assert skeleton_len < 6 * max(shape) * 1.8
    # anti-aliased: many intermediate values, not a 0/1 staircase
    frac_mid = ((a > 0.05) & (a < 0.7)).sum() / max(1, (a >= 0.7).sum())
    assert frac_mid > 1.0


def test_filament_density_scales_with_size():
    small = (filaments((64, 64), seed=0) > 0.1).mean()
    large = (filaments((256, 256), seed=0) > 0.1).mean()
    assert 0.4 < large / small < 2.5  # similar density, not similar count


def test_filament_thickness_controls_width():
    thin = filaments((128, 128), n_filaments=4, thickness=1.0, seed=2)
    thick = filaments((128, 128), n_filaments=4, thickness=4.0, seed=2)
    assert (thick > 0.2).sum() > 2 * (thin > 0.2).sum()


def test_beads_radius_and_count():
    a = beads((128, 128), n_beads=20, radius=3.0, seed=0, brightness_spread=0.0)
    labels, n = ndimage.label(a > 0.3)
    assert 12 <= n <= 20  # overlaps and edge cuts merge or remove a few
    areas = ndimage.sum(np.ones_like(a), labels, index=np.arange(1, n + 1))
    assert np.median(areas) == pytest.approx(np.pi * 3.0**2, rel=0.35)


def test_nuclei_are_large_textured_objects():
    a = nuclei((128, 128), seed=0)
    labels, n = ndimage.label(a > 0.05)
    assert n >= 1
    sizes = ndimage.sum(np.ones_like(a), labels, index=np.arange(1, n + 1))
    assert sizes.max() > 200  # nucleus-sized
    inner = ndimage.binary_erosion(labels == (1 + int(np.argmax(sizes))), iterations=3)
    vals = a[inner]
    assert vals.std() / vals.mean() > 0.1  # chromatin texture


def test_rings_are_hollow():
    a = rings((128, 128), n_rings=10, cell_fraction=0.0, seed=3)
    fg = a > 0.2
    filled = ndimage.binary_fill_holes(fg)
    assert filled.sum() > 1.3 * fg.sum()  # membranes enclose dark lumens
    blobs = beads((128, 128), n_beads=10, radius=(2.5, 8.0), seed=3) > 0.2
    assert ndimage.binary_fill_holes(blobs).sum() < 1.05 * blobs.sum()  # the contrast case


def test_make_phantom_errors():
    with pytest.raises(ConfigError, match="phantom kind"):
        make_phantom("stars", (32, 32))
    with pytest.raises(ConfigError, match="options"):
        make_phantom("beads", (32, 32), n_filaments=3)
    with pytest.raises(ConfigError, match="options"):
        make_phantom("mixed", (32, 32), thickness=2.0)
    with pytest.raises(ConfigError, match="shape"):
        make_phantom("beads", (32,))
    with pytest.raises(ConfigError, match="n_beads"):
        beads((32, 32), n_beads=-1)


@pytest.mark.parametrize("shape", SHAPES)
def test_zero_objects_give_an_empty_image(shape):
    for gen, key in ((filaments, "n_filaments"), (beads, "n_beads"), (nuclei, "n_nuclei"),
                     (rings, "n_rings")):
        out = gen(shape, seed=0, **{key: 0})
        assert out.shape == shape and out.dtype == np.float32 and not out.any()
