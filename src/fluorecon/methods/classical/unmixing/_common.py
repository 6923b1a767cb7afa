"""Shared plumbing of the unmixing methods: channel-axis handling and spectra checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluorecon.core.axes import check_axes
from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import AxesError, DataError, message


@dataclass(frozen=True)
class ChannelLayout:
    """Where the channel axis is, so pixels can be flattened to ``(C, P)`` and restored."""

    axes: str
    shape: tuple[int, ...]

    @property
    def c_index(self) -> int:
        return self.axes.index("C")

    @property
    def n_channels(self) -> int:
        return self.shape[self.c_index]

    def to_matrix(self, image: np.ndarray) -> np.ndarray:
        """``(C, P)`` float32 view/copy of ``image`` (channel first, pixels flattened)."""
        return np.moveaxis(image, self.c_index, 0).reshape(self.n_channels, -1)

    def from_matrix(self, values: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_matrix` for ``(K, P)`` values: ``K`` along the C axis."""
        rest = tuple(s for i, s in enumerate(self.shape) if i != self.c_index)
        out = values.reshape((values.shape[0],) + rest)
        return np.ascontiguousarray(np.moveaxis(out, 0, self.c_index))

    def from_pixels(self, values: np.ndarray) -> np.ndarray:
        """``(P,)`` values back to the image shape without the C axis."""
        rest = tuple(s for i, s in enumerate(self.shape) if i != self.c_index)
        return values.reshape(rest)

    @property
    def axes_without_c(self) -> str:
        return self.axes.replace("C", "")


def channel_image(image: Any, axes: str, *, name: str = "image") -> tuple[np.ndarray,
                                                                          ChannelLayout]:
    """Validate a multi-channel image and return it as float32 with its layout.

    Raises
    ------
    AxesError
        No ``C`` axis.
    """
    check_image_array(image, name=name)
    up = check_axes(axes, ndim=len(image.shape))
    if "C" not in up:
        raise AxesError(message(f"axes {up!r} without a channel axis", "a C axis holding the "
                                "detection channels", "Pass e.g. axes='CYX' or 'TCZYX'."))
    arr = as_float32(image)
    return arr, ChannelLayout(up, tuple(int(s) for s in arr.shape))


def check_spectra(spectra: Any, n_channels: int | None = None, *,
                  name: str = "spectra") -> np.ndarray:
    """Validate reference spectra as a ``(C, K)`` float64 mixing matrix.

    Columns are spectra (one per fluorophore), as in
    :func:`~fluorecon.simulate.spectra.mixing_matrix`.
    """
    m = np.asarray(spectra, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2 or m.size == 0:
        raise DataError(message(f"{name} of shape {m.shape}", "a (channels, components) matrix",
                                "Pass one column per fluorophore."))
    if not np.all(np.isfinite(m)) or m.min() < 0:
        raise DataError(message(f"{name} with negative or non-finite values",
                                "non-negative finite spectra", "Check the reference spectra."))
    if np.any(m.sum(axis=0) <= 0):
        raise DataError(message(f"{name} with an all-zero column", "a non-zero spectrum per "
                                "component", "Remove the empty spectrum."))
    if n_channels is not None and m.shape[0] != n_channels:
        raise DataError(message(f"{name} with {m.shape[0]} channels for an image with "
                                f"{n_channels}", "one spectrum value per image channel",
                                "Pass spectra measured in the image's channels."))
    return m


def background_vector(background: Any, n_channels: int) -> np.ndarray:
    """A per-channel background as a ``(C,)`` float64 vector (scalar broadcast)."""
    b = np.asarray(background if background is not None else 0.0, dtype=np.float64)
    if b.ndim == 0:
        b = np.full(n_channels, float(b))
    if b.shape != (n_channels,) or not np.all(np.isfinite(b)):
        raise DataError(message(f"background of shape {b.shape}", f"a scalar or {n_channels} "
                                "finite values, one per channel", "Fix the background."))
    return b


@dataclass(frozen=True)
class UnmixingResult:
    """Output of an unmixing method.

    Attributes
    ----------
    abundances : ndarray
        float32, the input's shape with the C axis now holding ``K`` components; in the
        input's intensity units (photons in, photons out) times the inverse of the spectra's
        scale (with area-normalised spectra: total photons of each component).
    axes : str
        Axes of ``abundances`` (those of the input).
    spectra : ndarray, ``(C, K)``
        The spectra used (given, or estimated by blind unmixing).
    residual : ndarray
        float32 root-mean-square residual per pixel over channels, ``||y - M a|| / sqrt(C)``
        (input shape without C): large where the model does not explain the data
        (unknown fluorophore, saturation, wrong spectra).
    info : dict
        Method details (iterations, convergence).
    """

    abundances: np.ndarray
    axes: str
    spectra: np.ndarray
    residual: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def residual_rms(y: np.ndarray, m: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel RMS residual ``||y - b - M a|| / sqrt(C)`` for ``(C, P)`` data."""
    r = y - b[:, None] - m @ a
    return np.sqrt(np.mean(r * r, axis=0))
