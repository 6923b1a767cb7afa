"""Minimal reader for the MRC files SIM software writes (raw stacks and radial OTFs).

Reads MRC 2014 and the older IVE/Priism variant (no ``MAP`` stamp), modes 0, 1, 2, 4 and 6,
either byte order, with the extended header skipped. Only what SIM data need; the
:mod:`mrcfile` package refuses the IVE variant in strict mode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from fluorecon.core.errors import InputFileError, message

__all__ = ["MRCData", "read_mrc"]

_MODES = {0: "i1", 1: "i2", 2: "f4", 4: "c8", 6: "u2"}


@dataclass(frozen=True)
class MRCData:
    """Array and sampling of an MRC file.

    Attributes
    ----------
    data : ndarray, shape (nz, ny, nx)
        The values in the file's dtype.
    spacing : (float, float, float)
        Cell size divided by the grid size along Z, Y, X (as written by the software: um for
        images, cycles/um for OTF files of fairSIM / rDL-SIM).
    """

    data: np.ndarray
    spacing: tuple[float, float, float]


def read_mrc(path: str | os.PathLike[str]) -> MRCData:
    """Read an MRC file (1024-byte header, int32 ``nx, ny, nz, mode``, extended header size at
    byte 92) into a ``(nz, ny, nx)`` array.

    Raises
    ------
    InputFileError
        Truncated files, unknown modes, or sizes that do not match the header.
    """
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise InputFileError(message(f"MRC file {p!r} ({exc.strerror})", "a readable file",
                                     "Check the path.")) from None
    if len(raw) < 1024:
        raise InputFileError(message(f"{len(raw)} bytes in {p!r}", "at least the 1024-byte "
                                     "MRC header", "Check that the file is an MRC file."))
    for order in ("<", ">"):
        head = np.frombuffer(raw[:1024], dtype=f"{order}i4")
        nx, ny, nz, mode = (int(v) for v in head[:4])
        if 0 < nx < 65536 and 0 < ny < 65536 and 0 < nz < 65536 and mode in _MODES:
            break
    else:
        raise InputFileError(message(f"an MRC header in {p!r} with an unknown mode or size",
                                     f"modes {sorted(_MODES)} and positive sizes",
                                     "Convert the file to TIFF."))
    ext = int(head[23])
    dtype = np.dtype(order + _MODES[mode]) if _MODES[mode] != "i1" else np.dtype("i1")
    need = 1024 + ext + nx * ny * nz * dtype.itemsize
    if ext < 0 or len(raw) < need:
        raise InputFileError(message(f"{len(raw)} bytes in {p!r}", f"{need} bytes for "
                                     f"{nz}x{ny}x{nx} mode {mode}",
                                     "The file is truncated; copy it again."))
    data = np.frombuffer(raw[1024 + ext:need], dtype=dtype).reshape(nz, ny, nx)
    cell = np.frombuffer(raw[40:52], dtype=f"{order}f4").astype(np.float64)
    grid = np.frombuffer(raw[28:40], dtype=f"{order}i4").astype(np.float64)
    grid = np.where(grid > 0, grid, 1.0)
    sx, sy, sz = (float(c / g) for c, g in zip(cell, grid))
    return MRCData(data=data.astype(dtype.newbyteorder("=")), spacing=(sz, sy, sx))
