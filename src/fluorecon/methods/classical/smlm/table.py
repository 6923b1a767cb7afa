"""Localisation tables as CSV files with ThunderSTORM column names.

Columns (those present are written, in this order)::

    id, frame, x [nm], y [nm], z [nm], sigma [nm], intensity [photon], offset [photon],
    uncertainty [nm], uncertainty_z [nm], <extra columns>

``frame`` counts from 1 in the file (ThunderSTORM's convention) and from 0 in memory;
``offset [photon]`` is the fitted background per pixel, ``intensity [photon]`` the photons of
the molecule. ThunderSTORM's 3D name ``uncertainty_xy [nm]`` and SMLM-challenge style files
with ``xnano``/``ynano``/``znano`` columns are read too.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from fluorecon.core.errors import InputFileError, message
from fluorecon.io.files import write_bytes_atomic
from fluorecon.simulate.smlm import Localizations

__all__ = ["COLUMN_NAMES", "read_csv", "read_insight3", "to_csv_text", "write_csv"]

#: In-memory column -> CSV header.
COLUMN_NAMES: dict[str, str] = {
    "frame": "frame",
    "x": "x [nm]",
    "y": "y [nm]",
    "z": "z [nm]",
    "sigma": "sigma [nm]",
    "photons": "intensity [photon]",
    "background": "offset [photon]",
    "uncertainty": "uncertainty [nm]",
    "uncertainty_z": "uncertainty_z [nm]",
}

_ALIASES: dict[str, str] = {
    **{v: k for k, v in COLUMN_NAMES.items()},
    "uncertainty_xy [nm]": "uncertainty",
    "xnano": "x", "ynano": "y", "znano": "z", "intensity": "photons",
    "x_nm": "x", "y_nm": "y", "z_nm": "z",
}


def to_csv_text(locs: Localizations) -> str:
    """The table as CSV text (header + one row per localisation, ``%.6g``-style floats)."""
    present = locs.columns()
    order = [k for k in COLUMN_NAMES if k in present] + [k for k in present
                                                         if k not in COLUMN_NAMES]
    cols = {k: present[k] for k in order}
    names = ["id"] + [COLUMN_NAMES.get(k, k) for k in cols]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    data = [np.arange(1, len(locs) + 1)]
    for k, v in cols.items():
        data.append(v + 1 if k == "frame" else v)
    for row in zip(*data):
        w.writerow([int(row[0]), int(row[1])] + [f"{float(v):.7g}" for v in row[2:]])
    return buf.getvalue()


def write_csv(path: str | os.PathLike[str], locs: Localizations, *, overwrite: bool = False,
              inputs: tuple[str | os.PathLike[str], ...] = ()) -> Path:
    """Write ``locs`` to ``path`` atomically (never over an input; existing file only with
    ``overwrite``)."""
    return write_bytes_atomic(path, to_csv_text(locs).encode(), overwrite=overwrite,
                              inputs=inputs)


def read_csv(path: str | os.PathLike[str]) -> Localizations:
    """Read a localisation CSV (fluorecon, ThunderSTORM or SMLM-challenge column names).

    Raises
    ------
    InputFileError
        Missing file, no ``x``/``y`` columns, or non-numeric values.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(message(f"localisation table {p} that does not exist",
                                     "an existing CSV file", "Check the path."))
    try:
        text = p.read_text()
        rows = list(csv.reader(io.StringIO(text)))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(message(f"an unreadable table {p} ({exc})", "a CSV text file",
                                     "Export the table as CSV.")) from None
    if not rows:
        raise InputFileError(message(f"an empty file {p}", "a header and rows",
                                     "Export the table again."))
    header = [h.strip().strip('"') for h in rows[0]]
    mapped = [_ALIASES.get(h, _ALIASES.get(h.lower(), h)) for h in header]
    if "x" not in mapped or "y" not in mapped:
        raise InputFileError(message(f"columns {header} in {p}", "'x [nm]' and 'y [nm]' "
                                     "(ThunderSTORM names)", "Export positions in nm."))
    body = [r for r in rows[1:] if r]
    try:
        arr = np.array(body, np.float64).reshape(len(body), len(header))
    except ValueError:
        raise InputFileError(message(f"non-numeric or ragged rows in {p}",
                                     "numbers in every column", "Fix the table.")) from None
    cols: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    known = set(COLUMN_NAMES)
    for name, values in zip(mapped, arr.T):
        if name == "id":
            continue
        if name in known:
            cols[name] = values
        else:
            extra[name] = values
    frame = cols.pop("frame", np.ones(len(body))) - 1
    return Localizations.build(frame=frame, extra=extra, **cols)


_I3_DTYPE = np.dtype([(k, "<f4") for k in ("x", "y", "xc", "yc", "h", "a", "w", "phi", "ax",
                                           "bg", "i")]
                     + [(k, "<i4") for k in ("c", "fi", "fr", "tl", "lk")]
                     + [("z", "<f4"), ("zc", "<f4")])


def read_insight3(path: str | os.PathLike[str], *, pixel_size: float,
                  drift_corrected: bool = False) -> Localizations:
    """Read an Insight3 binary molecule list (``.bin``, as written by storm-analysis).

    Parameters
    ----------
    path : path
    pixel_size : float
        Camera pixel size, nm (the file stores pixels).
    drift_corrected : bool
        Use the drift-corrected ``xc, yc, zc`` instead of ``x, y, z``.

    Returns
    -------
    Localizations
        frame (from 0), x, y, z (nm; Insight3 stores z in nm), photons (the fitted area
        ``a``), background (``bg``), sigma (``w / 2.3548``, from the FWHM in nm).

    Notes
    -----
    Layout: a 16-byte header (``b"M425"``, frames, status, molecule count), then 72-byte
    little-endian records (11 float32, 5 int32, 2 float32). Insight3 puts pixel centres at
    integer coordinates counted from 1, so ``x_nm = (x_i3 - 0.5) * pixel_size`` in
    fluorecon's convention (pixel ``j`` spans ``[j, j + 1) * pixel_size``); frames count
    from 1.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputFileError(message(f"an unreadable Insight3 file {p} ({exc.strerror})",
                                     "an existing .bin molecule list", "Check the path.")
                             ) from None
    if len(raw) < 16 or raw[:4] != b"M425":
        raise InputFileError(message(f"{p} without the Insight3 'M425' header",
                                     "an Insight3 .bin molecule list", "Check the file."))
    n = int(np.frombuffer(raw[12:16], "<i4")[0])
    if n < 0 or len(raw) < 16 + n * _I3_DTYPE.itemsize:
        raise InputFileError(message(f"{p} with {len(raw)} bytes for {n} molecules",
                                     f"{16 + n * _I3_DTYPE.itemsize} bytes at least",
                                     "The file is truncated; export it again."))
    r = np.frombuffer(raw[16:16 + n * _I3_DTYPE.itemsize], _I3_DTYPE)
    xk, yk, zk = ("xc", "yc", "zc") if drift_corrected else ("x", "y", "z")
    return Localizations.build(frame=r["fr"].astype(np.int64) - 1,
                               x=(r[xk].astype(np.float64) - 0.5) * pixel_size,
                               y=(r[yk].astype(np.float64) - 0.5) * pixel_size,
                               z=r[zk].astype(np.float64), photons=r["a"], background=r["bg"],
                               sigma=r["w"].astype(np.float64) / 2.3548)
