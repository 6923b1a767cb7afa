"""Data consistency: does a reconstruction explain the measurement it came from?

A reconstruction ``x`` of a measurement ``y`` is re-imaged through the forward model ``A``
of the acquisition (identity for denoising, PSF convolution for deconvolution, area
binning for upsampling), mapped to the measurement's units and compared with ``y`` under
the Poisson-Gaussian noise model ``var(y) = a E[y] + b``:

.. math::

    m = \\alpha A(x) + \\beta, \\qquad r = \\frac{y - m}{\\sqrt{a m + b}}.

For an honest reconstruction ``r`` is (close to) standard normal noise with no structure.
Structure the measurement does not support (a hallucinated bead, an erased filament)
leaves a *spatially coherent* residual: the local mean of ``r`` over a window of ``n``
pixels, times ``sqrt(n)``, is again standard normal under the null hypothesis, and far
from it where the reconstruction disagrees with the data. Windows of several sizes are
tested, with a Bonferroni threshold over every pixel and window, so an honest
reconstruction is flagged with probability at most about ``alpha`` per image.

A global chi-square ``sum r^2`` over ``N`` pixels is reported too: its reduced value
``chi2 / N`` is about 1 for a consistent reconstruction, larger when it misses signal,
and smaller when it reproduces the noise (overfitting).

References
----------
.. [1] A. Foi et al., "Practical Poissonian-Gaussian noise modeling and fitting for
   single-image raw-data", IEEE TIP 17, 1737 (2008).
.. [2] S. Culley et al., "Quantitative mapping and minimization of super-resolution optical
   imaging artifacts" (NanoJ-SQUIRREL), Nature Methods 15, 263 (2018): re-imaging a
   super-resolved image into the diffraction-limited measurement to map errors.
.. [3] M. Belthangady, L. A. Royer, "Applications, promises, and pitfalls of deep learning
   for fluorescence image reconstruction", Nature Methods 16, 1215 (2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy import ndimage as ndi
from scipy import special, stats

from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.methods.classical.denoising.noise import NoiseModel, estimate_noise_model
from fluorecon.normalize import affine_fit
from fluorecon.simulate.degrade import blur, downsample

__all__ = [
    "ConsistencyResult", "ConvolutionForward", "DownsampleForward", "ForwardModel",
    "IdentityForward", "Region", "check_consistency", "forward_for",
    "local_residual_score",
]


class ForwardModel(Protocol):
    """Maps a reconstruction to the noise-free measurement it implies (up to units)."""

    name: str

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Forward-project ``x`` (float32) onto the measurement grid."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (for reports)."""
        ...


@dataclass(frozen=True)
class IdentityForward:
    """Denoising: the measurement is the reconstruction plus noise."""

    name: str = "identity"

    def apply(self, x: np.ndarray) -> np.ndarray:
        return as_float32(x)

    def describe(self) -> dict[str, Any]:
        return {"forward": self.name}


@dataclass(frozen=True)
class ConvolutionForward:
    """Deconvolution: the measurement is the reconstruction blurred by ``psf``.

    ``psf`` has the reconstruction's dimensionality, is centred at ``shape // 2`` and is
    normalised to sum 1 here (flux-preserving); boundaries are mirrored.
    """

    psf: np.ndarray
    name: str = "convolution"

    def __post_init__(self) -> None:
        p = np.asarray(self.psf, np.float32)
        if p.ndim not in (2, 3) or p.size == 0 or not np.all(np.isfinite(p)) or p.sum() <= 0:
            raise DataError(message(f"a PSF of shape {p.shape}", "a finite, non-negative 2D "
                                    "or 3D PSF with positive sum", "Check the PSF."))
        object.__setattr__(self, "psf", p / p.sum())

    def apply(self, x: np.ndarray) -> np.ndarray:
        return blur(x, self.psf, mode="reflect")

    def describe(self) -> dict[str, Any]:
        return {"forward": self.name, "psf_shape": list(self.psf.shape)}


@dataclass(frozen=True)
class DownsampleForward:
    """Upsampling: the measurement is the reconstruction binned (area mean) by ``factor``,
    optionally after blurring with ``psf`` (on the fine grid)."""

    factor: int | tuple[int, ...]
    psf: np.ndarray | None = None
    name: str = "downsample"

    def apply(self, x: np.ndarray) -> np.ndarray:
        fine = blur(x, self.psf / self.psf.sum(), mode="reflect") if self.psf is not None \
            else as_float32(x)
        return downsample(fine, self.factor, reduce="mean", remainder="crop")

    def describe(self) -> dict[str, Any]:
        f = self.factor if isinstance(self.factor, int) else list(self.factor)
        return {"forward": self.name, "factor": f, "psf": self.psf is not None}


def forward_for(task: str, *, psf: Any = None, factor: int | Sequence[int] = 2) -> ForwardModel:
    """The forward model of a task: ``denoise`` (identity), ``deconvolve`` (needs ``psf``),
    ``upsample`` (binning by ``factor``, after ``psf`` when given)."""
    if task == "denoise":
        return IdentityForward()
    if task == "deconvolve":
        if psf is None:
            raise ConfigError(message("task 'deconvolve' without a PSF", "the PSF of the "
                                      "acquisition", "Pass psf=... (or --psf FILE)."))
        return ConvolutionForward(np.asarray(psf))
    if task == "upsample":
        f = factor if isinstance(factor, int) else tuple(int(v) for v in factor)
        return DownsampleForward(f, None if psf is None else np.asarray(psf, np.float32))
    raise ConfigError(message(f"task {task!r}", "denoise, deconvolve or upsample",
                              "Pick the task the reconstruction solved."))


@dataclass(frozen=True)
class Region:
    """A connected region flagged as inconsistent with the measurement.

    Attributes
    ----------
    label : int
    slices : tuple of slice
        Bounding box on the measurement grid.
    size : int
        Pixels.
    peak_score : float
        Largest ``|z|`` inside.
    sign : int
        ``+1`` when the measurement is brighter than the re-imaged reconstruction (erased
        or missing signal), ``-1`` when it is darker (invented signal).
    """

    label: int
    slices: tuple[slice, ...]
    size: int
    peak_score: float
    sign: int

    def bbox(self) -> list[list[int]]:
        """``[[start, stop], ...]`` per axis."""
        return [[int(s.start), int(s.stop)] for s in self.slices]


@dataclass(frozen=True)
class ConsistencyResult:
    """Outcome of :func:`check_consistency` (arrays on the measurement grid, float32).

    Attributes
    ----------
    residual : ndarray
        Standardised residual ``r = (y - m) / sqrt(a m + b)``.
    reimaged : ndarray
        ``m``: the reconstruction re-imaged into measurement units.
    score : ndarray
        Largest ``|z|`` of the local mean residual over the window sizes; the flagging
        statistic (also usable as a detection score).
    signed_score : ndarray
        ``z`` of the window size with the largest ``|z|`` (sign as in :class:`Region`).
    flagged : ndarray of bool
        ``score > threshold`` (after removing regions smaller than ``min_size``).
    regions : list of Region
    threshold : float
    chi2, dof, reduced_chi2, z_global, p_value : float
        Global chi-square statistic ``sum r^2`` with ``N`` degrees of freedom, its ratio to
        ``N``, its normal approximation ``(chi2 - N) / sqrt(2N)`` and the upper-tail p-value.
    alpha, beta : float
        Units map ``m = alpha A(x) + beta``.
    noise : NoiseModel
        Noise model used (measurement units).
    forward : dict
        Description of the forward model.
    """

    residual: np.ndarray
    reimaged: np.ndarray
    score: np.ndarray
    signed_score: np.ndarray
    flagged: np.ndarray
    regions: list[Region]
    threshold: float
    chi2: float
    dof: int
    reduced_chi2: float
    z_global: float
    p_value: float
    alpha: float
    beta: float
    noise: NoiseModel
    forward: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged_fraction(self) -> float:
        """Fraction of measurement pixels flagged."""
        return float(self.flagged.mean())

    def summary(self) -> dict[str, Any]:
        """Scalars of the result (JSON-able)."""
        return {"chi2": self.chi2, "dof": self.dof, "reduced_chi2": self.reduced_chi2,
                "z_global": self.z_global, "p_value": self.p_value,
                "threshold": self.threshold, "flagged_fraction": self.flagged_fraction,
                "regions": len(self.regions), "alpha": self.alpha, "beta": self.beta,
                "noise_a": self.noise.a, "noise_b": self.noise.b, **self.forward}


def local_residual_score(residual: np.ndarray, windows: Sequence[int]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Largest ``|z|`` over windows of the local mean of a standardised residual.

    Parameters
    ----------
    residual : ndarray
        Standardised residual (2D or 3D).
    windows : sequence of int
        Window sides in pixels (odd or even; a cube of side ``w`` in every axis).

    Returns
    -------
    score : ndarray, float32
        ``max_w |mean_w(r)| sqrt(w^d)``.
    signed : ndarray, float32
        The signed ``z`` of the window giving the maximum.

    Notes
    -----
    With independent ``r ~ N(0, 1)``, ``z_w = sum_w(r) / sqrt(n_w)`` is ``N(0, 1)`` at
    every pixel. Windows are boxes clipped at the image edges (``n_w`` counts the pixels
    inside), so border pixels are not counted twice.
    """
    r = np.asarray(residual, np.float64)
    best = np.zeros(r.shape)
    signed = np.zeros(r.shape)
    ones = np.ones(r.shape)
    for w in windows:
        if w < 1:
            raise ConfigError(message(f"window {w}", "windows >= 1 pixel", "Fix windows."))
        n = float(w) ** r.ndim
        total = ndi.uniform_filter(r, size=int(w), mode="constant") * n
        count = ndi.uniform_filter(ones, size=int(w), mode="constant") * n
        z = total / np.sqrt(np.maximum(count, 1.0))
        better = np.abs(z) > best
        best = np.where(better, np.abs(z), best)
        signed = np.where(better, z, signed)
    return best.astype(np.float32), signed.astype(np.float32)


def check_consistency(measurement: Any, reconstruction: Any, forward: ForwardModel | None = None,
                      *, noise: NoiseModel | None = None,
                      units: str | tuple[float, float] = "fit",
                      windows: Sequence[int] = (3, 7, 15), alpha: float = 0.01,
                      min_size: int = 1) -> ConsistencyResult:
    """Re-image a reconstruction and test it against its measurement.

    Parameters
    ----------
    measurement : array_like, ``YX`` or ``ZYX``
        The measured image (e.g. the network input), in its own units (ADU, 8-bit, ...).
    reconstruction : array_like
        The reconstruction, on the grid the forward model expects (same grid for identity
        and convolution, finer by ``factor`` for upsampling).
    forward : ForwardModel, optional
        Default :class:`IdentityForward` (denoising).
    noise : NoiseModel, optional
        Poisson-Gaussian model of ``measurement`` (``var = a E[y] + b`` in its units).
        Default: estimated from ``measurement`` itself
        (:func:`~fluorecon.methods.classical.denoising.noise.estimate_noise_model`).
    units : "fit", "same" or (alpha, beta)
        How reconstruction units map to measurement units: ``"fit"`` fits
        ``alpha, beta`` by least squares (networks trained on normalised or rescaled
        data; contrast-stretched files), ``"same"`` uses ``1, 0``, or pass them.
    windows : sequence of int
        Window sides of the local test (see :func:`local_residual_score`). 1 would test
        single pixels, whose Poisson tails at low counts are heavier than the normal
        threshold assumes; the default starts at 3.
    alpha : float
        False-alarm probability per image (Bonferroni over windows and pixels).
    min_size : int
        Flagged regions smaller than this many pixels are dropped.

    Returns
    -------
    ConsistencyResult

    Notes
    -----
    The variance uses the re-imaged ``m`` (not ``y``): ``var = max(a m + b, v_min)``
    with ``v_min = 1e-3 max(b, a m_med)`` guarding dark pixels. The threshold is
    Bonferroni's ``Phi^{-1}(1 - alpha / (2 T))`` over ``T = N x len(windows)`` tests (every
    pixel, every window). Overlapping windows are strongly correlated, so this bound is
    conservative; counting only ``N / w^d`` disjoint windows would not be (the maximum of a
    smoothed white-noise field exceeds it in a sizeable fraction of honest images).
    """
    y = as_float32(np.asarray(measurement))
    x = as_float32(np.asarray(reconstruction))
    if y.ndim not in (2, 3) or x.ndim != y.ndim:
        raise DataError(message(f"a {y.ndim}D measurement and a {x.ndim}D reconstruction",
                                "two 2D (YX) or two 3D (ZYX) images",
                                "Check one image and one reconstruction per call."))
    if not (0 < alpha < 1):
        raise ConfigError(message(f"alpha={alpha}", "0 < alpha < 1", "Pass e.g. 0.01."))
    for arr, what in ((y, "measurement"), (x, "reconstruction")):
        if not np.all(np.isfinite(arr)):
            raise DataError(message(f"a {what} with NaN or infinite values", "finite values",
                                    "Check the image."))
    fwd = forward if forward is not None else IdentityForward()
    ax = fwd.apply(x).astype(np.float64)
    if ax.shape != y.shape:
        raise DataError(message(f"a re-imaged reconstruction of shape {ax.shape} for a "
                                f"measurement of shape {y.shape}", "matching grids",
                                "Check the forward model (factor, PSF) and the images."))
    if isinstance(units, str):
        if units == "fit":
            a_fit, b_fit = affine_fit(ax, y)
        elif units == "same":
            a_fit, b_fit = 1.0, 0.0
        else:
            raise ConfigError(message(f"units={units!r}", "'fit', 'same' or (alpha, beta)",
                                      "Pick how the units relate."))
    else:
        a_fit, b_fit = (float(v) for v in units)
    m = a_fit * ax + b_fit
    nm = noise if noise is not None else estimate_noise_model(y)
    var = nm.a * m + nm.b
    floor = 1e-3 * max(abs(nm.b), nm.a * float(np.median(np.abs(m))), 1e-12)
    var = np.maximum(var, floor)
    r = (y.astype(np.float64) - m) / np.sqrt(var)
    n = r.size
    chi2 = float(np.sum(r * r))
    z_global = (chi2 - n) / np.sqrt(2.0 * n)
    p_value = float(stats.chi2.sf(chi2, n))
    wins = [int(w) for w in windows]
    score, signed = local_residual_score(r, wins)
    tests = float(n * len(wins))
    thr = float(special.ndtri(1.0 - alpha / (2.0 * tests)))
    flagged = score > thr
    labels, count = ndi.label(flagged)
    regions: list[Region] = []
    if count:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        objs = ndi.find_objects(labels)
        keep = np.zeros(count + 1, bool)
        for lab in range(1, count + 1):
            if sizes[lab] < min_size:
                continue
            keep[lab] = True
            sl = objs[lab - 1]
            inside = labels[sl] == lab
            peak_idx = np.argmax(np.where(inside, score[sl], -np.inf))
            sign = int(np.sign(signed[sl].ravel()[peak_idx]))
            regions.append(Region(label=len(regions) + 1, slices=tuple(sl), size=int(sizes[lab]),
                                  peak_score=float(score[sl].ravel()[peak_idx]), sign=sign))
        flagged = keep[labels]
    return ConsistencyResult(
        residual=r.astype(np.float32), reimaged=m.astype(np.float32), score=score,
        signed_score=signed, flagged=flagged, regions=regions, threshold=thr, chi2=chi2,
        dof=n, reduced_chi2=chi2 / n, z_global=float(z_global), p_value=p_value,
        alpha=float(a_fit), beta=float(b_fit), noise=nm, forward=fwd.describe())
