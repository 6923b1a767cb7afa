"""PNG reading (8/16-bit grayscale, RGB/RGBA) through Pillow, a scikit-image dependency.

PNG stores no axes and no physical pixel size (its ``pHYs`` chunk holds print dots per
inch, not microscope pixels, and is ignored). Grayscale images are ``YX``; colour images
``YXC`` with 3 (RGB) or 4 (RGBA) channels; palette images are expanded to RGB(A).
PNG is decoded in full, so a lazy read is a dask array that decodes on first compute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.core.errors import InputFileError, message
from fluorecon.io._header import Header

# Pillow mode -> (dtype, channels); channels 0 means a grayscale 2D image.
_MODES: dict[str, tuple[str, int]] = {
    "1": ("bool", 0), "L": ("uint8", 0), "I;16": ("uint16", 0), "I;16B": ("uint16", 0),
    "I;16L": ("uint16", 0), "I": ("int32", 0), "F": ("float32", 0), "LA": ("uint8", 2),
    "RGB": ("uint8", 3), "RGBA": ("uint8", 4),
}


def _bad_png(path: Path, exc: BaseException) -> InputFileError:
    first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return InputFileError(message(f"'{path}' which cannot be read as PNG ({first})",
                                  "a valid, complete PNG file",
                                  "Check the file is a PNG image and was copied completely."))


def _open(path: Path) -> Any:
    from PIL import Image

    img = Image.open(path)
    if img.format != "PNG":
        fmt = img.format
        img.close()
        raise InputFileError(message(f"'{path}' which holds {fmt} data, not PNG",
                                     "a PNG file", "Rename the file to its real format."))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode not in _MODES:
        img = img.convert("RGB")
    return img


def read_header(path: Path, fmt: str) -> Header:
    """Read size and mode from the PNG header (pixels are decoded only by the loader)."""
    try:
        img = _open(path)
        mode, (width, height) = img.mode, img.size
        img.close()
    except InputFileError:
        raise
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError ...
        raise _bad_png(path, exc) from None
    dtype_name, channels = _MODES[mode]
    shape = (height, width) if channels == 0 else (height, width, channels)
    dtype = np.dtype(dtype_name)

    def load(lazy: bool) -> Any:
        if lazy:
            import dask
            import dask.array as da

            return da.from_delayed(dask.delayed(_decode)(path, shape, dtype), shape,
                                   dtype=dtype)
        return _decode(path, shape, dtype)

    return Header(format=fmt, shape=shape, dtype=dtype, axes="YX" if channels == 0 else "YXC",
                  load=load)


def _decode(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    try:
        img = _open(path)
        try:
            img.load()
            data = np.asarray(img)
        finally:
            img.close()
    except InputFileError:
        raise
    except Exception as exc:
        raise _bad_png(path, exc) from None
    data = data.astype(dtype.newbyteorder("="), copy=False)
    if data.shape != shape:
        raise _bad_png(path, ValueError(f"decoded shape {data.shape} differs from {shape}"))
    return data
