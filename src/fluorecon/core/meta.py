"""Image metadata that travels with every array: axes and physical pixel sizes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.errors import AxesError, message


class ImageMeta(BaseModel):
    """Axes and physical pixel sizes of an image.

    Parameters
    ----------
    axes : str
        Axes string from ``"STCZYX"``, one letter per array dimension.
    pixel_size : dict of str to float
        Physical size of one pixel along each spatial axis, in micrometres, e.g.
        ``{"Z": 0.3, "Y": 0.065, "X": 0.065}``. Axes absent from the dict have unknown size.
    time_interval : float, optional
        Seconds between time points (axis ``T``).
    channel_names : list of str, optional
        One name per channel (axis ``C``).
    extra : dict
        Free-form provenance (e.g. what produced the image).

    Examples
    --------
    >>> m = ImageMeta(axes="ZYX", pixel_size={"Z": 0.3, "Y": 0.1, "X": 0.1})
    >>> m.spacing()
    (0.3, 0.1, 0.1)
    """

    model_config = ConfigDict(extra="forbid")

    axes: str = Field(description="Axes string, one letter of STCZYX per dimension.")
    pixel_size: dict[str, float] = Field(
        default_factory=dict, description="Pixel size per spatial axis, micrometres."
    )
    time_interval: float | None = Field(default=None, description="Seconds between frames.")
    channel_names: list[str] | None = Field(default=None, description="Channel names.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Provenance, free-form.")

    @model_validator(mode="after")
    def _check(self) -> "ImageMeta":
        up = check_axes(self.axes)
        if up != self.axes:
            raise ValueError(f"axes must be upper case, got {self.axes!r} (use {up!r})")
        for ax, size in self.pixel_size.items():
            if ax not in "ZYX" or ax not in up:
                raise ValueError(f"pixel_size has axis {ax!r}, which is not a spatial axis of "
                                 f"{self.axes!r}")
            if not size > 0:
                raise ValueError(f"pixel_size[{ax!r}] must be > 0 micrometres, got {size}")
        return self

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise :class:`AxesError` unless the axes describe an array of ``shape``."""
        if len(shape) != len(self.axes):
            raise AxesError(
                message(f"axes {self.axes!r} for data of shape {tuple(shape)}",
                        "one axis letter per dimension",
                        "Pass the right --axes for this file.")
            )
        if "C" in self.axes and self.channel_names is not None:
            n = shape[self.axes.index("C")]
            if len(self.channel_names) != n:
                raise AxesError(message(f"{len(self.channel_names)} channel names for {n} channels",
                                        "one name per channel", "Fix channel_names."))

    def spacing(self, default: float = 1.0) -> tuple[float, ...]:
        """Pixel sizes along the spatial axes, in axes order; ``default`` where unknown."""
        return tuple(self.pixel_size.get(a, default) for a in spatial_axes(self.axes))

    def with_axes(self, axes: str) -> "ImageMeta":
        """Copy with new axes, keeping the pixel sizes of spatial axes still present."""
        up = check_axes(axes)
        return self.model_copy(update={
            "axes": up,
            "pixel_size": {a: s for a, s in self.pixel_size.items() if a in up},
            "channel_names": self.channel_names if "C" in up else None,
        })
