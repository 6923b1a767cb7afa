"""What a reader learns from a file's metadata before reading pixels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Header:
    """Shape, dtype and metadata of a stored image, plus a loader for its pixels.

    ``axes`` is in fluorecon's vocabulary, or ``None`` when the file does not say (then
    ``axes_note`` explains why, for the error message). ``pixel_size`` is keyed by the
    spatial letters of ``axes``, in micrometres.
    """

    format: str
    shape: tuple[int, ...]
    dtype: np.dtype
    axes: str | None
    load: Callable[[bool], Any]
    pixel_size: dict[str, float] = field(default_factory=dict)
    time_interval: float | None = None
    channel_names: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    axes_note: str = ""
