"""From napari layers to fluorecon arrays and back: axes, pixel sizes, result layers.

napari knows a layer's dimensions and its ``scale`` (world units per pixel), not what the
dimensions are. Axes are therefore offered from the layer's dimensionality (and read from
``metadata["axes"]`` when a fluorecon layer carries them), with the user's choice taking
precedence; they are never guessed silently. Pixel sizes come from the layer's ``scale``
or, when that is the default of 1 everywhere, from ``metadata["pixel_size"]``
(``{"Z": 0.2, "Y": 0.1, "X": 0.1}``, micrometres) as :class:`~fluorecon.core.meta.ImageMeta`
stores them. Result layers get the same scale, translation and units, so they overlay the
input exactly; upsampled results get the finer pixel size and the shifted origin of the
finer grid.

Nothing here imports Qt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fluorecon.core.axes import check_axes
from fluorecon.core.errors import AxesError, DataError, message

__all__ = ["LayerGeometry", "axes_choices", "default_axes", "layer_array", "layer_geometry",
           "result_layers"]

LayerDataTuple = tuple[Any, dict[str, Any], str]

_CHOICES: dict[int, list[str]] = {
    2: ["YX"],
    3: ["ZYX", "TYX", "CYX", "SYX"],
    4: ["TZYX", "CZYX", "TCYX", "ZCYX"],
    5: ["TCZYX", "TZCYX"],
    6: ["STCZYX"],
}


def axes_choices(ndim: int, *, rgb: bool = False) -> list[str]:
    """Axes strings offered for a layer of ``ndim`` data dimensions, most usual first.

    RGB(A) layers keep their colour as a trailing ``C`` axis.

    Raises
    ------
    AxesError
        No axes string fits (1D data or more than 6 dimensions).
    """
    spatial = ndim - 1 if rgb else ndim
    if spatial not in _CHOICES:
        raise AxesError(message(f"a layer with {ndim} dimensions" + (" (RGB)" if rgb else ""),
                                "2 to 6 dimensions, at least Y and X",
                                "Pick an image layer."))
    return [a + "C" for a in _CHOICES[spatial] if "C" not in a] if rgb else list(_CHOICES[spatial])


def default_axes(ndim: int, *, rgb: bool = False, metadata: Mapping[str, Any] | None = None
                 ) -> str:
    """``metadata["axes"]`` when it is valid for ``ndim``, else the first of
    :func:`axes_choices`."""
    stored = (metadata or {}).get("axes")
    if isinstance(stored, str):
        try:
            return check_axes(stored, ndim=ndim)
        except AxesError:
            pass
    return axes_choices(ndim, rgb=rgb)[0]


def layer_array(layer: Any) -> Any:
    """The data of an image layer as an array (NumPy, dask, zarr stay lazy).

    Raises
    ------
    DataError
        Multiscale layers (pick one level explicitly to avoid reading a pyramid).
    """
    if getattr(layer, "multiscale", False):
        raise DataError(message(f"the multiscale layer {layer.name!r}",
                                "a single-resolution image layer",
                                "Add the full-resolution level as its own layer first."))
    return layer.data


class LayerGeometry:
    """Where a layer's pixels are in the world: per-dimension scale, translation, units.

    Parameters
    ----------
    axes : str
        Axes of the layer's data (RGB layers: with the trailing ``C``).
    scale, translate : sequence of float
        One per *displayed* dimension (napari drops the colour axis of RGB layers).
    units : sequence of str or None
    rgb : bool
    """

    def __init__(self, axes: str, scale: Sequence[float], translate: Sequence[float],
                 units: Sequence[str] | None = None, *, rgb: bool = False) -> None:
        self.axes = axes
        self.scale = tuple(float(s) for s in scale)
        self.translate = tuple(float(t) for t in translate)
        self.units = None if units is None else tuple(str(u) for u in units)
        self.rgb = rgb

    @property
    def displayed_axes(self) -> str:
        """The axes napari's ``scale`` refers to."""
        return self.axes[:-1] if self.rgb else self.axes

    def pixel_size(self) -> dict[str, float]:
        """Spatial pixel sizes by axis (in the layer's units)."""
        return {a: s for a, s in zip(self.displayed_axes, self.scale) if a in "ZYX"}

    def refined(self, factors: Mapping[str, float]) -> "LayerGeometry":
        """The geometry of a grid ``factors[a]`` times finer along axes ``a``.

        The first fine pixel's centre moves by ``-(f - 1) / 2`` fine pixels, so the fine
        grid covers the same field of view as the coarse one.
        """
        scale, translate = [], []
        for a, s, t in zip(self.displayed_axes, self.scale, self.translate):
            f = float(factors.get(a, 1.0))
            scale.append(s / f)
            translate.append(t - (f - 1.0) / 2.0 * s / f)
        return LayerGeometry(self.axes, scale, translate, self.units, rgb=self.rgb)

    def kwargs(self) -> dict[str, Any]:
        """``scale``/``translate``/``units`` of a (non-RGB) result layer for napari's
        ``add_image``/``add_labels``: results of RGB inputs keep the colour axis as a
        plain dimension (scale 1, no offset)."""
        extra = 1 if self.rgb else 0
        kw: dict[str, Any] = {"scale": (*self.scale, *(1.0,) * extra),
                              "translate": (*self.translate, *(0.0,) * extra)}
        if self.units is not None:
            kw["units"] = (*self.units, *("pixel",) * extra)
        return kw


def layer_geometry(layer: Any, axes: str) -> LayerGeometry:
    """The geometry of ``layer`` (see :class:`LayerGeometry`), pixel sizes from its scale
    or, when the scale is all ones, from ``metadata["pixel_size"]``."""
    rgb = bool(getattr(layer, "rgb", False))
    axes = check_axes(axes, ndim=np.ndim(layer.data) if not getattr(layer, "multiscale", False)
                      else len(layer.data[0].shape))
    scale = [float(s) for s in layer.scale]
    translate = [float(t) for t in layer.translate]
    disp = axes[:-1] if rgb else axes
    sizes = (getattr(layer, "metadata", None) or {}).get("pixel_size")
    if isinstance(sizes, Mapping) and all(s == 1.0 for s in scale):
        scale = [float(sizes.get(a, 1.0)) for a in disp]
    units = getattr(layer, "units", None)
    return LayerGeometry(axes, scale, translate,
                         None if units is None else [str(u) for u in units], rgb=rgb)


def result_layers(result: Any, *, name: str, geometry: LayerGeometry,
                  metadata: Mapping[str, Any] | None = None) -> list[LayerDataTuple]:
    """napari layer-data tuples for a :class:`~fluorecon.napari._jobs.RestoreResult`.

    The prediction becomes an image layer; the uncertainty (``std``) an image layer with
    the ``magma`` colormap; the standardised residual an image layer (``PiYG``,
    contrast -5 to 5 noise std) and the flagged regions a labels layer. All share the
    input's geometry (refined for upsampling models).
    """
    base = {**dict(metadata or {}), "fluorecon": result.info, "source": result.source}
    geo = geometry.refined(result.refined) if result.refined else geometry
    meta = {**base, "axes": geometry.axes, "pixel_size": geo.pixel_size()}
    out: list[LayerDataTuple] = [(
        result.prediction,
        {"name": f"{name} [{result.source}]", "metadata": {**meta, "quantity": "prediction"},
         "rgb": False, **geo.kwargs()}, "image")]
    if result.std is not None:
        out.append((result.std, {
            "name": f"{name} [{result.source}] std", "colormap": "magma", "blending": "additive",
            "metadata": {**meta, "quantity": f"predictive std ({result.info.get('uncertainty')})"
                                             ", prediction units"},
            "rgb": False, "visible": False, **geo.kwargs()}, "image"))
    if result.residual is not None:
        out.append((result.residual, {
            "name": f"{name} [{result.source}] residual", "colormap": "PiYG",
            "contrast_limits": (-5.0, 5.0), "visible": False, "rgb": False,
            "metadata": {**meta, "quantity": "standardised residual (input - re-imaged "
                                             "prediction) / noise std"},
            **geometry.kwargs()}, "image"))
    if result.flagged is not None:
        out.append((np.asarray(result.flagged, dtype=np.uint8), {
            "name": f"{name} [{result.source}] flagged", "opacity": 0.5,
            "metadata": {**meta, "quantity": "1 = not supported by the input"},
            **geometry.kwargs()}, "labels"))
    return out

