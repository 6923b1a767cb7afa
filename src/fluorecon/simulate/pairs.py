"""Simulated training/evaluation pairs: (camera image, ground truth) with explicit units.

The chain is ``phantom -> x scale (photons) -> PSF blur -> [binning] -> + background ->
camera``. The input is what a camera records (ADU); the target is in photons, on the same
scale as ``camera_inverse(input, camera)``:

==============  ====================================================================
task            ``E[camera_inverse(input)]`` equals ...
==============  ====================================================================
``denoise``     ``target`` (the blurred, noise-free image)
``deconvolve``  ``blur(target, psf)`` (target: the un-blurred sample, same flux)
``upsample``    ``downsample(target, factor)`` (area mean; target on the fine grid)
==============  ====================================================================

(exactly, up to ADC clipping at 0 and at saturation, which the defaults never reach).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.meta import ImageMeta
from fluorecon.core.rng import SeedLike, make_rng
from fluorecon.simulate.camera import CameraModel, camera_forward
from fluorecon.simulate.degrade import blur, downsample
from fluorecon.simulate.phantoms import make_phantom
from fluorecon.simulate.psf import widefield_psf

__all__ = ["TASKS", "SimulatedPair", "default_psf", "simulate_pair"]

Task = Literal["denoise", "deconvolve", "upsample"]
TASKS: tuple[str, ...] = ("denoise", "deconvolve", "upsample")

_RELATION = {
    "denoise": "E[camera_inverse(input)] = target",
    "deconvolve": "E[camera_inverse(input)] = blur(target, psf)",
    "upsample": "E[camera_inverse(input)] = downsample(target, factor) (area mean)",
}


@dataclass(frozen=True)
class SimulatedPair:
    """A simulated (input, target) pair with its forward model.

    Attributes
    ----------
    input : numpy.ndarray
        float32 camera image in ADU (integer values, offset included), as a camera records it.
        Use ``camera_inverse(input, camera)`` to get photons.
    target : numpy.ndarray
        float32 ground truth in photons per target pixel (see the module table for its
        relation to the input).
    psf : numpy.ndarray
        float32 PSF used for blurring, on the target grid, summing to 1, centred at
        ``shape // 2``.
    axes : str
        ``"YX"`` or ``"ZYX"`` (for input, target and PSF).
    meta : ImageMeta
        Metadata of the input: pixel sizes in micrometres, and in ``extra`` the units,
        the relation to the target and the simulation parameters.
    camera : CameraModel
        Camera that recorded ``input``.
    task : str
        ``"denoise"``, ``"deconvolve"`` or ``"upsample"``.
    target_meta : ImageMeta
        Metadata of the target (pixel sizes differ from ``meta`` for ``"upsample"``).
    expected : numpy.ndarray
        float32 noise-free expected photons on the input grid: ``E[camera_inverse(input)]``.
    """

    input: np.ndarray
    target: np.ndarray
    psf: np.ndarray
    axes: str
    meta: ImageMeta
    camera: CameraModel
    task: str
    target_meta: ImageMeta = field(repr=False)
    expected: np.ndarray = field(repr=False)


def default_psf(shape: Sequence[int], *, pixel_size: float = 0.1, z_step: float = 0.2,
                na: float = 1.2, wavelength: float = 0.52, n_immersion: float = 1.515,
                max_size: int = 65) -> np.ndarray:
    """The default widefield PSF of :func:`simulate_pair` for an image of ``shape``.

    Born-Wolf, NA 1.2, 0.52 µm emission, oil immersion, on a grid of ``pixel_size``
    (``z_step`` axially) with odd sizes ``min(n, max_size)`` (``n - 1`` for even ``n``).
    """
    shp = tuple(int(s) for s in shape)
    size = tuple(min(s if s % 2 else s - 1, max_size) for s in shp)
    size = tuple(max(1, s) for s in size)
    return widefield_psf(size, na=na, wavelength=wavelength, n_immersion=n_immersion,
                         pixel_size=pixel_size, z_step=z_step if len(shp) == 3 else None)


def simulate_pair(
    task: Task,
    shape: Sequence[int],
    *,
    phantom: str | np.ndarray = "filaments",
    photons: float = 50.0,
    psf: np.ndarray | None = None,
    camera: CameraModel | None = None,
    background: float = 0.0,
    factor: int | Sequence[int] = 2,
    seed: SeedLike = 0,
    pixel_size: float = 0.1,
    z_step: float = 0.2,
    phantom_options: dict[str, Any] | None = None,
) -> SimulatedPair:
    """Simulate a degraded camera image and its ground truth.

    Parameters
    ----------
    task : {"denoise", "deconvolve", "upsample"}
        What the pair trains or tests: removing noise (target: blurred, noise-free image),
        removing blur and noise (target: the sample itself), or recovering the fine sampling
        of a binned image (target: blurred, noise-free, on the fine grid).
    shape : sequence of int
        Target shape, ``(ny, nx)`` or ``(nz, ny, nx)``. For ``"upsample"`` each axis must
        be divisible by its factor; the input then has shape ``shape // factor``.
    phantom : str or numpy.ndarray
        Phantom kind for :func:`~fluorecon.simulate.phantoms.make_phantom`
        (``"filaments"``, ``"beads"``, ``"nuclei"``, ``"rings"``, ``"mixed"``), or a
        non-negative sample array of ``shape`` (its maximum is mapped to 1).
    photons : float
        Peak expected photons per input pixel of the noise-free, blurred signal (without
        background). About 5-20 is very noisy, 50 noisy, 500+ clean.
    psf : numpy.ndarray, optional
        PSF on the target grid (``pixel_size``, ``z_step``), centred at ``shape // 2``,
        summing to 1. Default: :func:`default_psf` (widefield Born-Wolf, NA 1.2, 0.52 µm).
    camera : CameraModel, optional
        Default: :meth:`CameraModel.scmos`.
    background : float
        Uniform background in photons per input pixel (out-of-focus light); part of the
        target too, so that the relation to the input stays exact.
    factor : int or sequence of int
        Binning factor for ``"upsample"`` (one for all axes or one per axis, e.g.
        ``(2, 1, 1)`` for axial only). Ignored for the other tasks.
    seed : int or numpy.random.Generator
        Seed for the phantom and the camera noise.
    pixel_size : float
        Lateral pixel size of the target grid, micrometres.
    z_step : float
        Axial step of the target grid (3D), micrometres.
    phantom_options : dict, optional
        Keyword options for the phantom generator.

    Returns
    -------
    SimulatedPair
        ``input`` in ADU, ``target`` in photons; see the module docstring for how they relate.

    Raises
    ------
    ConfigError
        Unknown task or phantom, non-positive photons, bad factor.

    Examples
    --------
    >>> from fluorecon.simulate.camera import camera_inverse
    >>> pair = simulate_pair("denoise", (64, 64), photons=100.0, seed=1)
    >>> pair.input.dtype, pair.target.dtype, pair.input.shape == pair.target.shape
    (dtype('float32'), dtype('float32'), True)
    >>> photons = camera_inverse(pair.input, pair.camera)  # same units as pair.target
    """
    if task not in TASKS:
        raise ConfigError(message(f"task {task!r}", f"one of {', '.join(TASKS)}",
                                  "Pick a task."))
    shp = tuple(int(s) for s in shape)
    if len(shp) not in (2, 3):
        raise ConfigError(message(f"shape {tuple(shape)!r}", "2 (YX) or 3 (ZYX) sizes",
                                  "Pass e.g. (256, 256) or (32, 128, 128)."))
    if not (np.isfinite(photons) and photons > 0):
        raise ConfigError(message(f"photons={photons!r}", "a positive peak photon count",
                                  "Pass e.g. photons=50."))
    if not (np.isfinite(background) and background >= 0):
        raise ConfigError(message(f"background={background!r}", "background >= 0 photons",
                                  "Pass e.g. background=10."))
    cam = CameraModel.scmos() if camera is None else camera
    axes = "YX" if len(shp) == 2 else "ZYX"
    rng = make_rng(seed)

    # Sample, in units of its maximum.
    if isinstance(phantom, str):
        obj = make_phantom(phantom, shp, seed=rng, **(phantom_options or {}))
    else:
        obj = np.asarray(phantom, dtype=np.float32)
        if obj.shape != shp or not np.all(np.isfinite(obj)) or obj.min() < 0 or obj.max() <= 0:
            raise DataError(message(f"a phantom array of shape {obj.shape}",
                                    f"a finite, non-negative, non-zero array of shape {shp}",
                                    "Pass a sample image of the target shape."))
        obj = obj / obj.max()

    # PSF on the target grid.
    if psf is None:
        kernel = default_psf(shp, pixel_size=pixel_size, z_step=z_step)
    else:
        kernel = np.asarray(psf, dtype=np.float32)
        if kernel.ndim != len(shp):
            raise DataError(message(f"a {kernel.ndim}D PSF for a {len(shp)}D shape",
                                    "a PSF with one axis per image axis",
                                    "Pass a 2D PSF for YX or a 3D PSF for ZYX."))

    blurred = blur(obj, kernel, mode="reflect")
    facs: tuple[int, ...] = (1,) * len(shp)
    if task == "upsample":
        facs = _factors(factor, shp)
        low = downsample(blurred, facs, reduce="mean", remainder="error")
    else:
        low = blurred
    peak = float(low.max())
    if not peak > 0:
        raise DataError(message("a phantom that is empty after blurring",
                                "a sample with some signal", "Use another seed or phantom."))
    scale = photons / peak  # photons per unit of the phantom

    expected = (low * scale + background).astype(np.float32)
    if task == "deconvolve":
        target = obj * scale + background
    else:
        target = blurred * scale + background
    target = np.asarray(target, dtype=np.float32)
    adu = camera_forward(np.clip(expected, 0.0, None), cam, rng=rng)

    steps = (float(z_step),) * (len(shp) - 2) + (float(pixel_size),) * 2
    sizes_t = dict(zip(axes, steps))
    sizes_in = {a: s * f for a, s, f in zip(axes, steps, facs)}
    extra = {
        "simulated": True,
        "task": task,
        "phantom": phantom if isinstance(phantom, str) else "array",
        "photons": float(photons),
        "background_photons": float(background),
        "photons_per_phantom_unit": scale,
        "input_units": "ADU",
        "target_units": "photons",
        "relation": _RELATION[task],
        "factor": list(facs),
        "camera": cam.model_dump(mode="json"),
    }
    if isinstance(seed, (int, np.integer)):
        extra["seed"] = int(seed)
    meta = ImageMeta(axes=axes, pixel_size=sizes_in, extra=extra)
    target_meta = ImageMeta(axes=axes, pixel_size=sizes_t, extra=dict(extra))
    return SimulatedPair(input=adu, target=target, psf=kernel, axes=axes, meta=meta,
                         camera=cam, task=task, target_meta=target_meta, expected=expected)


def _factors(factor: int | Sequence[int], shp: tuple[int, ...]) -> tuple[int, ...]:
    vals = [factor] * len(shp) if np.ndim(factor) == 0 else list(factor)  # type: ignore[arg-type]
    if len(vals) != len(shp) or any(int(v) != v or v < 1 for v in vals):
        raise ConfigError(message(f"factor={factor!r} for shape {shp}",
                                  "a positive integer or one per axis",
                                  "Pass e.g. factor=2 or factor=(2, 1, 1)."))
    out = tuple(int(v) for v in vals)
    if all(f == 1 for f in out):
        raise ConfigError(message(f"factor={factor!r}", "a factor > 1 along some axis",
                                  "Pass e.g. factor=2."))
    bad = [n for n, f in zip(shp, out) if n % f]
    if bad:
        raise ConfigError(message(f"shape {shp} with factor {out}",
                                  "each size divisible by its factor",
                                  "Pick a shape that is a multiple of the factor."))
    return out
