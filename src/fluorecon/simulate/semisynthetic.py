"""Training pairs made by physics from a user's own high-quality images (or from phantoms).

Following CSBDeep's data generation for deconvolution, upsampling and isotropic models
[1]_ [2]_, a high-quality image ``x`` becomes the *target*, and the *input* is what the
microscope would have recorded of it:

.. math::

    y = \\mathcal{I}\\Big(\\mathcal{S}\\big(h * x\\big) + n\\Big)

with :math:`h` a PSF (theoretical or measured), :math:`\\mathcal{S}` a sampling along
chosen axes (camera binning for lateral upsampling, plane sampling for an axial step),
:math:`n` the noise of the camera model (:mod:`fluorecon.simulate.camera`: Poisson shot
noise, EM excess noise, read noise, quantisation) and :math:`\\mathcal{I}` a cubic-spline
interpolation back onto the target grid. The input thus has the target's shape and
units, as the shape-preserving networks of :mod:`fluorecon.methods.learned` need; the
same :func:`resample_axis` maps real low-resolution images onto the fine grid before
prediction, so training and prediction see identical interpolation.

Units. The target is the image as given (never rescaled). For the noise, the image is
mapped to photons by ``photons / (p_high - p_low)`` above its ``p_low`` percentile
(``p_high``: 99.9th percentile of the blurred image), recorded by the camera, and mapped
back, so the input is in the target's units with :math:`E[y] = \\mathcal{I}(\\mathcal{S}
(h * x))` wherever the camera does not clip.

References
----------
.. [1] M. Weigert et al., "Content-aware image restoration: pushing the limits of
   fluorescence microscopy", Nature Methods 15, 1090-1097 (2018).
.. [2] M. Weigert, L. Royer, F. Jug, G. Myers, "Isotropic reconstruction of 3D
   fluorescence microscopy images using convolutional neural networks", MICCAI 2017.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.interpolate import make_interp_spline

from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.rng import SeedLike, make_rng
from fluorecon.simulate.camera import CameraModel, camera_forward, camera_inverse
from fluorecon.simulate.degrade import blur
from fluorecon.simulate.phantoms import make_phantom
from fluorecon.simulate.psf import FWHM_PER_SIGMA, psf_fwhm

__all__ = [
    "CAMERAS",
    "TrainingPairs",
    "add_camera_noise",
    "camera_preset",
    "degrade",
    "fine_length",
    "iso_kernel",
    "iso_pairs",
    "phantom_images",
    "resample_axis",
    "semisynthetic_pairs",
]

Sampling = Literal["bin", "point"]
CAMERAS: tuple[str, ...] = ("scmos", "emccd", "ideal")


@dataclass(frozen=True)
class TrainingPairs:
    """Registered (input, target) training images made by a forward model.

    Attributes
    ----------
    inputs, targets : list of numpy.ndarray
        float32 images, pair by pair of equal shape (the target grid), in the units of the
        source images.
    axes : str
        ``"YX"`` or ``"ZYX"`` (of every image).
    info : dict
        JSON-serialisable description of the forward model (PSF shape and FWHM, factors,
        axes, camera, photons, seed), recorded in the model folder of networks trained on
        the pairs.
    """

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    axes: str
    info: dict[str, Any] = field(default_factory=dict)


# -- building blocks ----------------------------------------------------------------------
def camera_preset(name: str) -> CameraModel:
    """The camera model called ``name``: ``"scmos"``, ``"emccd"`` or ``"ideal"``."""
    if name not in CAMERAS:
        raise ConfigError(message(f"camera {name!r}", f"one of {', '.join(CAMERAS)}",
                                  "Pick a camera preset."))
    return getattr(CameraModel, name)()


def fine_length(n: int, factor: float, sampling: Sampling) -> int:
    """Number of fine-grid samples covering ``n`` coarse samples taken ``factor`` apart.

    ``"bin"`` (integer ``factor``, each coarse pixel the mean of ``factor`` fine ones):
    ``n * factor``. ``"point"`` (coarse samples at fine positions ``0, f, 2f, ...``):
    ``floor((n - 1) * factor) + 1``.
    """
    if sampling == "bin":
        return int(n) * int(round(factor))
    return int(math.floor((n - 1) * factor + 1e-6)) + 1


def resample_axis(image: Any, *, axis: int, factor: float, sampling: Sampling = "point",
                  n_fine: int | None = None, order: int = 3) -> np.ndarray:
    """Interpolate ``image`` along ``axis`` from a coarse onto a ``factor`` times finer grid.

    Parameters
    ----------
    image : array_like
        Coarse image, any dimensionality (computed in float32).
    axis : int
        Array axis to refine.
    factor : float
        Ratio of coarse to fine sample spacing (> 1; integer for ``"bin"``).
    sampling : {"point", "bin"}
        How the coarse samples relate to the fine grid. ``"point"``: coarse sample ``i``
        sits at fine position ``i * factor`` (planes of a z-stack). ``"bin"``: coarse pixel
        ``i`` is the mean of fine pixels ``i*f ... i*f + f - 1``, so its centre sits at
        ``i*f + (f - 1)/2`` (camera binning).
    n_fine : int, optional
        Length of the fine axis (default :func:`fine_length`).
    order : {1, 3}
        Linear or cubic-spline (not-a-knot) interpolation. Fine positions beyond the first
        or last coarse centre take the edge value (no extrapolation).

    Returns
    -------
    numpy.ndarray
        float32 image whose ``axis`` has ``n_fine`` samples.

    Examples
    --------
    >>> import numpy as np
    >>> resample_axis(np.array([0.0, 2.0, 4.0]), axis=0, factor=2).tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0]
    """
    arr = as_float32(np.asarray(image))
    if not 0 < factor or not math.isfinite(factor):
        raise ConfigError(message(f"factor={factor!r}", "a positive finite factor",
                                  "Pass e.g. factor=2."))
    if sampling not in ("point", "bin"):
        raise ConfigError(message(f"sampling={sampling!r}", "'point' or 'bin'", "Pick one."))
    if sampling == "bin" and abs(factor - round(factor)) > 1e-9:
        raise ConfigError(message(f"a binning factor {factor}", "an integer factor",
                                  "Pass e.g. factor=2."))
    if order not in (1, 3):
        raise ConfigError(message(f"order={order!r}", "1 (linear) or 3 (cubic)", "Pick one."))
    ax = axis % arr.ndim
    n = arr.shape[ax]
    m = fine_length(n, factor, sampling) if n_fine is None else int(n_fine)
    fine = np.arange(m, dtype=np.float64)
    pos = fine / factor if sampling == "point" else (fine - (factor - 1) / 2.0) / factor
    pos = np.clip(pos, 0.0, n - 1)
    if n == 1:
        return np.ascontiguousarray(np.repeat(arr, m, axis=ax))
    k = 3 if (order == 3 and n >= 4) else 1
    spline = make_interp_spline(np.arange(n, dtype=np.float64), arr.astype(np.float64), k=k,
                                axis=ax)
    return np.ascontiguousarray(spline(pos), dtype=np.float32)


def _subsample(image: np.ndarray, *, axis: int, factor: float, sampling: Sampling,
               offset: float = 0.0) -> np.ndarray:
    """The coarse sampling of a fine image: bin means, or samples at ``offset + i*factor``."""
    n = image.shape[axis]
    if sampling == "bin":
        f = int(round(factor))
        m = n // f
        if m < 1:
            raise DataError(message(f"an axis of {n} pixels binned by {f}",
                                    "at least one full bin", "Use larger images."))
        sl = [slice(None)] * image.ndim
        sl[axis] = slice(0, m * f)
        cut = image[tuple(sl)]
        shape = cut.shape[:axis] + (m, f) + cut.shape[axis + 1:]
        return cut.reshape(shape).mean(axis=axis + 1, dtype=np.float64).astype(np.float32)
    pos = offset + factor * np.arange(int(math.floor((n - 1 - offset) / factor)) + 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = (pos - lo).astype(np.float32)
    shape = [1] * image.ndim
    shape[axis] = len(pos)
    w = w.reshape(shape)
    return (np.take(image, lo, axis=axis) * (1 - w) + np.take(image, hi, axis=axis) * w
            ).astype(np.float32)


def add_camera_noise(image: np.ndarray, *, photons: float, camera: CameraModel,
                     background: float = 0.0, low_percentile: float = 1.0,
                     high_percentile: float = 99.9, rng: SeedLike = 0) -> np.ndarray:
    """Record ``image`` with ``camera`` at ``photons`` peak photons; return it in its units.

    Parameters
    ----------
    image : numpy.ndarray
        Noise-free image (arbitrary units).
    photons : float
        Expected photons at the ``high_percentile`` of ``image`` above its
        ``low_percentile`` (which maps to 0 photons).
    camera : CameraModel
    background : float
        Extra uniform background in photons per pixel (adds shot noise only).
    low_percentile, high_percentile : float
        Percentiles defining the intensity-to-photon scale.
    rng : int or numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        float32 noisy image in the units of ``image``; its expectation is ``image`` where
        the ADC does not clip (pixels below ``low_percentile`` are clipped at 0 photons).
    """
    if not (math.isfinite(photons) and photons > 0):
        raise ConfigError(message(f"photons={photons!r}", "a positive peak photon count",
                                  "Pass e.g. photons=50."))
    if not (math.isfinite(background) and background >= 0):
        raise ConfigError(message(f"background={background!r}", "background >= 0 photons",
                                  "Pass e.g. background=5."))
    lo, hi = np.percentile(image, [low_percentile, high_percentile])
    if not hi > lo:
        raise DataError(message("a constant image", "an image with some contrast",
                                "Pass an image that is not flat."))
    scale = photons / float(hi - lo)
    expected = np.clip((image.astype(np.float64) - lo) * scale, 0.0, None) + background
    adu = camera_forward(expected, camera, rng=make_rng(rng))
    back = camera_inverse(adu, camera).astype(np.float64)
    return ((back - background) / scale + lo).astype(np.float32)


def degrade(image: Any, *, psf: Any | None = None, factors: Sequence[float] | None = None,
            sampling: Sampling = "bin", photons: float | None = None,
            camera: CameraModel | None = None, background: float = 0.0,
            interpolation_order: int = 3, rng: SeedLike = 0) -> np.ndarray:
    """Apply the forward model to one image and return the input on the image's grid.

    Parameters
    ----------
    image : array_like
        High-quality 2D or 3D image (the target).
    psf : array_like, optional
        PSF on the image's grid, centred at ``shape // 2`` (normalised here to sum 1).
    factors : sequence of float, optional
        Sampling factor per image axis (1: not subsampled), e.g. ``(1, 2, 2)`` for 2x
        lateral binning of a ZYX stack. Default: no subsampling.
    sampling : {"bin", "point"}
        Binning (camera pixels, integer factors) or point sampling (planes).
    photons : float, optional
        Peak expected photons for the camera noise (see :func:`add_camera_noise`);
        ``None``: no noise.
    camera : CameraModel, optional
        Default :meth:`CameraModel.scmos`.
    background : float
        Background photons per pixel.
    interpolation_order : {1, 3}
        Interpolation back onto the fine grid.
    rng : int or numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        float32 degraded image of the image's shape (the subsampled axes cropped to whole
        bins for ``"bin"``, see :func:`semisynthetic_pairs`).
    """
    x = as_float32(np.asarray(image))
    if x.ndim not in (2, 3) or not np.all(np.isfinite(x)):
        raise DataError(message(f"an image of shape {x.shape}", "a finite 2D or 3D image",
                                "Pass one YX or ZYX image."))
    gen = make_rng(rng)
    y = x
    if psf is not None:
        k = _check_kernel(psf, x.ndim)
        y = blur(y, k, mode="reflect")
    facs = tuple(float(f) for f in (factors or (1.0,) * x.ndim))
    if len(facs) != x.ndim or any(not f >= 1 for f in facs):
        raise ConfigError(message(f"factors {factors!r} for a {x.ndim}D image",
                                  "one factor >= 1 per image axis", "Pass e.g. (2, 2)."))
    for ax, f in enumerate(facs):
        if f > 1:
            y = _subsample(y, axis=ax, factor=f, sampling=sampling)
    if photons is not None:
        y = add_camera_noise(y, photons=photons, camera=camera or CameraModel.scmos(),
                             background=background, rng=gen)
    for ax, f in enumerate(facs):
        if f > 1:
            n_fine = x.shape[ax] - (x.shape[ax] % int(round(f)) if sampling == "bin" else 0)
            y = resample_axis(y, axis=ax, factor=f, sampling=sampling, n_fine=n_fine,
                              order=interpolation_order)
    return y


def _check_kernel(psf: Any, ndim: int) -> np.ndarray:
    k = as_float32(np.asarray(psf))
    if k.ndim != ndim or k.size == 0 or not np.all(np.isfinite(k)) or k.min() < 0 \
            or not k.sum() > 0:
        raise DataError(message(f"a PSF of shape {k.shape}",
                                f"a finite, non-negative {ndim}D PSF with positive sum",
                                "Pass a PSF with one axis per image axis."))
    return (k / k.sum()).astype(np.float32)


def _describe_psf(psf: np.ndarray | None, spacing: Sequence[float] | None = None
                  ) -> dict[str, Any] | None:
    if psf is None:
        return None
    out: dict[str, Any] = {"shape": list(psf.shape)}
    try:
        out["fwhm_pixels"] = [round(v, 4) for v in psf_fwhm(psf)]
    except DataError:
        out["fwhm_pixels"] = None
    if spacing is not None:
        out["spacing"] = list(spacing)
    return out


# -- pair generators ----------------------------------------------------------------------
def phantom_images(kind: str, shape: Sequence[int], n: int, *, peak: float = 1000.0,
                   seed: SeedLike = 0) -> list[np.ndarray]:
    """``n`` phantoms of ``kind`` (see :func:`~fluorecon.simulate.phantoms.make_phantom`)
    scaled to ``peak``: the "high-quality images" of fully synthetic training data."""
    if n < 1:
        raise ConfigError(message(f"n={n}", "at least one phantom", "Pass n >= 1."))
    rng = make_rng(seed)
    return [make_phantom(kind, shape, seed=rng) * np.float32(peak) for _ in range(n)]


def semisynthetic_pairs(images: Sequence[Any], axes: str, *, psf: Any | None = None,
                        factor: int = 1, subsample_axes: str = "", photons: float | None = 50.0,
                        camera: CameraModel | str = "scmos", background: float = 0.0,
                        copies: int = 1, interpolation_order: int = 3,
                        seed: SeedLike = 0) -> TrainingPairs:
    """Deconvolution or upsampling training pairs from high-quality images.

    Parameters
    ----------
    images : sequence of array_like
        High-quality images (the targets), each with spatial ``axes``.
    axes : {"YX", "ZYX"}
        Axes of every image.
    psf : array_like, optional
        PSF on the images' grid with the same axes, centred at ``shape // 2``. ``None``: no
        blur (pure upsampling/denoising).
    factor : int
        Binning factor (1: none) along ``subsample_axes`` (CSBDeep upsampling, [1]_).
    subsample_axes : str
        Axes binned by ``factor``, e.g. ``"YX"`` (lateral), ``"Z"`` or ``"ZYX"``.
    photons : float or None
        Peak photons of the camera noise; None: noise-free inputs.
    camera : CameraModel or {"scmos", "emccd", "ideal"}
    background : float
        Background photons per pixel.
    copies : int
        Independent noise realisations per image.
    interpolation_order : {1, 3}
        Interpolation of the binned image back onto the fine grid.
    seed : int or numpy.random.Generator

    Returns
    -------
    TrainingPairs
        Inputs and targets on the fine grid (axes binned by ``factor`` cropped to a
        multiple of it).
    """
    from fluorecon.core.axes import check_axes

    up = check_axes(axes)
    if up not in ("YX", "ZYX"):
        raise ConfigError(message(f"axes {axes!r}", "'YX' or 'ZYX'", "Split other axes into "
                                  "separate images first."))
    sub = subsample_axes.upper()
    if any(a not in up for a in sub) or len(set(sub)) != len(sub):
        raise ConfigError(message(f"subsample_axes {subsample_axes!r} for axes {up!r}",
                                  f"distinct letters of {up!r}", "Pass e.g. 'YX' or 'Z'."))
    if int(factor) != factor or factor < 1 or (factor > 1 and not sub):
        raise ConfigError(message(f"factor={factor!r} with subsample_axes {subsample_axes!r}",
                                  "an integer factor >= 1, and axes to bin when it is > 1",
                                  "Pass e.g. factor=2, subsample_axes='YX'."))
    if copies < 1:
        raise ConfigError(message(f"copies={copies}", "copies >= 1", "Pass copies=1."))
    cam = camera_preset(camera) if isinstance(camera, str) else camera
    kernel = None if psf is None else _check_kernel(psf, len(up))
    facs = tuple(float(factor) if a in sub else 1.0 for a in up)
    rng = make_rng(seed)
    xs, ys = [], []
    for i, img in enumerate(images):
        x = as_float32(np.asarray(img))
        if x.ndim != len(up):
            raise DataError(message(f"image {i} of shape {x.shape} for axes {up!r}",
                                    f"{len(up)}D images", "Pass images with these axes."))
        crop = tuple(slice(0, n - n % int(f)) for n, f in zip(x.shape, facs))
        target = np.ascontiguousarray(x[crop])
        for _ in range(copies):
            xs.append(degrade(target, psf=kernel, factors=facs, sampling="bin",
                              photons=photons, camera=cam, background=background,
                              interpolation_order=interpolation_order, rng=rng))
            ys.append(target)
    if not xs:
        raise DataError(message("no images", "at least one high-quality image",
                                "Pass images (or phantom_images(...))."))
    info = {"generator": "semisynthetic_pairs", "axes": up, "psf": _describe_psf(kernel),
            "factor": int(factor), "subsample_axes": sub, "sampling": "bin",
            "photons": photons, "background_photons": float(background),
            "camera": cam.model_dump(mode="json"), "copies": int(copies),
            "interpolation_order": int(interpolation_order), "n_images": len(images)}
    if isinstance(seed, (int, np.integer)):
        info["seed"] = int(seed)
    return TrainingPairs(inputs=xs, targets=ys, axes=up, info=info)


def iso_kernel(psf: Any | None, factor: float, *, pixel_size: float = 1.0,
               z_step: float | None = None, length: int | None = None) -> np.ndarray:
    """1D kernel that turns lateral resolution into axial resolution (Gaussian model).

    Parameters
    ----------
    psf : array_like or None
        3D ZYX PSF sampled at ``(z_step, pixel_size, pixel_size)``. ``None``: the kernel
        models only the axial sampling (a Gaussian of FWHM ``factor`` pixels, as
        :func:`~fluorecon.simulate.degrade.axial_anisotropy`).
    factor : float
        Axial step over lateral pixel size (``z_step / pixel_size`` of the stack).
    pixel_size, z_step : float
        Sampling of ``psf`` (any unit; ``z_step`` defaults to ``factor * pixel_size``).
    length : int, optional
        Kernel length (odd); default ``2 * ceil(4 sigma) + 1``.

    Returns
    -------
    numpy.ndarray
        float32 1D kernel summing to 1, centred at ``len // 2``, in lateral pixels.

    Notes
    -----
    With Gaussian approximations of the lateral and axial PSF profiles,
    :math:`\\sigma_z^2 = \\sigma_{xy}^2 + \\sigma_k^2`, so blurring a lateral slice (which
    already carries :math:`\\sigma_{xy}`) with a Gaussian of
    :math:`\\sigma_k = \\sqrt{\\sigma_z^2 - \\sigma_{xy}^2}` along one axis gives it the
    axial resolution, as Weigert et al. [2]_ do with the rotated PSF.
    """
    if not (math.isfinite(factor) and factor > 1):
        raise ConfigError(message(f"factor={factor!r}", "an axial/lateral sampling ratio > 1",
                                  "Pass z_step / pixel_size, e.g. 4."))
    if psf is None:
        sigma = factor / FWHM_PER_SIGMA
    else:
        p = as_float32(np.asarray(psf))
        if p.ndim != 3:
            raise DataError(message(f"a {p.ndim}D PSF", "a 3D ZYX PSF",
                                    "Pass the PSF of the stack (ZYX)."))
        dz = factor * pixel_size if z_step is None else float(z_step)
        fz, fy, fx = psf_fwhm(p, (dz, pixel_size, pixel_size))
        s_z = fz / FWHM_PER_SIGMA / pixel_size
        s_xy = 0.5 * (fy + fx) / FWHM_PER_SIGMA / pixel_size
        sigma = math.sqrt(max(s_z ** 2 - s_xy ** 2, 0.0))
        sigma = max(sigma, factor / FWHM_PER_SIGMA)
    half = int(math.ceil(4 * sigma)) if length is None else int(length) // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def iso_pairs(stack: Any, factor: float, *, kernel: Any | None = None,
              photons: float | None = None, camera: CameraModel | str = "scmos",
              background: float = 0.0, both_lateral_axes: bool = True,
              min_signal_percentile: float | None = None, interpolation_order: int = 3,
              seed: SeedLike = 0) -> TrainingPairs:
    """2D training pairs for isotropic restoration from the lateral planes of a stack.

    Each lateral plane (YX) of the anisotropic stack is a target. Its input is the plane
    degraded as the axial direction is: blurred with ``kernel`` along axis 0, sampled
    every ``factor`` pixels along axis 0 (as planes are), optionally made noisy, and
    interpolated back onto the fine grid [2]_. With ``both_lateral_axes`` the transposed
    planes (X along axis 0) are added, so the network sees structure in both lateral
    directions. The degraded direction is always axis 0, which is where Z lies in the XZ
    and YZ slices that :class:`~fluorecon.methods.learned.iso.IsotropicCARE` restores.

    Parameters
    ----------
    stack : array_like
        ``ZYX`` stack, axial step ``factor`` times its lateral pixel size.
    factor : float
        Axial over lateral sampling, > 1 (need not be an integer).
    kernel : array_like, optional
        1D axial kernel in lateral pixels (see :func:`iso_kernel`); default
        ``iso_kernel(None, factor)``.
    photons, camera, background
        Optional extra camera noise (the planes already carry their own noise).
    both_lateral_axes : bool
        Also use the planes transposed.
    min_signal_percentile : float, optional
        Drop planes whose 99th percentile is below this percentile of the whole stack
        (empty planes outside the sample).
    interpolation_order : {1, 3}
    seed : int or numpy.random.Generator

    Returns
    -------
    TrainingPairs
        ``axes="YX"``.
    """
    vol = as_float32(np.asarray(stack))
    if vol.ndim != 3 or not np.all(np.isfinite(vol)):
        raise DataError(message(f"a stack of shape {vol.shape}", "a finite 3D ZYX stack",
                                "Pass one ZYX stack."))
    if not (math.isfinite(factor) and factor > 1):
        raise ConfigError(message(f"factor={factor!r}", "an axial/lateral sampling ratio > 1",
                                  "Pass z_step / pixel_size, e.g. 4."))
    k = iso_kernel(None, factor) if kernel is None else as_float32(np.asarray(kernel))
    if k.ndim != 1 or not np.all(np.isfinite(k)) or k.min() < 0 or not k.sum() > 0:
        raise DataError(message(f"an axial kernel of shape {k.shape}",
                                "a finite, non-negative 1D kernel", "Pass iso_kernel(...)."))
    k2 = (k / k.sum())[:, None]
    cam = camera_preset(camera) if isinstance(camera, str) else camera
    rng = make_rng(seed)
    planes = list(vol)
    if min_signal_percentile is not None:
        thr = np.percentile(vol, min_signal_percentile)
        planes = [p for p in planes if np.percentile(p, 99) > thr]
        if not planes:
            raise DataError(message(f"no plane above the {min_signal_percentile} percentile",
                                    "planes with signal", "Lower min_signal_percentile."))
    xs, ys = [], []
    for p in planes:
        for t in ((p, p.T) if both_lateral_axes else (p,)):
            t = np.ascontiguousarray(t)
            y = blur(t, k2, mode="reflect")
            y = _subsample(y, axis=0, factor=factor, sampling="point")
            if photons is not None:
                y = add_camera_noise(y, photons=photons, camera=cam, background=background,
                                     rng=rng)
            y = resample_axis(y, axis=0, factor=factor, sampling="point", n_fine=t.shape[0],
                              order=interpolation_order)
            xs.append(y)
            ys.append(t)
    shapes = {x.shape for x in xs}
    info = {"generator": "iso_pairs", "axes": "YX", "factor": float(factor),
            "kernel": [round(float(v), 6) for v in k], "photons": photons,
            "background_photons": float(background),
            "camera": cam.model_dump(mode="json") if photons is not None else None,
            "both_lateral_axes": bool(both_lateral_axes), "planes": len(planes),
            "stack_shape": list(vol.shape), "interpolation_order": int(interpolation_order),
            "shapes": sorted([list(s) for s in shapes])}
    if isinstance(seed, (int, np.integer)):
        info["seed"] = int(seed)
    return TrainingPairs(inputs=xs, targets=ys, axes="YX", info=info)
