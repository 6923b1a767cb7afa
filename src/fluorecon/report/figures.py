"""Figures for reports: image panels with matching contrast and line profiles.

Figures are drawn with :class:`matplotlib.figure.Figure` and the Agg canvas directly, so no
global pyplot state or GUI backend is touched, and written atomically as PNG.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.core.axes import check_axes
from fluorecon.core.errors import ConfigError, message
from fluorecon.io import write_bytes_atomic
from fluorecon.normalize import affine_fit


def display_plane(image: np.ndarray, axes: str) -> np.ndarray:
    """Return the 2D plane shown for ``image``: itself for ``YX``, the middle Z slice for ``ZYX``.

    Non-spatial axes (``C``, ``T``, ...) are reduced by taking their first index.
    """
    axes = check_axes(axes, ndim=image.ndim)
    arr = np.asarray(image, dtype=np.float32)
    index = tuple(arr.shape[i] // 2 if a == "Z" else (slice(None) if a in "YX" else 0)
                  for i, a in enumerate(axes))
    return arr[index]


def match_to(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scale and offset ``image`` by least squares onto ``reference`` (for equal contrast)."""
    alpha, beta = affine_fit(image, reference)
    return (alpha * np.asarray(image, np.float32) + beta).astype(np.float32)


def _png_bytes(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def image_panel(images: Mapping[str, np.ndarray], path: str | Path, *, axes: str,
                reference: str | None = None, percentiles: tuple[float, float] = (0.3, 99.7),
                columns: int = 4, overwrite: bool = False, cmap: str = "magma") -> Path:
    """Save a grid of images shown with one display range, and return its path.

    Parameters
    ----------
    images : mapping of str to ndarray
        Titles and images, all of the same shape and ``axes``.
    path : path
        Output PNG path.
    axes : str
        Axes of every image (3D images show their middle Z slice).
    reference : str, optional
        Key of the reference image (e.g. the ground truth). Every other image is first
        fitted to it by least squares (scale and offset), then all share the reference's
        percentile display range: differences in contrast are not mistaken for differences
        in content. Without a reference, each image uses its own range.
    percentiles : (float, float)
        Lower and upper display percentiles of the reference.
    """
    from matplotlib.figure import Figure

    planes = {k: display_plane(v, axes) for k, v in images.items()}
    ref = planes.get(reference) if reference is not None else None
    n = len(planes)
    cols = min(columns, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.0 * cols, 3.1 * rows), dpi=100, layout="constrained")
    axs = fig.subplots(rows, cols, squeeze=False)
    for ax in axs.flat:
        ax.set_axis_off()
    for ax, (title, plane) in zip(axs.flat, planes.items()):
        shown = plane if ref is None or title == reference else match_to(plane, ref)
        src = ref if ref is not None else plane
        lo, hi = np.percentile(src, percentiles)
        ax.imshow(shown, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    return write_bytes_atomic(path, _png_bytes(fig), overwrite=overwrite)


def line_profiles(images: Mapping[str, np.ndarray], path: str | Path, *, axes: str,
                  reference: str | None = None, row: int | None = None,
                  overwrite: bool = False) -> Path:
    """Save intensity profiles along one row (of the displayed plane) of every image.

    Images are fitted to ``reference`` first (see :func:`image_panel`). The default row is
    the one through the brightest pixel of the reference (or of the first image).
    """
    from matplotlib.figure import Figure

    planes = {k: display_plane(v, axes) for k, v in images.items()}
    ref = planes[reference] if reference is not None else next(iter(planes.values()))
    if row is None:
        row = int(np.unravel_index(np.argmax(ref), ref.shape)[0])
    fig = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    for title, plane in planes.items():
        shown = plane if reference is None or title == reference else match_to(plane, ref)
        style = {"color": "black", "lw": 2.0} if title == reference else {"lw": 1.0}
        ax.plot(shown[row], label=title, **style)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("intensity (fitted to reference)" if reference else "intensity")
    ax.set_title(f"line profile, row y={row}", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    return write_bytes_atomic(path, _png_bytes(fig), overwrite=overwrite)


def png_bytes(fig: Any) -> bytes:
    """Render a :class:`matplotlib.figure.Figure` to PNG bytes (Agg canvas, no pyplot)."""
    return _png_bytes(fig)


def display_limits(image: np.ndarray, percentiles: tuple[float, float] = (0.3, 99.7)
                   ) -> tuple[float, float]:
    """Display range ``(lo, hi)``: the given percentiles of the finite values of ``image``.

    ``hi`` is raised to ``lo + 1`` (same units) for a constant image, so a colour map
    always has a non-empty range. The image is not modified and never rescaled.

    Raises
    ------
    ConfigError
        Percentiles outside ``0 <= low < high <= 100``.
    """
    low, high = (float(p) for p in percentiles)
    if not 0.0 <= low < high <= 100.0:
        raise ConfigError(message(f"display percentiles {percentiles}",
                                  "0 <= low < high <= 100", "Pass e.g. (0.3, 99.7)."))
    arr = np.asarray(image, dtype=np.float32)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [low, high]))
    return lo, (hi if hi > lo else lo + 1.0)


def plane_at(image: np.ndarray, axes: str, *, z: int | None = None) -> np.ndarray:
    """The 2D plane of ``image`` shown in reports: ``YX`` itself, ``ZYX`` at index ``z``
    (default the middle slice); other axes at their first index (as :func:`display_plane`).

    Raises
    ------
    ConfigError
        ``z`` outside the Z range of a 3D image.
    """
    axes = check_axes(axes, ndim=np.ndim(image))
    if z is None or "Z" not in axes:
        return display_plane(image, axes)
    nz = int(np.shape(image)[axes.index("Z")])
    if not 0 <= z < nz:
        raise ConfigError(message(f"z={z} for an image with {nz} Z slices",
                                  f"0 <= z < {nz}", "Choose a slice inside the stack."))
    arr = np.asarray(image, dtype=np.float32)
    index = tuple(z if a == "Z" else (slice(None) if a in "YX" else 0) for a in axes)
    return arr[index]
