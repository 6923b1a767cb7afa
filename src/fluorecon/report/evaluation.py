"""Evaluation report of one restoration: before/after panels with matching contrast, metric
tables, noise and resolution estimates, line profiles, difference maps and trust maps.

:func:`evaluation_report` turns arrays (input, output, optional reference and trust maps)
into one self-contained HTML page whose figures are embedded as ``data:`` URIs; it never
runs a method, so it works for any classical or learned method, or for a result computed
elsewhere. ``fluorecon report evaluate`` computes the output and the trust maps and calls
it.

Contrast
--------
All image panels share one display range, the ``percentiles`` of the reference (or of the
input when there is none). With a reference, input and output are first mapped onto the
reference by the least-squares affine fit ``alpha * x + beta`` (as CSBDeep's normalised
metrics do), so a gain or offset change is not mistaken for a change in content; the fitted
``alpha`` and ``beta`` are listed under the figure. Without a reference nothing is fitted:
input and output are shown in their own units with the input's range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import AxesError, ConfigError, DataError, message
from fluorecon.methods.classical.denoising.noise import estimate_noise_model
from fluorecon.metrics import evaluate, single_image_frc
from fluorecon.normalize import affine_fit
from fluorecon.report.figures import display_limits, plane_at, png_bytes
from fluorecon.report.html import Section, Table, embed_png, render_html, write_html

__all__ = ["LineProfile", "TrustMaps", "auto_profile_line", "evaluation_report",
           "line_profile", "metric_rows", "noise_rows", "write_evaluation_report"]

_METRIC_COLUMNS = ["image", "PSNR (dB)", "SSIM", "NRMSE", "PSNR norm. (dB)", "SSIM norm.",
                   "NRMSE norm."]
_METRIC_KEYS = ("psnr", "ssim", "nrmse", "psnr_normalized", "ssim_normalized",
                "nrmse_normalized")


@dataclass(frozen=True)
class TrustMaps:
    """Optional trust maps of the output (arrays with the output's axes and shape).

    Attributes
    ----------
    std : ndarray, optional
        Predictive standard deviation (:func:`fluorecon.trust.ensembles.predict_uncertainty`).
    residual : ndarray, optional
        Standardised residual of the forward-model consistency check, input grid
        (:func:`fluorecon.trust.qc.consistency_maps`).
    flagged : ndarray of bool, optional
        Regions the measurement does not support (same grid as ``residual``).
    description : str
        How the maps were computed (shown in the report).
    """

    std: np.ndarray | None = None
    residual: np.ndarray | None = None
    flagged: np.ndarray | None = None
    description: str = ""

    @property
    def empty(self) -> bool:
        """No map at all."""
        return self.std is None and self.residual is None


@dataclass(frozen=True)
class LineProfile:
    """A straight line through a 2D plane and the values sampled along it.

    Attributes
    ----------
    start, end : (float, float)
        ``(y, x)`` end points in pixels of the displayed plane.
    values : dict of str to ndarray
        Profile of each image (bilinear interpolation, one sample per pixel of length).
    how : str
        How the line was chosen.
    """

    start: tuple[float, float]
    end: tuple[float, float]
    values: dict[str, np.ndarray]
    how: str

    @property
    def length(self) -> float:
        """Length in pixels."""
        return float(math.hypot(self.end[0] - self.start[0], self.end[1] - self.start[1]))


# -- line profiles ----------------------------------------------------------------------------
def auto_profile_line(plane: np.ndarray, *, length: float | None = None,
                      sigma: float = 1.5) -> tuple[tuple[float, float], tuple[float, float]]:
    """A line across the brightest structure of ``plane``, perpendicular to it.

    Parameters
    ----------
    plane : ndarray, shape (Y, X)
        Usually the reference (or the output when there is none): the least noisy image.
    length : float, optional
        Line length in pixels; default a quarter of the smaller side, between 16 and 96
        (shorter images: their smaller side).
    sigma : float
        Gaussian scale in pixels of the smoothing and of the Hessian.

    Returns
    -------
    start, end : (float, float)
        ``(y, x)`` end points, inside the plane.

    Notes
    -----
    The centre is the maximum of the Gaussian-smoothed plane :math:`G_\\sigma * I`, found
    at least ``2 sigma`` from the border, so a single hot pixel does not win. The direction
    is the eigenvector of the Hessian :math:`H = \\nabla^2 (G_\\sigma * I)` at the centre
    with the most negative eigenvalue: the direction of strongest curvature, i.e. across a
    filament or membrane (for a round spot every direction is equivalent). A profile
    across a structure is what shows its width, the separation of neighbours and how much
    a method sharpened or smoothed it.
    """
    arr = np.asarray(plane, dtype=np.float64)
    if arr.ndim != 2 or min(arr.shape) < 4:
        raise DataError(message(f"a plane of shape {arr.shape}", "a 2D plane of at least "
                                "4 x 4 pixels", "Pass a larger image."))
    ny, nx = arr.shape
    if length is None:
        length = float(min(max(min(ny, nx) / 4.0, 16.0), 96.0, min(ny, nx) - 1))
    if length <= 0:
        raise ConfigError(message(f"profile length {length}", "a positive length in pixels",
                                  "Pass a positive length."))
    arr = np.where(np.isfinite(arr), arr, np.nanmedian(arr) if np.isfinite(arr).any() else 0)
    smooth = ndi.gaussian_filter(arr, sigma, mode="reflect")
    m = int(min(math.ceil(2 * sigma), (min(ny, nx) - 1) // 2))
    inner = smooth[m:ny - m, m:nx - m] if m > 0 else smooth
    cy, cx = np.unravel_index(int(np.argmax(inner)), inner.shape)
    cy, cx = int(cy) + m, int(cx) + m
    hyy = ndi.gaussian_filter(arr, sigma, order=(2, 0), mode="reflect")[cy, cx]
    hxx = ndi.gaussian_filter(arr, sigma, order=(0, 2), mode="reflect")[cy, cx]
    hxy = ndi.gaussian_filter(arr, sigma, order=(1, 1), mode="reflect")[cy, cx]
    evals, evecs = np.linalg.eigh(np.array([[hyy, hxy], [hxy, hxx]]))
    dy, dx = (float(v) for v in evecs[:, int(np.argmin(evals))])
    if not (math.isfinite(dy) and math.isfinite(dx)) or dy == dx == 0:
        dy, dx = 0.0, 1.0
    # shrink the half-lengths on each side so both end points stay inside the plane
    def reach(c: float, d: float, n: int) -> float:
        if abs(d) < 1e-12:
            return math.inf
        return (n - 1 - c) / d if d > 0 else -c / d

    half = length / 2.0
    fwd = min(half, reach(cy, dy, ny), reach(cx, dx, nx))
    bwd = min(half, reach(cy, -dy, ny), reach(cx, -dx, nx))
    return ((cy - bwd * dy, cx - bwd * dx), (cy + fwd * dy, cx + fwd * dx))


def line_profile(planes: Mapping[str, np.ndarray], start: Sequence[float],
                 end: Sequence[float], *, how: str = "given") -> LineProfile:
    """Sample every plane along the line ``start`` -> ``end`` (``(y, x)`` in pixels).

    Uses :func:`skimage.measure.profile_line` (bilinear, both end points included, one
    sample per pixel of length).

    Raises
    ------
    ConfigError
        An end point outside the planes or a line shorter than one pixel.
    """
    from skimage.measure import profile_line

    shape = next(iter(planes.values())).shape
    s = (float(start[0]), float(start[1]))
    e = (float(end[0]), float(end[1]))
    for p in (s, e):
        if not (0 <= p[0] <= shape[0] - 1 and 0 <= p[1] <= shape[1] - 1):
            raise ConfigError(message(f"line end point (y, x) = {p}", f"points inside the "
                                      f"displayed plane of shape {shape}",
                                      "Pass --line Y0,X0,Y1,X1 inside the image."))
    if math.hypot(e[0] - s[0], e[1] - s[1]) < 1:
        raise ConfigError(message(f"a line from {s} to {e}", "a line at least one pixel "
                                  "long", "Pass two distinct end points."))
    values = {k: np.asarray(profile_line(np.asarray(v, np.float64), s, e, linewidth=1,
                                         order=1, mode="reflect"), np.float32)
              for k, v in planes.items()}
    return LineProfile(start=s, end=e, values=values, how=how)


# -- numbers ----------------------------------------------------------------------------------
def metric_rows(images: Mapping[str, np.ndarray], reference: np.ndarray, *,
                axes: str) -> list[list[object]]:
    """One row per image: name, then PSNR, SSIM, NRMSE plain and normalised vs ``reference``
    (:func:`fluorecon.metrics.evaluate`)."""
    rows: list[list[object]] = []
    for name, img in images.items():
        scores = evaluate(img, reference, axes=axes)
        rows.append([name, *(float(scores[k]) for k in _METRIC_KEYS)])
    return rows


def noise_rows(images: Mapping[str, np.ndarray], *, axes: str,
               spacing: Sequence[float] | None = None,
               max_pixels: int = 1 << 19) -> list[list[object]]:
    """Reference-free estimates per image: noise model, noise std at the median intensity,
    and single-image FRC resolution.

    Parameters
    ----------
    images : mapping of str to ndarray
        Images with ``axes``.
    axes : str
    spacing : sequence of float, optional
        Pixel size per spatial axis (``YX`` or ``ZYX`` order); default 1 (pixels).
    max_pixels : int
        Larger images are sampled (evenly spaced planes/blocks) for the noise model,
        see :func:`~fluorecon.methods.classical.denoising.noise.estimate_noise_model`;
        half a million pixels keep ``a`` within about 10 % of the estimate on 4 million
        (3 % on a simulated 1024 x 1024 image, 9 % on a 32 x 256 x 256 volume) in a
        quarter of the time.

    Returns
    -------
    list of list
        Rows: image, ``a`` (Poisson slope), ``b`` (Gaussian variance at zero mean), noise
        std at the median, median / noise std, FRC resolution at the 1/7 and half-bit
        thresholds (units of ``spacing``; 2D: of the displayed plane, 3D: of the volume at
        the first index of other axes). A quantity that cannot be estimated (too flat an
        image, too small) is ``n/a`` with the reason.
    """
    rows: list[list[object]] = []
    sp = spatial_axes(axes)
    for name, img in images.items():
        arr = np.asarray(img, np.float32)
        med = float(np.median(arr))
        noise: list[object]
        try:
            nm = estimate_noise_model(arr, axes=axes, max_pixels=max_pixels)
            std = float(math.sqrt(max(nm.a * med + nm.b, 0.0)))
            noise = [nm.a, nm.b, std, med / std if std > 0 else math.inf]
        except DataError as exc:
            noise = ["n/a", "n/a", f"n/a ({_short(exc)})", "n/a"]
        try:
            if len(sp) == 2:
                res = single_image_frc(plane_at(arr, axes), spacing=None if spacing is None
                                       else tuple(spacing)[-2:])
            else:
                res = single_image_frc(_middle_volume(arr, axes), spacing=None
                                       if spacing is None else tuple(spacing))
            frc_cells: list[object] = [_res(res.resolution_1_7), _res(res.resolution_half_bit)]
        except (DataError, ConfigError) as exc:
            frc_cells = [f"n/a ({_short(exc)})", "n/a"]
        rows.append([name, *noise, *frc_cells])
    return rows


def _short(exc: Exception) -> str:
    return str(exc).split(";")[0][:80]


def _spacing(pixel_size: float | Sequence[float] | None, n: int
             ) -> tuple[float, ...] | None:
    if pixel_size is None:
        return None
    values = ((float(pixel_size),) * n if np.isscalar(pixel_size)
              else tuple(float(v) for v in pixel_size))  # type: ignore[union-attr]
    if len(values) != n or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(message(f"pixel size {pixel_size}", f"one positive value or {n} "
                                  "(one per spatial axis)", "Pass the output's pixel size."))
    return values


def _middle_volume(arr: np.ndarray, axes: str) -> np.ndarray:
    ax = check_axes(axes, ndim=arr.ndim)
    index = tuple(slice(None) if a in "ZYX" else 0 for a in ax)
    return arr[index]


def _res(value: float) -> object:
    if math.isnan(value):
        return "finer than sampling"
    if math.isinf(value):
        return "no correlation"
    return float(value)


# -- figures ----------------------------------------------------------------------------------
def _imshow(ax: Any, plane: np.ndarray, title: str, *, vmin: float, vmax: float,
            cmap: str = "magma") -> Any:
    im = ax.imshow(plane, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return im


def _panels_png(planes: Mapping[str, np.ndarray], limits: tuple[float, float],
                line: LineProfile | None, cmap: str) -> bytes:
    from matplotlib.figure import Figure

    n = len(planes)
    shape = next(iter(planes.values())).shape
    aspect = shape[0] / max(shape[1], 1)
    fig = Figure(figsize=(3.4 * n + 0.6, 3.4 * aspect + 0.5), dpi=100, layout="constrained")
    axs = fig.subplots(1, n, squeeze=False)[0]
    im = None
    for ax, (title, plane) in zip(axs, planes.items()):
        im = _imshow(ax, plane, title, vmin=limits[0], vmax=limits[1], cmap=cmap)
        if line is not None:
            ax.plot([line.start[1], line.end[1]], [line.start[0], line.end[0]], color="cyan",
                    lw=1.2)
    fig.colorbar(im, ax=list(axs), fraction=0.025, pad=0.01, label="intensity")
    return png_bytes(fig)


def _profile_png(profile: LineProfile, reference: str | None, unit: str,
                 step: float) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    for name, values in profile.values.items():
        pos = np.arange(values.size) * step * profile.length / max(values.size - 1, 1)
        style = {"color": "black", "lw": 2.0} if name == reference else {"lw": 1.2}
        ax.plot(pos, values, label=name, **style)
    ax.set_xlabel(f"position along the line ({unit})")
    ax.set_ylabel("intensity" + (" (fitted to reference)" if reference else ""))
    ax.legend(fontsize=8)
    return png_bytes(fig)


def _difference_png(diffs: Mapping[str, np.ndarray]) -> tuple[bytes, list[float]]:
    """One map per difference, each with its own symmetric range (99.5th percentile of
    its absolute value) and colour bar."""
    from matplotlib.figure import Figure

    n = len(diffs)
    shape = next(iter(diffs.values())).shape
    aspect = shape[0] / max(shape[1], 1)
    fig = Figure(figsize=(4.0 * n + 0.4, 3.6 * aspect + 0.5), dpi=100, layout="constrained")
    axs = fig.subplots(1, n, squeeze=False)[0]
    limits = []
    for ax, (title, d) in zip(axs, diffs.items()):
        lim = float(np.percentile(np.abs(d), 99.5))
        lim = lim if lim > 0 else 1.0
        limits.append(lim)
        im = _imshow(ax, d, title, vmin=-lim, vmax=lim, cmap="RdBu_r")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    return png_bytes(fig), limits


def _trust_png(maps: TrustMaps, axes: str, z: int | None, background: np.ndarray | None
               ) -> bytes:
    from matplotlib.figure import Figure

    panels = []
    if maps.std is not None:
        std = plane_at(maps.std, axes, z=z)
        panels.append(("predictive std", std, "viridis", 0.0, display_limits(std)[1]))
    if maps.residual is not None:
        panels.append(("standardised residual (data - model)", plane_at(maps.residual, axes,
                                                                          z=z),
                       "RdBu_r", -4.0, 4.0))
    fig = Figure(figsize=(4.0 * (len(panels) + (maps.flagged is not None)), 3.8), dpi=100,
                 layout="constrained")
    axs = fig.subplots(1, len(panels) + (maps.flagged is not None), squeeze=False)[0]
    for ax, (title, plane, cmap, lo, hi) in zip(axs, panels):
        im = _imshow(ax, plane, title, vmin=lo, vmax=hi, cmap=cmap)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if maps.flagged is not None:
        ax = axs[len(panels)]
        flag = plane_at(maps.flagged.astype(np.float32), axes, z=z)
        if background is not None and background.shape == flag.shape:
            lo, hi = display_limits(background)
            _imshow(ax, background, "", vmin=lo, vmax=hi, cmap="gray")
        overlay = np.zeros(flag.shape + (4,), np.float32)
        overlay[flag > 0] = (1.0, 0.1, 0.1, 0.6)
        ax.imshow(overlay, interpolation="nearest")
        ax.set_title(f"flagged: {100 * float(flag.mean()):.2f} % of this plane", fontsize=10)
        ax.set_axis_off()
    return png_bytes(fig)


# -- the report -------------------------------------------------------------------------------
def _spatial_shape(arr: np.ndarray, axes: str) -> tuple[int, ...]:
    return tuple(int(arr.shape[axes.index(a)]) for a in spatial_axes(axes))


def _to_grid(image: np.ndarray, axes: str, shape: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation of the spatial axes of ``image`` onto ``shape``."""
    sp = spatial_axes(axes)
    factors = [1.0] * image.ndim
    for a, n in zip(sp, shape):
        i = axes.index(a)
        factors[i] = n / image.shape[i]
    out = ndi.zoom(np.asarray(image, np.float32), factors, order=1, mode="nearest",
                   grid_mode=True)
    return as_float32(out)


def evaluation_report(input: Any, output: Any, *, axes: str, reference: Any = None,
                      trust: TrustMaps | None = None, output_name: str = "output",
                      line: Sequence[float] | None = None, z: int | None = None,
                      percentiles: tuple[float, float] = (0.3, 99.7),
                      fit_to_reference: bool = True,
                      pixel_size: float | Sequence[float] | None = None,
                      pixel_unit: str = "µm", warnings: Sequence[str] = (),
                      source: Mapping[str, object] | None = None,
                      title: str = "fluorecon evaluation report", cmap: str = "magma") -> str:
    """Render the evaluation of one restoration as a self-contained HTML page.

    Parameters
    ----------
    input : array_like
        The measured image (any axes of ``STCZYX``; panels show the first index of ``S``,
        ``T``, ``C`` and the Z slice ``z``). When its spatial shape differs from the
        output's (upsampling), it is linearly interpolated onto the output grid for the
        panels, profiles and metrics, and the captions say so.
    output : array_like
        The restored image, same axes.
    axes : str
        Axes of ``input``, ``output`` and ``reference``.
    reference : array_like, optional
        Ground truth or high-quality image on the output grid. With it: metrics (PSNR,
        SSIM, NRMSE, plain and normalised), contrast from its percentiles, a least-squares
        fit of input and output onto it, the map ``output - reference``.
    trust : TrustMaps, optional
        Uncertainty and consistency maps to show.
    output_name : str
        Label of the output (e.g. the method's name).
    line : (y0, x0, y1, x1), optional
        Line for the intensity profile, in pixels of the displayed plane (output grid).
        Default: :func:`auto_profile_line` on the reference (else the output).
    z : int, optional
        Z slice shown for 3D images (default the middle one).
    percentiles : (float, float)
        Display percentiles of the reference (else the input), shared by every panel.
    fit_to_reference : bool
        Map input and output onto the reference by least squares before display
        (ignored without a reference).
    pixel_size : float or sequence of float, optional
        Pixel size of the output grid in ``pixel_unit``: one value (isotropic) or one per
        spatial axis (``YX`` / ``ZYX`` order); for profile positions and FRC resolutions.
        Default: everything in pixels.
    warnings : sequence of str
        Shown at the top (e.g. "may hallucinate").
    source : mapping, optional
        Rows of the "Run" table (input path, method, command ...).

    Returns
    -------
    str
        The HTML page; every figure is embedded (no external resource).

    Raises
    ------
    AxesError
        Shapes that do not match the axes or each other.

    Notes
    -----
    The least-squares fit of an image :math:`x` onto the reference :math:`r` is
    :math:`\\alpha^*, \\beta^* = \\arg\\min_{\\alpha, \\beta} \\lVert \\alpha x + \\beta -
    r \\rVert^2`. Fitting a noisy input shrinks its :math:`\\alpha^*` (regression dilution),
    which is why the method noise is computed the other way round, the output fitted onto
    the input: :math:`n = x - (\\alpha y + \\beta)`; for a denoiser whose output keeps the
    input's units, :math:`\\alpha \\approx 1, \\beta \\approx 0`.

    References
    ----------
    .. [1] Buades, Coll & Morel, "A review of image denoising algorithms, with a new one",
       Multiscale Model. Simul. 4(2), 490-530 (2005): method noise.
    .. [2] Weigert et al., "Content-aware image restoration: pushing the limits of
       fluorescence microscopy", Nat. Methods 15, 1090-1097 (2018): normalised metrics.
    .. [3] Foi et al., "Practical Poissonian-Gaussian noise modeling and fitting for
       single-image raw-data", IEEE TIP 17(10), 1737-1754 (2008).
    .. [4] Koho et al., "Fourier ring correlation simplifies image restoration in
       fluorescence microscopy", Nat. Commun. 10, 3103 (2019).
    """
    x = as_float32(np.asarray(input))
    y = as_float32(np.asarray(output))
    ax = check_axes(axes, ndim=y.ndim)
    check_axes(ax, ndim=x.ndim)
    sp = spatial_axes(ax)
    if len(sp) not in (2, 3):
        raise AxesError(message(f"axes {ax!r}", "2D or 3D spatial axes (YX or ZYX)",
                                "Pass the axes of a 2D or 3D image."))
    lead_x = tuple(n for n, a in zip(x.shape, ax) if a not in sp)
    lead_y = tuple(n for n, a in zip(y.shape, ax) if a not in sp)
    if lead_x != lead_y:
        raise AxesError(message(f"input of shape {x.shape} and output of shape {y.shape}",
                                "the same non-spatial sizes", "Pass the output of this "
                                "input."))
    spacing = _spacing(pixel_size, len(sp))
    in_spacing = spacing
    notes: list[str] = []
    in_label = "input"
    x_measured = x
    if _spatial_shape(x, ax) != _spatial_shape(y, ax):
        if spacing is not None:
            in_spacing = tuple(p * o / i for p, o, i in zip(spacing, _spatial_shape(y, ax),
                                                             _spatial_shape(x, ax)))
        in_shape = _spatial_shape(x, ax)
        x = _to_grid(x, ax, _spatial_shape(y, ax))
        in_label = "input (interpolated)"
        notes.append(f"The input ({in_shape} pixels) is on a coarser grid than the output "
                     f"({_spatial_shape(y, ax)}); it is shown, profiled and scored after "
                     "linear interpolation onto the output grid.")
    ref = None
    if reference is not None:
        ref = as_float32(np.asarray(reference))
        if ref.shape != y.shape:
            raise AxesError(message(f"a reference of shape {ref.shape} for an output of "
                                    f"shape {y.shape}", "the same shape",
                                    "Pass the reference on the output's grid."))
    named = {in_label: x, output_name: y}
    shown = dict(named)
    fits: dict[str, tuple[float, float]] = {}
    if ref is not None and fit_to_reference:
        for k, v in named.items():
            a, b = affine_fit(v, ref)
            fits[k] = (float(a), float(b))
            shown[k] = (a * v + b).astype(np.float32)
    planes = {k: plane_at(v, ax, z=z) for k, v in shown.items()}
    if ref is not None:
        planes["reference"] = plane_at(ref, ax, z=z)
    basis = planes["reference"] if ref is not None else planes[in_label]
    limits = display_limits(basis, percentiles)
    base_name = "reference" if ref is not None else "input"
    zinfo = "" if "Z" not in sp else (f" Z slice {z if z is not None else y.shape[ax.index('Z')] // 2}"
                                       f" of {y.shape[ax.index('Z')]}.")

    # line profile
    if line is not None:
        if len(line) != 4:
            raise ConfigError(message(f"a line of {len(line)} numbers", "4 numbers y0, x0, "
                                      "y1, x1", "Pass --line Y0,X0,Y1,X1."))
        profile = line_profile(planes, line[:2], line[2:], how="given")
    else:
        start, end = auto_profile_line(planes["reference"] if ref is not None
                                       else planes[output_name])
        profile = line_profile(planes, start, end, how="automatic: across the brightest "
                               f"structure of the {'reference' if ref is not None else output_name}"
                               " (perpendicular to it, from the Hessian)")

    sections: list[Section] = []
    if source:
        sections.append(Section("Run", tables=[Table(["item", "value"],
                                                     [[k, v] for k, v in source.items()],
                                                     text=True)]))
    fit_text = ""
    if fits:
        fit_text = (" Before display, each image x was mapped onto the reference by least "
                    "squares (alpha x + beta): " + "; ".join(
                        f"{k}: alpha {a:.4g}, beta {b:.4g}" for k, (a, b) in fits.items()) + ".")
    panel_caption = (f"{', '.join(planes)}: one display range [{limits[0]:.4g}, "
                     f"{limits[1]:.4g}] for all panels, the {percentiles[0]:g}-"
                     f"{percentiles[1]:g} percentiles of the {base_name}.{fit_text}{zinfo} "
                     "Cyan: the profile line.")
    sections.append(Section("Before and after", warnings=list(warnings), paragraphs=notes,
                            figures=[(embed_png(_panels_png(planes, limits, profile, cmap)),
                                      panel_caption)]))

    if ref is not None:
        rows = metric_rows({in_label: x, output_name: y}, ref, axes=ax)
        best = 1 if rows[1][4] >= rows[0][4] else 0  # normalised PSNR; type: ignore[operator]
        sections.append(Section("Metrics against the reference", paragraphs=[
            "PSNR and NRMSE use the reference's range (max - min) as data range; SSIM uses "
            "a 7-pixel window per plane (2D) or volume (3D). Normalised metrics first "
            "percentile-normalise the reference (0.1 and 99.9 %) and fit the image to it "
            "by least squares, so they ignore gain and offset (CSBDeep convention)."],
            tables=[Table(_METRIC_COLUMNS, rows, best_row=best,
                          caption=f"{in_label} and {output_name} vs the reference")]))
    unit = pixel_unit if spacing is not None else "pixels"
    sections.append(Section("Noise and resolution (no reference needed)", paragraphs=[
        "Noise: Poisson-Gaussian model var = a * mean + b estimated from each image alone "
        "(Foi et al. 2008); the std is evaluated at the image's median. Resolution: "
        "single-image Fourier ring correlation of the diagonal sub-lattices (Koho et al. "
        "2019), 1/7 and half-bit thresholds, in " + unit + ". After denoising or "
        "deconvolution the noise is no longer pixel-independent, which makes both the noise "
        "estimate and the FRC of the output optimistic: compare outputs of different "
        "methods with care, and prefer the reference metrics when a reference exists."],
        tables=[Table(["image", "a", "b", "noise std at median", "median / std",
                       f"FRC 1/7 ({unit})", f"FRC half-bit ({unit})"],
                      noise_rows({"input": x_measured}, axes=ax, spacing=in_spacing)
                      + noise_rows({output_name: y}, axes=ax, spacing=spacing),
                      caption="reference-free estimates")]))

    py, px = (1.0, 1.0) if spacing is None else spacing[-2:]
    dy, dx = profile.end[0] - profile.start[0], profile.end[1] - profile.start[1]
    step = math.hypot(dy * py, dx * px) / max(profile.length, 1e-12)
    prof_caption = (f"Line from (y, x) = ({profile.start[0]:.1f}, {profile.start[1]:.1f}) to "
                    f"({profile.end[0]:.1f}, {profile.end[1]:.1f}), {profile.length:.1f} "
                    f"pixels; chosen {profile.how}. Values as displayed above"
                    + (" (fitted to the reference)." if fits else ".") + zinfo)
    prof_rows = [[k, float(v.min()), float(v.max()), float(v.max() - v.min())]
                 for k, v in profile.values.items()]
    sections.append(Section("Line profile", figures=[(embed_png(_profile_png(
        profile, "reference" if ref is not None else None, unit, step)), prof_caption)],
        tables=[Table(["image", "min", "max", "peak-to-valley"], prof_rows,
                      caption="along the profile line")]))

    diffs: dict[str, np.ndarray] = {}
    texts = []
    if ref is not None:
        diffs[f"{output_name} - reference"] = planes[output_name] - planes["reference"]
        texts.append(f"{output_name} - reference (both as displayed above"
                     + (", i.e. after the fit to the reference" if fits else "") + ")")
    # method noise (Buades et al. 2005): the input minus the output mapped onto the input's
    # units by least squares; for a denoiser, what was removed
    xin = plane_at(x, ax, z=z)
    yout = plane_at(y, ax, z=z)
    a_io, b_io = affine_fit(yout, xin)
    diffs[f"method noise: {in_label} - fit({output_name})"] = xin - (a_io * yout + b_io)
    texts.append(f"method noise = {in_label} - ({float(a_io):.4g} x {output_name} + "
                 f"{float(b_io):.4g}), the output fitted to the input by least squares, in "
                 "input units")
    dpng, dlims = _difference_png(diffs)
    sections.append(Section("Differences", paragraphs=[
        "Output minus reference shows the errors: red where the output is brighter than "
        "the reference (structure possibly invented), blue where it is darker (structure "
        "lost). The method noise "
        "(Buades, Coll & Morel 2005) shows what the method removed from the input: for a "
        "denoiser it should look like unstructured noise; visible edges or filaments in it "
        "are signal the method erased."],
        figures=[(embed_png(dpng), "; ".join(f"{t}, range +-{lim:.4g} (99.5th percentile of "
                                            "its absolute value)"
                                            for t, lim in zip(texts, dlims)) + "." + zinfo)]))

    if trust is not None and not trust.empty:
        sections.append(Section("Trust maps", paragraphs=[trust.description] if
                                trust.description else [],
                                figures=[(embed_png(_trust_png(trust, ax, z,
                                                               plane_at(y, ax, z=z))),
                                          "uncertainty (prediction units) and data "
                                          "consistency: the standardised residual should "
                                          "look like unstructured noise within +-3; red "
                                          "regions are not supported by the measurement."
                                          + zinfo)]))
    return render_html(title, sections, intro=(
        f"Evaluation of {output_name} on one image"
        + (" against a reference." if ref is not None else " (no reference: reference-free "
                                                           "estimates only).")))


def write_evaluation_report(path: str | Path, input: Any, output: Any, *, axes: str,
                            overwrite: bool = False, inputs: Sequence[str | Path] = (),
                            **kwargs: Any) -> Path:
    """Write :func:`evaluation_report` to ``path`` atomically (never over ``inputs``)."""
    page = evaluation_report(input, output, axes=axes, **kwargs)
    return write_html(path, page, overwrite=overwrite, inputs=inputs)
