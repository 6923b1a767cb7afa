"""The dtype policy: compute in float32, never rescale intensities on conversion.

Integer images (uint8, uint16, int16, int32, ...) are converted to float32 by value:
a uint16 pixel of 1234 becomes 1234.0, never 1234/65535. float16 is promoted to float32.
float64 is computed in float32 too (the precision of camera data is far below it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fluorecon.core.errors import DataError, message

SUPPORTED_DTYPES: tuple[str, ...] = (
    "bool", "uint8", "uint16", "uint32", "int8", "int16", "int32", "float16", "float32",
    "float64",
)


def check_dtype(dtype: Any) -> np.dtype:
    """Return ``np.dtype(dtype)`` if fluorecon supports it, else raise :class:`DataError`."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise DataError(message(f"dtype {dtype!r}", f"one of {', '.join(SUPPORTED_DTYPES)}",
                                "Convert the image to uint16 or float32 first.")) from None
    if dt.name not in SUPPORTED_DTYPES:
        raise DataError(
            message(f"dtype {dt.name}", f"one of {', '.join(SUPPORTED_DTYPES)}",
                    "Convert the image to uint16 or float32 first.")
        )
    return dt


def check_image_array(array: Any, *, name: str = "image", finite: bool = True) -> None:
    """Validate an image-like array without loading more than needed.

    Checks that it is array-like with a supported dtype, at least 2 dimensions and no
    zero-sized axis; with ``finite=True`` also that it has no NaN or infinity (this reads
    the data, chunk by chunk for dask/zarr-like arrays).

    Raises
    ------
    DataError
        With a one-line message naming the problem.
    """
    shape = getattr(array, "shape", None)
    dtype = getattr(array, "dtype", None)
    if shape is None or dtype is None:
        raise DataError(message(f"{name} of type {type(array).__name__}", "an array",
                                "Pass a NumPy, dask or zarr array."))
    check_dtype(dtype)
    if len(shape) < 2:
        raise DataError(message(f"{name} with shape {tuple(shape)}", "at least 2 dimensions (YX)",
                                "Pass a 2D or 3D image."))
    if any(int(s) == 0 for s in shape):
        raise DataError(message(f"{name} with shape {tuple(shape)} (an empty axis)",
                                "a non-empty array", "Check the file holds image data."))
    if finite:
        check_finite(array, name=name)


def check_finite(array: Any, *, name: str = "image") -> None:
    """Raise :class:`DataError` if a float ``array`` holds NaN or infinite values."""
    if not np.issubdtype(np.dtype(array.dtype), np.floating):
        return
    ok = _all_finite(array)
    if not ok:
        raise DataError(message(f"{name} containing NaN or infinite values", "finite values",
                                "Replace or mask the invalid pixels before processing."))


def _all_finite(array: Any) -> bool:
    if isinstance(array, np.ndarray):
        # Sum is NaN/inf iff any element is (or overflow, which float32 data won't reach
        # in float64); chunked to bound memory on memmaps.
        flat = array.reshape(-1)
        step = 1 << 22
        for start in range(0, flat.size, step):
            if not np.isfinite(flat[start:start + step]).all():
                return False
        return True
    if hasattr(array, "map_blocks"):  # dask
        import dask.array as da

        return bool(da.isfinite(array).all().compute())
    # zarr and other lazy arrays: walk along the first axis
    for i in range(array.shape[0]):
        if not np.isfinite(np.asarray(array[i])).all():
            return False
    return True


def as_float32(array: Any) -> np.ndarray:
    """Return ``array`` as a float32 NumPy array, by value (no rescaling).

    A float32 NumPy input is returned as is (no copy); callers that modify the result in
    place must copy first.

    Examples
    --------
    >>> as_float32(np.array([[0, 4095]], dtype=np.uint16))
    array([[   0., 4095.]], dtype=float32)
    """
    arr = np.asarray(array)
    check_dtype(arr.dtype)
    return arr.astype(np.float32, copy=False)
