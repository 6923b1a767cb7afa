"""Streamed prediction of a small U-Net equals whole-image prediction (2D and 3D)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fluorecon.io import read_image
from fluorecon.methods.learned import CARE
from fluorecon.predict.stream import plan_stream, stream_predict


@pytest.mark.parametrize(("axes", "shape", "chunks"), [
    ("TYX", (2, 75, 83), (1, 16, 16)),
    ("ZYX", (13, 41, 38), (4, 16, 16)),
])
def test_streamed_unet_equals_whole_image(tmp_path: Path, axes: str, shape: tuple[int, ...],
                                          chunks: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    nd = 3 if "Z" in axes else 2
    x = rng.gamma(2.0, 20.0, size=(24,) * nd).astype(np.float32)
    care = CARE(steps=3, patch_size=8, batch_size=2, depth=2, base_filters=4,
                norm="none", validation_fraction=0.25, validation_patches=2)
    care.fit(x, x * 0.5 + 1.0, "ZYX" if nd == 3 else "YX", device="cpu")
    assert care.receptive_field is not None and care.divisible_by == 4
    image = rng.gamma(2.0, 20.0, size=shape).astype(np.float32)
    plan = plan_stream(care, shape, axes, chunks=chunks, block_shape=16)
    assert len(plan.blocks) > 4 and all(b.read[0].start % 4 == 0 for b in plan.blocks)
    out = stream_predict(care, image, axes, tmp_path / "o.zarr", chunks=chunks,
                         block_shape=16, batch_size=2)
    np.testing.assert_allclose(read_image(out)[0], care.predict(image, axes),
                               rtol=1e-5, atol=1e-4)
