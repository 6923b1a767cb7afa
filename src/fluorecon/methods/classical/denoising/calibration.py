"""Self-supervised (J-invariant, Noise2Self) calibration of denoiser parameters.

A denoiser is made J-invariant by masking: the pixels of a regular grid are replaced by
the mean of their direct neighbours, the image is denoised, and only the masked pixels
are kept. The prediction for a masked pixel then does not depend on its own noisy value,
so for pixel-independent zero-mean noise

.. math:: E\\|f_J(y) - y\\|^2 = E\\|f_J(y) - x\\|^2 + E\\|y - x\\|^2,

i.e. the self-supervised loss against the noisy image equals the true loss against the
clean image plus a constant, and the parameters minimising it are the best ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from fluorecon.core.errors import ConfigError, message

__all__ = [
    "CalibrationResult",
    "MaskedLoss",
    "calibrate",
    "calibration_region",
    "invariant_denoise",
]

DenoiseFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of a self-supervised calibration.

    Attributes
    ----------
    method : str
        Name of the calibrated denoiser.
    best_parameters : dict
        The parameters with the lowest self-supervised loss.
    best_loss : float
        That loss (mean squared error on masked pixels, in the calibration domain).
    parameters_tested : tuple of dict
        Every parameter set evaluated, in evaluation order.
    losses : tuple of float
        The loss of each entry of ``parameters_tested``.
    region : tuple of slice
        The crop of the image the calibration ran on.
    """

    method: str
    best_parameters: dict[str, Any]
    best_loss: float
    parameters_tested: tuple[dict[str, Any], ...]
    losses: tuple[float, ...]
    region: tuple[slice, ...] = field(default=())

    def summary(self) -> str:
        """Short text of the chosen parameters, e.g. ``"weight=0.82"`` or ``"bm3d(sigma=1)"``.

        Examples
        --------
        >>> CalibrationResult("auto", {"method": "tv", "weight": 0.8169}, 1.0, (), ()).summary()
        'tv(weight=0.817)'
        """
        params = dict(self.best_parameters)
        chosen = params.pop("method", None)
        text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in params.items())
        return f"{chosen}({text})" if chosen else text


def _interpolate_neighbours(image: np.ndarray) -> np.ndarray:
    """Mean of the 2*ndim direct neighbours of every pixel (mirror boundaries)."""
    kernel = ndi.generate_binary_structure(image.ndim, 1).astype(np.float32)
    kernel.ravel()[kernel.size // 2] = 0
    kernel /= kernel.sum()
    return ndi.convolve(image, kernel, mode="mirror")


def _grid_slices(ndim: int, stride: int, phases: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(p, None, stride) for p in phases[:ndim])


def _mask_phases(ndim: int, stride: int, n_masks: int) -> list[tuple[int, ...]]:
    """``n_masks`` distinct grid phases, spread over the ``stride**ndim`` cell.

    The diagonal phases (0,0), (s/2, s/2), ... come first; further masks take the
    remaining phases in an order that keeps consecutive ones far apart.
    """
    diag = [((j * stride) // min(n_masks, stride),) * ndim for j in range(min(n_masks, stride))]
    phases = list(dict.fromkeys(diag))
    cell = stride ** ndim
    step = next(k for k in range(cell // 2 + 1, cell) if math.gcd(k, cell) == 1) if cell > 2 else 1
    k = 0
    while len(phases) < n_masks:
        p = tuple(int(v) for v in np.unravel_index(k % cell, (stride,) * ndim))
        if p not in phases:
            phases.append(p)
        k += step
    return phases


class MaskedLoss:
    """Self-supervised loss of denoisers on fixed masked copies of one image.

    The masked inputs are built once and reused for every candidate, so losses of
    different parameters (and different denoisers) are computed on identical pixels and
    compare fairly.

    Parameters
    ----------
    image : numpy.ndarray
        Noisy image (2D or 3D), float32.
    stride : int
        Grid spacing of the mask along every axis (a pixel's masked neighbours are
        ``stride`` pixels apart).
    n_masks : int, optional
        Number of grid masks (``1 <= n_masks <= stride**ndim``) averaged into the loss;
        more masks lower the variance of the loss at proportional cost. Default: the
        fewest masks (at least 2, at most 4) that put ``min_pixels`` pixels in the loss.
    min_pixels : int
        Target number of masked pixels for the default ``n_masks``.

    Notes
    -----
    The loss is a mean over masked pixels, so its standard error relative to its value
    is about :math:`\\sqrt{2/n}` for ``n`` masked pixels; differences between candidates
    are smaller than that, which is why small crops use more masks.
    """

    def __init__(self, image: np.ndarray, *, stride: int = 4, n_masks: int | None = None,
                 min_pixels: int = 8192) -> None:
        if stride < 2:
            raise ConfigError(message(f"stride={stride}", "stride >= 2",
                                      "Use the default stride of 4."))
        self.image = np.asarray(image, dtype=np.float32)
        cell = stride ** self.image.ndim
        if n_masks is None:
            per_mask = max(1, self.image.size // cell)
            n_masks = int(np.clip(math.ceil(min_pixels / per_mask), 2, min(4, cell)))
        if not 1 <= n_masks <= cell:
            raise ConfigError(message(f"n_masks={n_masks} with stride={stride}",
                                      f"1 <= n_masks <= stride**ndim = {cell}",
                                      "Leave n_masks unset (automatic)."))
        self.n_masks = n_masks
        self._errors: dict[tuple[int, tuple[tuple[str, Any], ...]], np.ndarray] = {}
        interp = _interpolate_neighbours(self.image)
        self._masked: list[tuple[tuple[slice, ...], np.ndarray]] = []
        for phases in _mask_phases(self.image.ndim, stride, n_masks):
            sl = _grid_slices(self.image.ndim, stride, phases)
            x = self.image.copy()
            x[sl] = interp[sl]
            self._masked.append((sl, x))

    def __call__(self, denoise_fn: DenoiseFn, **params: Any) -> float:
        """Mean squared error of ``denoise_fn(masked, **params)`` on the masked pixels."""
        return float(self.pixel_errors(denoise_fn, **params).mean())

    def pixel_errors(self, denoise_fn: DenoiseFn, **params: Any) -> np.ndarray:
        """Squared error at every masked pixel (float64, masks concatenated in order).

        Results are cached per function and parameters, so comparing the per-pixel errors
        of calibrated candidates (paired statistics) costs no further denoising.
        """
        key = (id(denoise_fn), tuple(sorted(params.items())))
        cached = self._errors.get(key)
        if cached is not None:
            return cached
        parts = []
        for sl, x in self._masked:
            out = np.asarray(denoise_fn(x, **params), dtype=np.float32)
            diff = out[sl].astype(np.float64) - self.image[sl]
            parts.append(np.square(diff).ravel())
        errors = np.concatenate(parts)
        self._errors[key] = errors
        return errors


def invariant_denoise(image: np.ndarray, denoise_fn: DenoiseFn, *, stride: int = 4,
                      **params: Any) -> np.ndarray:
    """J-invariant version of ``denoise_fn`` (all ``stride**ndim`` masks).

    Parameters
    ----------
    image : numpy.ndarray
        2D or 3D image.
    denoise_fn : callable
        ``denoise_fn(image, **params) -> ndarray`` of the same shape.
    stride : int
        Mask grid spacing.
    **params
        Passed to ``denoise_fn``.

    Returns
    -------
    numpy.ndarray
        float32; each pixel predicted from an input in which it was masked.
    """
    img = np.asarray(image, dtype=np.float32)
    interp = _interpolate_neighbours(img)
    out = np.empty_like(img)
    for phases in itertools.product(range(stride), repeat=img.ndim):
        sl = _grid_slices(img.ndim, stride, phases)
        x = img.copy()
        x[sl] = interp[sl]
        out[sl] = np.asarray(denoise_fn(x, **params), dtype=np.float32)[sl]
    return out


def calibration_region(image: np.ndarray, *,
                       max_size: int | Sequence[int]) -> tuple[slice, ...]:
    """Crop of edge ``<= max_size`` per axis with the highest variance (most structure).

    Parameters
    ----------
    image : numpy.ndarray
        2D or 3D image; ideally variance-stabilised so that the variance reflects
        structure, not brightness.
    max_size : int or sequence of int
        Largest edge length of the crop (one value, or one per axis).

    Returns
    -------
    tuple of slice
        The whole image if it is no larger than ``max_size`` along every axis.

    Notes
    -----
    The local variance over the crop window is computed on a 4x-downsampled copy
    (cheap) and the window with the largest variance is chosen: calibrating where there
    is structure favours parameters that preserve it, while flat background would favour
    over-smoothing.
    """
    shape = image.shape
    limits = (max_size,) * len(shape) if np.ndim(max_size) == 0 else tuple(max_size)
    size = tuple(min(s, int(m)) for s, m in zip(shape, limits))
    if size == shape:
        return tuple(slice(0, s) for s in shape)
    # Downsample by 4 along axes that are long compared with the crop.
    fs = tuple(4 if n >= 16 and s >= 8 else 1 for n, s in zip(shape, size))
    small = np.asarray(image, dtype=np.float64)[tuple(slice(None, None, f) for f in fs)]
    win = tuple(max(1, s // f) for s, f in zip(size, fs))
    mean = ndi.uniform_filter(small, win, mode="nearest")
    var = ndi.uniform_filter(small * small, win, mode="nearest") - mean * mean
    # Restrict centres so the window fits inside the image.
    lo = [w // 2 for w in win]
    hi = [max(lo_i + 1, n - (w - w // 2) + 1) for lo_i, n, w in zip(lo, small.shape, win)]
    sub = var[tuple(slice(a, b) for a, b in zip(lo, hi))]
    centre = np.unravel_index(int(np.argmax(sub)), sub.shape)
    region = []
    for c, l_, s, n, f in zip(centre, lo, size, shape, fs):
        start = int(np.clip((c + l_) * f - s // 2, 0, n - s))
        region.append(slice(start, start + s))
    return tuple(region)


def calibrate(denoise_fn: DenoiseFn, image: np.ndarray, *,
              parameter_ranges: Mapping[str, Sequence[Any]],
              fixed: Mapping[str, Any] | None = None,
              method: str = "",
              loss: MaskedLoss | None = None,
              stride: int = 4, n_masks: int | None = None,
              max_size: int | None = None,
              refine: bool = True, refine_iterations: int = 6,
              expand: int = 4,
              progress: Callable[[int, int], None] | None = None) -> CalibrationResult:
    """Choose denoiser parameters by minimising the J-invariant self-supervised loss.

    Parameters
    ----------
    denoise_fn : callable
        ``denoise_fn(image, **params) -> ndarray`` of the same shape.
    image : numpy.ndarray
        The noisy image (2D or 3D), ideally with homoscedastic noise (variance-stabilised).
    parameter_ranges : mapping of str to sequence
        Candidate values per parameter; the Cartesian product is searched.
    fixed : mapping, optional
        Further keyword arguments passed unchanged to ``denoise_fn``.
    method : str
        Name recorded in the result.
    loss : MaskedLoss, optional
        A prepared loss (reuse it to compare several denoisers on identical masks);
        if given, ``image``, ``stride``, ``n_masks`` and ``max_size`` are ignored.
    stride, n_masks : int
        Mask grid spacing and number of masks, see :class:`MaskedLoss`.
    max_size : int, optional
        Calibrate on the :func:`calibration_region` of this edge length (e.g. 256 for 2D,
        64 for 3D) instead of the whole image.
    refine : bool
        For a single float parameter with positive values, refine the best grid value
        by golden-section search in log space between its grid neighbours.
    refine_iterations : int
        Golden-section iterations (each shrinks the bracket by 0.618).
    expand : int
        For a single float parameter whose best value lies on the grid boundary, extend
        the grid geometrically by up to this many steps beyond that boundary.
    progress : callable, optional
        ``progress(done, total)`` after each evaluation (``total`` is an upper bound).

    Returns
    -------
    CalibrationResult

    Notes
    -----
    Loss evaluations are cached, so the refinement never evaluates a value twice. The
    returned parameters are meant for the plain (not J-invariant) denoiser, as in
    Batson & Royer (2019).

    References
    ----------
    .. [1] J. Batson, L. Royer, "Noise2Self: Blind denoising by self-supervision",
       ICML (2019).

    Examples
    --------
    >>> from scipy.ndimage import gaussian_filter
    >>> rng = np.random.default_rng(0)
    >>> clean = gaussian_filter(rng.random((64, 64)), 3) * 20
    >>> noisy = clean + rng.normal(0, 0.5, clean.shape)
    >>> res = calibrate(gaussian_filter, noisy, parameter_ranges={"sigma": [0.5, 1, 2, 4]})
    >>> res.best_parameters["sigma"] > 0.5
    True
    """
    if not parameter_ranges:
        raise ConfigError(message("no parameter ranges", "at least one parameter to search",
                                  "Pass parameter_ranges={'name': [values]}."))
    for name, values in parameter_ranges.items():
        if len(values) == 0:
            raise ConfigError(message(f"an empty range for {name!r}", "at least one value",
                                      "Give candidate values."))
    fixed = dict(fixed or {})
    region: tuple[slice, ...] = ()
    if loss is None:
        img = np.asarray(image, dtype=np.float32)
        if max_size is not None:
            region = calibration_region(img, max_size=max_size)
            img = img[region]
        loss = MaskedLoss(img, stride=stride, n_masks=n_masks)

    names = list(parameter_ranges)
    tested: list[dict[str, Any]] = []
    losses: list[float] = []
    cache: dict[tuple, float] = {}
    grid = list(itertools.product(*(parameter_ranges[n] for n in names)))
    one_d = len(names) == 1 and all(_positive_float(v) for v in parameter_ranges[names[0]])
    budget = len(grid) + ((expand + refine_iterations + 2) if one_d else 0)

    def evaluate(values: tuple) -> float:
        key = tuple(float(v) if _positive_number(v) else v for v in values)
        if key in cache:
            return cache[key]
        params = dict(zip(names, values))
        val = loss(denoise_fn, **params, **fixed)
        cache[key] = val
        tested.append(params)
        losses.append(val)
        if progress is not None:
            progress(len(tested), budget)
        return val

    for values in grid:
        evaluate(values)

    if one_d and len(grid) >= 2:
        _refine_1d(evaluate, sorted(float(v) for v in parameter_ranges[names[0]]),
                   expand=expand, iterations=refine_iterations if refine else 0)

    best = int(np.nanargmin(losses))
    return CalibrationResult(method=method, best_parameters=dict(tested[best]),
                             best_loss=float(losses[best]), parameters_tested=tuple(tested),
                             losses=tuple(float(v) for v in losses), region=region)


def _positive_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and float(v) > 0


def _positive_float(v: Any) -> bool:
    # Only float-valued parameters are refined continuously; integers (sizes) are not.
    return isinstance(v, (float, np.floating)) and float(v) > 0


def _refine_1d(evaluate: Callable[[tuple], float], values: list[float], *, expand: int,
               iterations: int) -> None:
    """Expand a 1D grid at a boundary optimum, then golden-section search in log space."""
    vals = list(values)
    fl = [evaluate((v,)) for v in vals]
    for _ in range(expand):
        i = int(np.argmin(fl))
        if i == 0:
            v = vals[0] * vals[0] / vals[1]
            vals.insert(0, v)
            fl.insert(0, evaluate((v,)))
        elif i == len(vals) - 1:
            v = vals[-1] * vals[-1] / vals[-2]
            vals.append(v)
            fl.append(evaluate((v,)))
        else:
            break
    i = int(np.argmin(fl))
    if iterations <= 0 or i == 0 or i == len(vals) - 1:
        return
    lo, hi = math.log(vals[i - 1]), math.log(vals[i + 1])
    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = evaluate((math.exp(c),)), evaluate((math.exp(d),))
    for _ in range(iterations - 2):
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = evaluate((math.exp(c),))
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = evaluate((math.exp(d),))
