"""Tiled prediction: cut an image into tiles, run a function on each, stitch exactly.

A method knows how to process one block; this layer knows how to cut, stream and stitch.
The planner (:func:`plan_tiles`) is pure NumPy and knows nothing of networks: overlap
comes from the receptive field (``halo``), network inputs are multiples of
``divisible_by``, and written regions partition the image, so tiled prediction equals
whole-image prediction for any function with a bounded receptive field.

- :func:`predict_tiled` drives a batch function ``fn(batch) -> batch`` over NumPy,
  memmap, dask or zarr images, reading one tile at a time and writing into ``out``.
- :func:`predict_method_tiled` drives any :class:`~fluorecon.methods.Method`.
- :func:`predict_blended` averages overlapping tiles with smooth weights, for functions
  whose receptive field is unbounded (never exact, but seamless).
- :func:`tta_predict` / :func:`with_tta` average over the 8 in-plane flips/rotations (or
  the 4 mirror images).

Example::

    from fluorecon.predict import predict_tiled
    out = predict_tiled(net_fn, image, "ZYX", halo=44, divisible_by=8,
                        memory_budget_bytes=4 * 2**30, bytes_per_voxel=512)
"""

from fluorecon.predict.blend import predict_blended, ramp
from fluorecon.predict.tiled import (
    DEFAULT_BYTES_PER_VOXEL,
    DEFAULT_MEMORY_BUDGET,
    predict_method_tiled,
    predict_tiled,
)
from fluorecon.predict.tiling import (
    AUTO_MAX_OVERHEAD,
    PAD_MODES,
    Tile,
    auto_tile_shape,
    choose_tile_shape,
    computed_fraction,
    plan_tiles,
    window_size,
)
from fluorecon.predict.tta import MIRRORS, TRANSFORMS, tta_predict, with_tta

__all__ = [
    "AUTO_MAX_OVERHEAD",
    "DEFAULT_BYTES_PER_VOXEL",
    "DEFAULT_MEMORY_BUDGET",
    "MIRRORS",
    "PAD_MODES",
    "TRANSFORMS",
    "Tile",
    "auto_tile_shape",
    "choose_tile_shape",
    "computed_fraction",
    "plan_tiles",
    "predict_blended",
    "predict_method_tiled",
    "predict_tiled",
    "ramp",
    "tta_predict",
    "window_size",
    "with_tta",
]
