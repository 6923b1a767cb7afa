"""Validation of image paths and arrays at the I/O boundary.

Every check raises a :class:`~fluorecon.core.errors.FluoreconError` subclass with a
one-line message (what was received, what is required, how to fix it), so the CLI can
print it without a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.core.dtypes import check_image_array
from fluorecon.core.errors import (
    DataError,
    FluoreconError,
    InputFileError,
    OutputExistsError,
    message,
)

#: Formats by name, with the path suffixes that select them (longest match wins).
FORMAT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "ome-tiff": (".ome.tif", ".ome.tiff"),
    "tiff": (".tif", ".tiff"),
    "ome-zarr": (".ome.zarr", ".zarr"),
    "npy": (".npy",),
    "png": (".png",),
}
READ_FORMATS = ("ome-tiff", "tiff", "ome-zarr", "npy", "png")
WRITE_FORMATS = ("ome-tiff", "tiff", "ome-zarr", "npy")


class OutputPathError(FluoreconError):
    """An output path cannot be written: missing folder, no permission, bad suffix."""


def format_of(path: str | os.PathLike[str]) -> str | None:
    """Return the format name selected by the suffix of ``path``, or ``None``.

    Examples
    --------
    >>> format_of("cells.ome.tif"), format_of("cells.TIF"), format_of("a.zarr")
    ('ome-tiff', 'tiff', 'ome-zarr')
    """
    name = Path(path).name.lower()
    best: tuple[int, str] | None = None
    for fmt, suffixes in FORMAT_SUFFIXES.items():
        for suffix in suffixes:
            if name.endswith(suffix) and (best is None or len(suffix) > best[0]):
                best = (len(suffix), fmt)
    return None if best is None else best[1]


def _suffix_list(formats: Iterable[str]) -> str:
    return ", ".join(s for f in formats for s in FORMAT_SUFFIXES[f])


def check_input_path(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Check that ``path`` names an existing image of a readable format.

    Returns
    -------
    path : Path
        The path as given (not resolved).
    fmt : str
        Format name, one of :data:`READ_FORMATS`.

    Raises
    ------
    InputFileError
        Missing path, wrong kind (file versus ``.zarr`` folder), unsupported suffix or an
        unreadable or empty file.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(message(f"path '{p}' which does not exist",
                                     "an existing image file", "Check the path."))
    fmt = format_of(p)
    if fmt is None:
        raise InputFileError(message(f"path '{p}' with unsupported suffix '{''.join(p.suffixes)}'",
                                     f"one of {_suffix_list(READ_FORMATS)}",
                                     "Convert the image to TIFF or pass a file of a supported "
                                     "format."))
    if fmt == "ome-zarr":
        if not p.is_dir():
            raise InputFileError(message(f"'{p}' which is a file", "a .zarr folder",
                                         "Pass the OME-Zarr folder itself."))
    else:
        if not p.is_file():
            raise InputFileError(message(f"'{p}' which is not a regular file",
                                         f"a {fmt} image file", "Pass the image file itself."))
        if not os.access(p, os.R_OK):
            raise InputFileError(message(f"'{p}' which is not readable", "read permission",
                                         "Check the file permissions."))
        if p.stat().st_size == 0:
            raise InputFileError(message(f"'{p}' which is an empty file (0 bytes)",
                                         f"a {fmt} image file",
                                         "The file is truncated; copy it again."))
    return p, fmt


def _same_or_inside(output: Path, other: Path) -> bool:
    """True if ``other`` is ``output`` itself or lies inside it (a folder)."""
    if other == output or output in other.parents:
        return True
    try:
        return output.exists() and other.exists() and os.path.samefile(output, other)
    except OSError:
        return False


def check_output_path(path: str | os.PathLike[str], *, overwrite: bool,
                      inputs: Iterable[str | os.PathLike[str]] = ()) -> tuple[Path, str]:
    """Check that an image may be written to ``path``.

    Returns
    -------
    path : Path
        The output path (absolute).
    fmt : str
        Format name, one of :data:`WRITE_FORMATS`.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false, or ``path`` is (or contains) one of
        ``inputs``, whatever ``overwrite`` says.
    OutputPathError
        Unsupported suffix, or a parent folder that is missing and cannot be created.

    Notes
    -----
    Missing parent folders of ``path`` are created (as ``mkdir -p`` would).
    """
    p = Path(path).absolute()
    fmt = format_of(p)
    if fmt not in WRITE_FORMATS:
        suffix = "".join(p.suffixes) or "(none)"
        raise OutputPathError(message(f"output path '{p.name}' with suffix {suffix}",
                                      f"one of {_suffix_list(WRITE_FORMATS)}",
                                      "Choose an output name ending in .tif, .ome.tif, .zarr or "
                                      ".npy."))
    check_output_target(p, overwrite=overwrite, inputs=inputs)
    return p, fmt


def check_array(array: Any, *, name: str = "image", finite: bool = True) -> None:
    """Validate an image-like array: supported dtype, at least 2D, non-empty, finite.

    ``finite=True`` reads the data (chunk by chunk for memmap, dask and zarr arrays).

    Raises
    ------
    DataError
        Unsupported dtype (complex, object, strings, ...), fewer than 2 dimensions, an
        empty axis, or NaN/infinite values.
    """
    check_image_array(array, name=name, finite=finite)


def native(array: np.ndarray) -> np.ndarray:
    """Return a NumPy array in native byte order (a no-op if it already is)."""
    if array.dtype.byteorder not in ("=", "|") and array.dtype.byteorder != _NATIVE:
        return array.astype(array.dtype.newbyteorder("="))
    return array


_NATIVE = "<" if np.little_endian else ">"


def check_output_target(path: str | os.PathLike[str], *, overwrite: bool,
                        inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Check that any file (image or not) may be written to ``path``; create its folder.

    Raises :class:`OutputExistsError` if ``path`` is (or contains) one of ``inputs``, or
    exists while ``overwrite`` is false; :class:`OutputPathError` if its folder cannot be
    created. Returns the absolute path.
    """
    p = Path(path).absolute()
    resolved = p.resolve()
    for inp in inputs:
        inp_resolved = Path(inp).absolute().resolve()
        if _same_or_inside(resolved, inp_resolved):
            raise OutputExistsError(message(f"output path '{p}' which is also an input ('{inp}')",
                                            "an output different from every input",
                                            "Choose another output name; inputs are never "
                                            "overwritten."))
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise OutputExistsError(message(f"output path '{p}' which already exists",
                                        "a new path or overwrite=True",
                                        "Choose another name or pass --overwrite."))
    if not p.parent.is_dir():
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(message(f"output folder '{p.parent}' which cannot be created "
                                          f"({exc.strerror or type(exc).__name__})",
                                          "a folder that exists or can be created",
                                          "Check the path and its permissions.")) from None
    return p
