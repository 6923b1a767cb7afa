"""Poisson-Gaussian noise model ``var(y) = a E[y] + b`` and its estimation from one image.

The estimator follows Foi, Trimeche, Katkovnik & Egiazarian (2008): a high-pass detail
image isolates the noise, a low-pass image estimates the local mean, pixels in smooth
regions are grouped into intensity levels, a robust (MAD) variance is measured per level,
and a straight line is fitted to the (mean, variance) pairs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from fluorecon.core.axes import check_axes
from fluorecon.core.errors import ConfigError, DataError, message

__all__ = ["NoiseModel", "estimate_noise_model"]

# Second difference [1, -2, 1] per axis; its squared taps [1, 4, 1] weight the variance.
_HIGH = np.array([1.0, -2.0, 1.0])
_MAD_TO_STD = 1.482602218505602
_MIN_PER_LEVEL = 100


@dataclass(frozen=True)
class NoiseModel:
    """Affine (Poisson-Gaussian) noise model ``var(y) = a * E[y] + b`` in image units.

    Parameters
    ----------
    a : float
        Slope, ``>= 0``. For raw camera data this is the gain in ADU per photo-electron.
    b : float
        Intercept (variance at zero mean) in image units squared. For raw camera data
        ``b = read_noise**2 - gain * offset``; it may be negative when the camera offset
        is not subtracted.

    Notes
    -----
    ``a = 0`` is pure Gaussian noise of variance ``b``. A model estimated on
    contrast-stretched data (e.g. 8-bit display copies) is a scaled Poisson-Gaussian
    model and still defines a valid variance-stabilising transform.
    """

    a: float
    b: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.a) and np.isfinite(self.b)):
            raise ConfigError(message(f"noise model a={self.a}, b={self.b}", "finite values",
                                      "Check gain and read noise."))
        if self.a < 0:
            raise ConfigError(message(f"noise model slope a={self.a}", "a >= 0",
                                      "The Poisson gain cannot be negative."))
        if self.a == 0 and self.b <= 0:
            raise ConfigError(message(f"noise model a=0, b={self.b}", "b > 0 when a = 0",
                                      "Pass a positive read noise."))

    @classmethod
    def from_camera(cls, gain: float, read_noise: float, offset: float = 0.0) -> "NoiseModel":
        """Model of a camera with ``gain`` (ADU/e-), ``read_noise`` (ADU std), ``offset`` (ADU).

        Examples
        --------
        >>> NoiseModel.from_camera(2.0, 5.0)
        NoiseModel(a=2.0, b=25.0)
        """
        if gain < 0 or read_noise < 0:
            raise ConfigError(message(f"gain={gain}, read_noise={read_noise}",
                                      "non-negative values", "Use ADU per electron and ADU."))
        return cls(a=float(gain), b=float(read_noise) ** 2 - float(gain) * float(offset))

    @property
    def gain(self) -> float:
        """Poisson gain ``a`` (ADU per photo-electron for raw camera data)."""
        return self.a

    @property
    def read_noise(self) -> float:
        """Gaussian noise std ``sqrt(max(b, 0))``, valid when the offset is zero."""
        return float(np.sqrt(max(self.b, 0.0)))

    @property
    def is_gaussian(self) -> bool:
        """True when the signal-dependent part vanishes (``a == 0``)."""
        return self.a == 0

    def variance(self, mean: np.ndarray | float) -> np.ndarray:
        """Predicted noise variance at ``mean`` (clipped at 0)."""
        return np.maximum(self.a * np.asarray(mean, dtype=np.float64) + self.b, 0.0)

    def vst_parameters(self) -> tuple[float, float, float]:
        """``(gain, sigma, mu)`` for :func:`fluorecon.normalize.vst.generalized_anscombe`.

        Only ``sigma**2 - gain * mu = b`` is identifiable from an image; this returns
        ``mu = 0, sigma = sqrt(b)`` for ``b >= 0`` and ``sigma = 0, mu = -b / a``
        (an offset that was not subtracted) for ``b < 0``.
        """
        if self.b >= 0:
            return self.a, float(np.sqrt(self.b)), 0.0
        return self.a, 0.0, -self.b / self.a


def estimate_noise_model(image: np.ndarray, *, axes: str | None = None,
                         n_levels: int | None = None,
                         max_pixels: int = 1 << 22) -> NoiseModel:
    """Estimate ``var(y) = a E[y] + b`` from a single noisy image.

    Parameters
    ----------
    image : array_like
        Noisy image, at least 2D. Not modified.
    axes : str, optional
        Axes of ``image`` (e.g. ``"YX"``, ``"ZYX"``, ``"CYX"``). Default: ``"YX"`` for 2D,
        ``"ZYX"`` for 3D. Filtering is in-plane (``Y``, ``X``); all planes, channels and
        frames are pooled, i.e. assumed to share one noise model (call once per channel
        when channels were scaled differently).
    n_levels : int, optional
        Number of intensity levels (bins). Default: about one per 3000 smooth pixels,
        between 6 and 64.
    max_pixels : int
        Larger images are estimated on evenly spaced planes/blocks holding about this
        many pixels.

    Returns
    -------
    NoiseModel
        With ``a >= 0``. ``a`` is set to 0 (pure Gaussian) when the fitted slope is not
        positive.

    Raises
    ------
    DataError
        When the image is too small or too flat to estimate noise from.

    Notes
    -----
    Detail ``d = k * y`` with the separable in-plane kernel
    :math:`k = [1,-2,1] \\otimes [1,-2,1] / 6` (unit L2 norm), which cancels constant and
    linear trends, so :math:`E[d] \\approx 0` and :math:`\\mathrm{var}(d) \\approx
    \\mathrm{var}(y)` where the signal is smooth. The local mean ``m`` is a 5x5 box mean.
    Pixels are kept where (i) no clipped (saturated or floored) pixel is within 3 pixels,
    and (ii) the image is locally smooth: the detail of the 5x5-smoothed image is below
    2.5 standard deviations of its noise predicted by a first, unscreened fit. Kept
    pixels are split into equal-count intensity levels; in each, the variance is
    :math:`(1.4826\\,\\mathrm{MAD}(d))^2`. The line :math:`v = a m + b` is fitted by
    iteratively reweighted least squares (weights :math:`n_k / v_k^2`, the inverse
    variance of a variance estimate), discarding levels whose residual exceeds 4
    standard errors.

    References
    ----------
    .. [1] A. Foi, M. Trimeche, V. Katkovnik, K. Egiazarian, "Practical
       Poissonian-Gaussian noise modeling and fitting for single-image raw-data",
       IEEE TIP 17(10), 1737-1754 (2008).
    .. [2] J. Immerkaer, "Fast noise variance estimation", CVIU 64(2), 300-302 (1996).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(5, 200, 256), (256, 1))
    >>> noisy = 2.0 * rng.poisson(clean / 2.0) + rng.normal(0, 5, clean.shape)
    >>> m = estimate_noise_model(noisy)
    >>> bool(abs(m.a - 2.0) < 0.3 and abs(m.b - 25) < 6)
    True
    """
    arr = np.asarray(image)
    if axes is None:
        if arr.ndim not in (2, 3):
            raise ConfigError(message(f"a {arr.ndim}D image without axes", "axes",
                                      "Pass axes, e.g. axes='CYX'."))
        axes = "YX" if arr.ndim == 2 else "ZYX"
    axes = check_axes(axes, ndim=arr.ndim)
    # Bring Y, X last and flatten everything else into planes.
    other = [i for i, a in enumerate(axes) if a not in "YX"]
    planes = np.transpose(arr, other + [axes.index("Y"), axes.index("X")])
    planes = planes.reshape((-1,) + planes.shape[-2:])
    if min(planes.shape[-2:]) < 8:
        raise DataError(message(f"an image with Y, X size {planes.shape[-2:]}",
                                "at least 8 x 8 pixels per plane",
                                "Estimate the noise on a larger image."))
    planes = _subsample_planes(planes, max_pixels)

    stacks = [_plane_statistics(np.asarray(p, dtype=np.float64)) for p in planes]
    d, m, rough, energy = (np.concatenate([s[i] for s in stacks]) for i in range(4))
    if d.size < 4 * _MIN_PER_LEVEL:
        raise DataError(message(f"{d.size} usable pixels for noise estimation",
                                f"at least {4 * _MIN_PER_LEVEL}",
                                "Use a larger or less saturated image, or pass gain and "
                                "read noise explicitly."))
    # First fit on every unclipped pixel, then screen out structured pixels and refit:
    # structure shows as a smoothed detail (rough) or a local detail energy above what
    # the current model predicts for noise alone.
    a, b = _fit_levels(d, m, n_levels)
    smooth = np.ones(d.shape, dtype=bool)
    for _ in range(_SCREEN_ITERATIONS):
        var = np.maximum(a * m + b, 1e-12 * max(abs(b), 1.0))
        new = ((np.abs(rough) < 2.5 * np.sqrt(var) * _ROUGH_NOISE_FACTOR)
               & (energy < var * _ENERGY_THRESHOLD))
        if new.sum() < 4 * _MIN_PER_LEVEL or np.array_equal(new, smooth):
            break
        smooth = new
        a, b = _fit_levels(d[smooth], m[smooth], n_levels)
    if not np.isfinite(a) or not np.isfinite(b):
        raise DataError(message("an image whose noise level could not be fitted",
                                "a noisy image with some smooth regions",
                                "Pass gain and read noise explicitly."))
    if a <= 0:
        a = 0.0
        b = _robust_var(d[smooth] if smooth.sum() >= _MIN_PER_LEVEL else d)
    if a == 0 and b <= 0:
        raise DataError(message("an image without measurable noise",
                                "a noisy image", "Pass gain and read noise explicitly, or "
                                "skip denoising for noise-free data."))
    return NoiseModel(a=float(a), b=float(b))


def _norm_kernel_2d() -> np.ndarray:
    k = np.outer(_HIGH, _HIGH)
    return k / np.sqrt((k ** 2).sum())


def _rough_noise_factor() -> float:
    # L2 norm of (detail kernel convolved with the 5x5 box), the noise gain of ``rough``.
    delta = np.zeros((15, 15))
    delta[7, 7] = 1.0
    r = ndi.correlate(ndi.uniform_filter(delta, 5, mode="constant"), _norm_kernel_2d(),
                      mode="constant")
    return float(np.sqrt((r ** 2).sum()))


_ROUGH_NOISE_FACTOR = _rough_noise_factor()
_ENERGY_WINDOW = 9
_SCREEN_ITERATIONS = 4


def _energy_threshold() -> float:
    # Under white noise the windowed mean of d^2 (relative to var) has std sqrt(2/n_eff),
    # n_eff = window pixels / sum of squared autocorrelations of the detail kernel.
    k = _norm_kernel_2d()
    rho = ndi.correlate(np.pad(k, 2), k, mode="constant")
    n_eff = _ENERGY_WINDOW ** 2 / float((rho ** 2).sum())
    return 1.0 + 2.5 * float(np.sqrt(2.0 / n_eff))


_ENERGY_THRESHOLD = _energy_threshold()


def _subsample_planes(planes: np.ndarray, max_pixels: int) -> np.ndarray:
    per_plane = planes.shape[1] * planes.shape[2]
    n_keep = max(1, max_pixels // per_plane)
    if planes.shape[0] > n_keep:
        idx = np.unique(np.linspace(0, planes.shape[0] - 1, n_keep).round().astype(int))
        planes = planes[idx]
    if n_keep == 1 and per_plane > max_pixels:
        # One huge plane: evenly spaced 256 x 256 blocks.
        ny, nx = planes.shape[1:]
        n_blocks = max(1, max_pixels // (256 * 256))
        g = int(np.ceil(np.sqrt(n_blocks)))
        ys = np.linspace(0, ny - 256, g).round().astype(int)
        xs = np.linspace(0, nx - 256, g).round().astype(int)
        blocks = [planes[0, y:y + 256, x:x + 256] for y, x in itertools.product(ys, xs)]
        planes = np.stack(blocks[:n_blocks])
    return planes


def _plane_statistics(p: np.ndarray) -> tuple[np.ndarray, ...]:
    """Detail, local mean, roughness and local detail energy at valid pixels."""
    k = _norm_kernel_2d()
    d = ndi.correlate(p, k, mode="reflect")
    m = ndi.uniform_filter(p, 5, mode="reflect")
    rough = ndi.correlate(m, k, mode="reflect")
    energy = ndi.uniform_filter(d * d, _ENERGY_WINDOW, mode="reflect")
    valid = np.zeros(p.shape, dtype=bool)
    valid[3:-3, 3:-3] = True
    lo, hi = float(p.min()), float(p.max())
    for v in (lo, hi):
        at = p == v
        # A value held by many pixels at the extreme of the range is a clip level.
        if at.mean() > 1e-3 and hi > lo:
            valid &= ~ndi.binary_dilation(at, iterations=3)
    return d[valid], m[valid], rough[valid], energy[valid]


def _robust_var(d: np.ndarray) -> float:
    mad = np.median(np.abs(d - np.median(d)))
    return float((_MAD_TO_STD * mad) ** 2)


def _fit_levels(d: np.ndarray, m: np.ndarray, n_levels: int | None) -> tuple[float, float]:
    n = d.size
    if n_levels is None:
        n_levels = int(np.clip(n // 3000, 6, 64))
    n_levels = max(2, min(n_levels, n // _MIN_PER_LEVEL))
    order = np.argsort(m, kind="stable")
    groups = np.array_split(order, n_levels)
    means = np.array([m[g].mean() for g in groups])
    varis = np.array([_robust_var(d[g]) for g in groups])
    counts = np.array([g.size for g in groups], dtype=float)
    keep = varis > 0
    a, b = 0.0, float(np.median(varis))
    for _ in range(4):
        if keep.sum() < 2:
            break
        a, b = _wls_line(means[keep], varis[keep], counts[keep], a, b)
        fit = np.maximum(a * means + b, 1e-12)
        # Standard error of a MAD variance estimate ~ 2.7 v / sqrt(n) (Gaussian efficiency).
        z = (varis - fit) / (fit * 2.7 / np.sqrt(counts))
        new_keep = (varis > 0) & (np.abs(z) < 4.0)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    if a < 0:
        a = 0.0
    return float(a), float(b)


def _wls_line(x: np.ndarray, v: np.ndarray, n: np.ndarray, a: float,
              b: float) -> tuple[float, float]:
    """Weighted least squares ``v = a x + b`` with weights ``n / fit^2`` (3 passes)."""
    fit = v if a == 0 and b <= 0 else np.maximum(a * x + b, 1e-12)
    for _ in range(3):
        w = n / np.maximum(fit, 1e-12) ** 2
        A = np.stack([x, np.ones_like(x)], axis=1)
        Aw = A * w[:, None]
        try:
            a, b = np.linalg.solve(A.T @ Aw, Aw.T @ v)
        except np.linalg.LinAlgError:
            return 0.0, float(np.average(v, weights=n))
        if a < 0:
            return 0.0, float(np.average(v, weights=w))
        fit = np.maximum(a * x + b, 1e-3 * np.median(v))
    return float(a), float(b)
