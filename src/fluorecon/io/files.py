"""Atomic writes of non-image outputs (reports, figures, JSON) under the same rules as images."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from fluorecon.io.atomic import atomic_output
from fluorecon.io.validate import check_output_target


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False,
                       inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and a rename.

    An existing ``path`` is replaced only with ``overwrite=True``; an input never is.
    Returns the path written.
    """
    out = check_output_target(path, overwrite=overwrite, inputs=inputs)
    with atomic_output(out) as tmp:
        tmp.write_bytes(data)
    return Path(path)
