"""Atomic replacement of output files and folders.

Outputs are written to a hidden temporary sibling (``.<name>.tmp-<random>`` in the same
folder, hence on the same file system) and moved into place with :func:`os.replace` only
once complete. A failure or an interrupt removes the temporary sibling and leaves any
existing file untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(path: Path, tag: str = "tmp") -> Path:
    """Return an unused hidden sibling path ``.<name>.<tag>-<8 hex>`` of ``path``."""
    while True:
        candidate = path.parent / f".{path.name}.{tag}-{secrets.token_hex(4)}"
        if not candidate.exists():
            return candidate


def remove_path(path: Path) -> None:
    """Remove a file, link or folder tree at ``path`` if present."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def replace_path(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing what is there.

    Files replace files atomically (:func:`os.replace`). A folder (OME-Zarr), or a change
    between file and folder, is swapped in three renames: the old ``dst`` is moved aside,
    ``src`` moved in, and the old one deleted; if the second rename fails the old one is
    moved back.
    """
    if not (dst.exists() or dst.is_symlink()) or (src.is_file() and dst.is_file()):
        os.replace(src, dst)
        return
    backup = temporary_sibling(dst, "old")
    os.replace(dst, backup)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(backup, dst)
        raise
    remove_path(backup)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; move it onto ``path`` on success.

    Examples
    --------
    >>> with atomic_output(out) as tmp:  # doctest: +SKIP
    ...     np.save(open(tmp, "wb"), data)
    """
    tmp = temporary_sibling(path)
    try:
        yield tmp
        replace_path(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise


def fsync_file(path: Path) -> None:
    """Flush a written file to disk so the rename cannot expose a partial file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
