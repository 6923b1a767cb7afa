"""Richardson-Lucy deconvolution: plain, total-variation regularised, Biggs-Andrews accelerated.

One FFT plan per call (pyFFTW, wisdom-cached), float32 throughout, every elementwise step in
place on the planned buffers, so one iteration costs four real FFTs and five passes over
memory. See :func:`richardson_lucy` for the maths and options.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field
from scipy import special

from fluorecon.core.dtypes import as_float32, check_image_array
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.methods.base import Method, MethodConfig
from fluorecon.methods.classical.deconvolution.otf import (
    check_psf,
    fit_psf,
    make_otf,
    resolve_boundary,
)
from fluorecon.methods.fft_backend import RealFFT, fast_length
from fluorecon.methods.registry import register

__all__ = [
    "DeconvolutionInfo",
    "DeconvolutionResult",
    "RichardsonLucy",
    "RichardsonLucyConfig",
    "RichardsonLucyTV",
    "RichardsonLucyTVConfig",
    "richardson_lucy",
    "richardson_lucy_result",
]

StopRule = Literal["rel-change", "likelihood", "discrepancy"]
Boundary = Literal["auto", "pad", "periodic"]
STOP_RULES: tuple[str, ...] = ("rel-change", "likelihood", "discrepancy")
BOUNDARIES: tuple[str, ...] = ("auto", "pad", "periodic")

#: Pixels of the padded grid whose PSF overlaps the field of view by less than this fraction
#: are not estimated (set to 0) in ``boundary="pad"`` (Bertero & Boccacci 2005).
PAD_MIN_WEIGHT = 1e-3
#: Upper bound on the Biggs-Andrews extrapolation factor (the paper clips alpha to [0, 1)).
ALPHA_MAX = 0.999


@dataclass(frozen=True)
class DeconvolutionInfo:
    """How an iterative deconvolution ran (everything but the image).

    Attributes
    ----------
    iterations : int
        Iterations completed (the returned estimate is the result of this many updates).
    max_iterations : int
        The iteration budget requested.
    stop_reason : str
        ``"max-iterations"``, or the stopping rule that fired: ``"rel-change"``,
        ``"likelihood"`` or ``"discrepancy"``.
    relative_change : float
        ``||x_k - x_{k-1}||_2 / ||x_{k-1}||_2`` of the last update (NaN if no update ran).
    deviance_per_pixel : float or None
        Poisson deviance of the returned estimate divided by the number of observed pixels,
        when a likelihood-based rule computed it, else None.
    boundary : str
        ``"pad"`` or ``"periodic"``.
    work_shape : tuple of int
        Shape of the FFT grid (the image shape, or the padded shape).
    fft_backend : str
        ``"pyfftw"`` or ``"scipy"``.
    planning_seconds : float
        Time spent planning FFTs (near 0 with a warm wisdom cache).
    """

    iterations: int
    max_iterations: int
    stop_reason: str
    relative_change: float
    deviance_per_pixel: float | None
    boundary: str
    work_shape: tuple[int, ...]
    fft_backend: str
    planning_seconds: float


@dataclass(frozen=True)
class DeconvolutionResult:
    """A deconvolved image (float32, shape of the input) and :class:`DeconvolutionInfo`."""

    image: np.ndarray
    info: DeconvolutionInfo


# --------------------------------------------------------------------------------------
# validation helpers (shared with wiener.py)
# --------------------------------------------------------------------------------------
def check_spatial_image(image: Any, *, nonnegative: bool) -> np.ndarray:
    """Validate a 2D/3D image and return it as float32 (by value, no copy if float32)."""
    check_image_array(image)
    if len(image.shape) not in (2, 3):
        raise DataError(message(f"image with shape {tuple(image.shape)}",
                                "one 2D (YX) or 3D (ZYX) block",
                                "Use Method.predict(image, axes) to loop over other axes."))
    y = np.ascontiguousarray(as_float32(image))
    if nonnegative:
        low = float(y.min())
        if low < 0:
            raise DataError(message(
                f"an image with negative values (min {low:.4g})",
                "non-negative intensities for the Poisson model of Richardson-Lucy",
                "Pass the raw image with the camera offset as background=..., or clip: "
                "np.clip(image, 0, None)."))
    return y


def check_background(background: Any, shape: tuple[int, ...]) -> float | np.ndarray:
    """Validate ``background`` (scalar or array broadcastable to ``shape``), >= 0, finite."""
    if np.ndim(background) == 0:
        try:
            value = float(background)
        except (TypeError, ValueError):
            raise ConfigError(message(f"background {background!r}", "a number or an array",
                                      "Pass background=100.0 (image units).")) from None
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(message(f"background {value}", "a finite value >= 0",
                                      "Pass the camera offset / constant background level."))
        return value
    arr = np.asarray(background, dtype=np.float32)
    try:
        np.broadcast_shapes(arr.shape, shape)
        if np.broadcast_shapes(arr.shape, shape) != tuple(shape):
            raise ValueError
    except ValueError:
        raise DataError(message(f"background of shape {arr.shape} for an image of shape "
                                f"{tuple(shape)}", "an array broadcastable to the image",
                                "Pass a scalar or an array of the image's shape.")) from None
    if not np.isfinite(arr).all() or float(arr.min()) < 0:
        raise DataError(message("a background array with negative or non-finite values",
                                "finite values >= 0", "Clip or fix the background estimate."))
    return arr


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(message(f"{name}={value!r}", f"one of {', '.join(map(repr, choices))}",
                                  f"Use {name}={choices[0]!r}."))


def _norm(a: np.ndarray) -> float:
    flat = a.reshape(-1)
    return math.sqrt(max(float(np.dot(flat, flat)), 0.0))


# --------------------------------------------------------------------------------------
# total variation term (Dey et al. 2006)
# --------------------------------------------------------------------------------------
class _TVTerm:
    """Computes ``1 - lambda * div(grad u / |grad u|_eps)`` into a reusable buffer."""

    def __init__(self, shape: tuple[int, ...], weight: float, eps: float) -> None:
        self.weight = weight
        self.eps2 = np.float32(eps * eps)
        self.grads = [np.empty(shape, np.float32) for _ in shape]
        self.norm = np.empty(shape, np.float32)
        self.out = np.empty(shape, np.float32)

    def denominator(self, u: np.ndarray) -> np.ndarray:
        nd = u.ndim
        self.norm.fill(self.eps2)
        for d, g in enumerate(self.grads):
            hi = [slice(None)] * nd
            lo = [slice(None)] * nd
            last = [slice(None)] * nd
            hi[d], lo[d], last[d] = slice(1, None), slice(None, -1), slice(-1, None)
            # forward difference, Neumann boundary (zero gradient across the last sample)
            np.subtract(u[tuple(hi)], u[tuple(lo)], out=g[tuple(lo)])
            g[tuple(last)] = 0
            np.square(g, out=self.out)
            self.norm += self.out
        np.sqrt(self.norm, out=self.norm)
        div = self.out
        div.fill(0)
        for d, g in enumerate(self.grads):
            g /= self.norm
            hi = [slice(None)] * nd
            lo = [slice(None)] * nd
            hi[d], lo[d] = slice(1, None), slice(None, -1)
            # backward difference (the negative adjoint of the forward difference above)
            div += g
            div[tuple(hi)] -= g[tuple(lo)]
        div *= np.float32(-self.weight)
        div += np.float32(1.0)
        return div


# --------------------------------------------------------------------------------------
# the algorithm
# --------------------------------------------------------------------------------------
def richardson_lucy(
    image: Any,
    psf: Any,
    *,
    iterations: int = 30,
    tv_weight: float = 0.0,
    acceleration: bool = False,
    background: float | np.ndarray = 0.0,
    stop: StopRule | None = None,
    tol: float = 1e-3,
    boundary: Boundary = "auto",
    fft_backend: str = "auto",
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    r"""Richardson-Lucy deconvolution of a 2D or 3D image (optionally TV-regularised, accelerated).

    Parameters
    ----------
    image : array_like, shape (Y, X) or (Z, Y, X)
        Blurred image in intensity units proportional to photons (raw camera values are
        fine: pass the offset as ``background``). Must be non-negative and finite.
        Not modified.
    psf : array_like, same number of dimensions as ``image``
        Point spread function on the image's pixel grid, centred at index ``shape // 2``,
        non-negative; normalised to sum 1 internally. A PSF larger than the image is
        cropped (centred), a smaller one zero-padded.
    iterations : int
        Maximum number of iterations (>= 1).
    tv_weight : float
        Total-variation weight :math:`\lambda` (dimensionless, >= 0 and below
        ``1 / (2 * ndim)``). 0 gives plain RL; Dey et al. use about 0.002.
    acceleration : bool
        Biggs-Andrews first-order vector extrapolation (usually 2-3x fewer iterations
        for the same likelihood).
    background : float or ndarray
        Background :math:`b` in image units (>= 0), scalar or an array broadcastable to
        the image: the forward model is :math:`Hx + b`.
    stop : {None, "rel-change", "likelihood", "discrepancy"}
        Early-stopping rule (see Notes); None runs all ``iterations``.
    tol : float
        Tolerance of the stopping rule (0 < tol < 1).
    boundary : {"auto", "pad", "periodic"}
        ``"pad"`` estimates the object on a grid extended by the PSF size and
        fits only the observed pixels, so nothing wraps around and borders do not ring
        (Bertero & Boccacci 2005). ``"periodic"`` uses the image grid with circular
        convolution: about twice as fast, exact for structures away from the borders,
        but bright structures near one border leak into the opposite one. ``"auto"``
        (default) takes ``"periodic"`` only when every border band is dark (see
        :func:`~fluorecon.methods.classical.deconvolution.otf.resolve_boundary`), else
        ``"pad"``; the choice is recorded in the result's ``info.boundary``.
    fft_backend : {"auto", "pyfftw", "scipy"}
        FFT implementation; ``"auto"`` prefers pyFFTW (planned transforms, wisdom cache).
    threads : int, optional
        FFT threads; default all cores available to the process.
    progress : callable, optional
        Called as ``progress(done, total)`` after each iteration.

    Returns
    -------
    numpy.ndarray
        float32 estimate of the object, shape of ``image``, non-negative. Use
        :func:`richardson_lucy_result` to also get the iteration count and stop reason.

    Raises
    ------
    DataError
        Bad image or PSF (wrong dimensions, negative or non-finite values).
    ConfigError
        Invalid parameters.

    Notes
    -----
    With :math:`H` the convolution by the PSF, :math:`H^T` its adjoint (correlation; the
    conjugate OTF, so non-symmetric PSFs are handled correctly) and :math:`y` the data,
    the multiplicative RL update maximising the Poisson likelihood is (Richardson 1972,
    Lucy 1974)

    .. math:: x_{k+1} = \frac{x_k}{H^T 1 \; (1 - \lambda\,
              \mathrm{div}(\nabla x_k / |\nabla x_k|))}
              \; H^T \frac{y}{H x_k + b}

    where the TV factor is that of Dey et al. (2006) (forward differences, Neumann
    boundary, :math:`|\nabla x|` smoothed by :math:`\epsilon = 10^{-3}` times the mean
    image intensity) and :math:`H^T 1` is 1 for ``"periodic"`` and the Bertero-Boccacci
    weight for ``"pad"``. The start is the constant mean of :math:`y - b`. With
    :math:`b = 0` and ``"periodic"`` every iterate has exactly the flux of :math:`y`.

    Acceleration (Biggs & Andrews 1997, order 1): with :math:`g_k = x_{k+1} - v_k` the
    change made by the RL step from the predicted point :math:`v_k`, predict
    :math:`v_k = \max(x_k + \alpha_k (x_k - x_{k-1}), 0)`,
    :math:`\alpha_k = \langle g_{k-1}, g_{k-2}\rangle / \langle g_{k-2}, g_{k-2}\rangle`
    clipped to [0, 1).

    Stopping rules, checked each iteration (each costs two or three extra passes over
    memory per iteration):

    - ``"rel-change"``: stop once :math:`\|x_{k+1} - x_k\| / \|x_k\| <` ``tol``.
    - ``"likelihood"``: stop once the Poisson deviance
      :math:`D_k = 2 \sum [y \log(y / \mu_k) - (y - \mu_k)]`, :math:`\mu_k = H x_k + b`,
      decreases by less than ``tol`` times itself between iterations (a relative
      change of the log-likelihood, measured against its attainable range).
    - ``"discrepancy"``: stop at the first iterate with :math:`D_k / N \le 1 +` ``tol``,
      :math:`N` the number of pixels: the Poisson discrepancy principle of Bertero et al.
      (2010), valid when the image is in photon counts (convert camera ADU to photons
      first); on data in other units it stops too early or never.

    References
    ----------
    .. [1] W. H. Richardson, "Bayesian-based iterative method of image restoration",
       J. Opt. Soc. Am. 62, 55-59 (1972).
    .. [2] L. B. Lucy, "An iterative technique for the rectification of observed
       distributions", Astron. J. 79, 745 (1974).
    .. [3] D. S. C. Biggs and M. Andrews, "Acceleration of iterative image restoration
       algorithms", Appl. Opt. 36, 1766-1775 (1997).
    .. [4] N. Dey et al., "Richardson-Lucy algorithm with total variation regularization
       for 3D confocal microscope deconvolution", Microsc. Res. Tech. 69, 260-266 (2006).
    .. [5] M. Bertero and P. Boccacci, "A simple method for the reduction of boundary
       effects in the Richardson-Lucy approach to image deconvolution", Astron.
       Astrophys. 437, 369-374 (2005).
    .. [6] M. Bertero et al., "A discrepancy principle for Poisson data", Inverse
       Problems 26, 105004 (2010).

    Examples
    --------
    >>> from fluorecon.simulate.psf import gaussian_psf
    >>> rng = np.random.default_rng(0)
    >>> image = rng.poisson(50.0, size=(32, 32)).astype(np.float32)
    >>> out = richardson_lucy(image, gaussian_psf((9, 9), 1.5), iterations=5)
    >>> out.dtype, out.shape
    (dtype('float32'), (32, 32))
    """
    return richardson_lucy_result(
        image, psf, iterations=iterations, tv_weight=tv_weight, acceleration=acceleration,
        background=background, stop=stop, tol=tol, boundary=boundary,
        fft_backend=fft_backend, threads=threads, progress=progress).image


def richardson_lucy_result(
    image: Any,
    psf: Any,
    *,
    iterations: int = 30,
    tv_weight: float = 0.0,
    acceleration: bool = False,
    background: float | np.ndarray = 0.0,
    stop: StopRule | None = None,
    tol: float = 1e-3,
    boundary: Boundary = "auto",
    fft_backend: str = "auto",
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DeconvolutionResult:
    """Like :func:`richardson_lucy`, returning a :class:`DeconvolutionResult` (image + info)."""
    # ---- validation -----------------------------------------------------------------
    y = check_spatial_image(image, nonnegative=True)
    ndim = y.ndim
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
            or iterations < 1:
        raise ConfigError(message(f"iterations={iterations!r}", "an integer >= 1",
                                  "Pass e.g. iterations=30."))
    iterations = int(iterations)
    tv_max = 1.0 / (2 * ndim)
    if not (math.isfinite(tv_weight) and 0 <= tv_weight < tv_max):
        raise ConfigError(message(f"tv_weight={tv_weight}", f"0 <= tv_weight < {tv_max:g} for "
                                  f"{ndim}D data", "Typical values are 0.0005 to 0.01."))
    if stop is not None:
        _check_choice("stop", stop, STOP_RULES)
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ConfigError(message(f"tol={tol!r}", "0 < tol < 1", "Pass e.g. tol=1e-3."))
    _check_choice("boundary", boundary, BOUNDARIES)
    b = check_background(background, y.shape)
    h = fit_psf(check_psf(psf, ndim), y.shape)
    boundary = resolve_boundary(boundary, y, h.shape, b)

    # ---- grid, transforms, data on the grid ----------------------------------------
    if boundary == "periodic":
        work = y.shape
        obs = tuple(slice(None) for _ in y.shape)
    else:
        work = tuple(fast_length(n + m - 1) for n, m in zip(y.shape, h.shape))
        starts = [(w - n) // 2 for w, n in zip(work, y.shape)]
        obs = tuple(slice(s, s + n) for s, n in zip(starts, y.shape))
    fft = RealFFT(work, backend=fft_backend, threads=threads, effort="auto")
    otf = make_otf(h, fft)
    otf *= np.float32(fft.scale)  # fold the 1/N of the unnormalised inverse FFT
    imag = float(np.abs(otf.imag).max())
    otf_adj = otf if imag <= 1e-6 * fft.scale else np.conj(otf)  # real OTF: H^T = H

    if boundary == "periodic":
        yw = y
    else:
        yw = np.zeros(work, np.float32)
        yw[obs] = y
    has_b = not (np.ndim(b) == 0 and b == 0)
    if has_b and boundary == "pad" and np.ndim(b) != 0:
        bw = np.zeros(work, np.float32)
        bw[obs] = b
    else:
        bw = b if np.ndim(b) == 0 else np.ascontiguousarray(np.broadcast_to(b, y.shape))
    bw = np.float32(bw) if np.ndim(bw) == 0 else bw

    mean_y = float(y.mean(dtype=np.float64))
    floor = np.float32(max(np.finfo(np.float32).eps * mean_y, np.finfo(np.float32).tiny))
    start = max(mean_y - float(np.mean(b)), 1e-3 * mean_y, float(np.finfo(np.float32).tiny))

    x = fft.empty_real()  # current iterate; the FFT input in the plain loop
    r = fft.empty_real()  # H x + b, then y / (H x + b), then the multiplicative update
    inv_w = None
    if boundary == "pad":
        r[...] = 0
        r[obs] = 1
        spec = fft.forward(r)
        spec *= otf_adj
        fft.inverse(r)  # H^T 1_obs
        inv_w = np.zeros(work, np.float32)
        np.divide(1.0, r, out=inv_w, where=r > PAD_MIN_WEIGHT)
        x[...] = np.float32(start) * (inv_w > 0)
    else:
        x.fill(np.float32(start))

    tv = None
    if tv_weight > 0:
        tv = _TVTerm(work, tv_weight, eps=1e-3 * max(mean_y, float(np.finfo(np.float32).tiny)))

    need_dev = stop in ("likelihood", "discrepancy")
    scratch = np.empty(work, np.float32) if (stop is not None or acceleration) else None
    if need_dev:
        n_obs = float(y.size)
        sum_y = float(y.sum(dtype=np.float64))

    if acceleration:
        v = x  # predicted point, FFT input (aligned)
        x_cur = np.array(x)  # x_k
        x_old = np.empty(work, np.float32)  # x_{k-1}, then the new iterate
        g1 = np.zeros(work, np.float32)  # g_{k-1}
        g2 = np.zeros(work, np.float32)  # g_{k-2}

    rel = float("nan")
    dev_pp: float | None = None
    dev_prev: float | None = None
    reason = "max-iterations"
    done = 0
    for k in range(iterations):
        last = k == iterations - 1
        if acceleration:
            alpha = 0.0
            if k >= 2:
                den = float(np.vdot(g2.reshape(-1), g2.reshape(-1)))
                if den > 0:
                    alpha = float(np.vdot(g1.reshape(-1), g2.reshape(-1))) / den
                    alpha = min(max(alpha, 0.0), ALPHA_MAX)
            if alpha > 0:
                np.subtract(x_cur, x_old, out=v)
                v *= np.float32(alpha)
                v += x_cur
                np.maximum(v, 0, out=v)
            else:
                np.copyto(v, x_cur)
        else:
            v = x

        # mu = H v + b (floored), then the ratio y / mu
        spec = fft.forward(v)
        spec *= otf
        fft.inverse(r)
        if has_b:
            r += bw
        np.maximum(r, floor, out=r)
        if need_dev:
            sum_mu = float(r[obs].sum(dtype=np.float64))
        np.divide(yw, r, out=r)
        if need_dev:
            special.xlogy(yw, r, out=scratch)
            dev = 2.0 * (float(scratch.sum(dtype=np.float64)) - sum_y + sum_mu)
            dev_pp = dev / n_obs
            fire = False
            if stop == "discrepancy":
                fire = dev_pp <= 1.0 + tol
            elif dev_prev is not None:
                fire = abs(dev_prev - dev) <= tol * abs(dev)
            dev_prev = dev
            if fire:
                reason = stop
                if acceleration and v is not x_cur:
                    np.copyto(x_cur, v)  # the returned estimate is the one D was computed for
                break

        # multiplicative update factor H^T(y / mu) / (H^T 1 * TV factor)
        spec = fft.forward(r)
        spec *= otf_adj
        fft.inverse(r)
        if inv_w is not None:
            r *= inv_w
        if tv is not None:
            r /= tv.denominator(v)

        want_rel = stop is not None or last
        if acceleration:
            np.multiply(v, r, out=x_old)  # new iterate x_{k+1}
            np.subtract(x_old, v, out=g2)  # g_k
            g1, g2 = g2, g1
            if want_rel:
                np.subtract(x_old, x_cur, out=scratch)
                rel = _norm(scratch) / max(_norm(x_cur), np.finfo(np.float64).tiny)
            x_cur, x_old = x_old, x_cur
        else:
            if want_rel:
                d = scratch if scratch is not None else np.empty(work, np.float32)
                np.subtract(r, np.float32(1.0), out=d)
                d *= x
                rel = _norm(d) / max(_norm(x), np.finfo(np.float64).tiny)
            x *= r
        done = k + 1
        if progress is not None:
            progress(done, iterations)
        if stop == "rel-change" and rel < tol:
            reason = "rel-change"
            break

    est = x_cur if acceleration else x
    out = np.array(est[obs], dtype=np.float32, copy=True) if boundary == "pad" else est
    info = DeconvolutionInfo(
        iterations=done, max_iterations=iterations, stop_reason=reason, relative_change=rel,
        deviance_per_pixel=dev_pp, boundary=boundary, work_shape=tuple(work),
        fft_backend=fft.backend, planning_seconds=fft.planning_seconds)
    return DeconvolutionResult(image=out, info=info)


# --------------------------------------------------------------------------------------
# registered methods
# --------------------------------------------------------------------------------------
class RichardsonLucyConfig(MethodConfig):
    """Configuration of :class:`RichardsonLucy` (the PSF is passed separately, as an array)."""

    iterations: int = Field(default=30, ge=1, le=100_000,
                            description="Maximum number of Richardson-Lucy iterations.")
    tv_weight: float = Field(default=0.0, ge=0.0, lt=1.0 / 6.0,
                             description="Total-variation weight (dimensionless; 0 = plain RL; "
                                         "must be below 1/(2*ndim)).")
    acceleration: bool = Field(default=False,
                               description="Biggs-Andrews vector extrapolation (fewer iterations).")
    background: float = Field(default=0.0, ge=0.0,
                              description="Constant background in image intensity units (e.g. "
                                          "camera offset); the forward model is H x + b.")
    stop: StopRule | None = Field(default=None,
                                  description="Early-stopping rule: rel-change, likelihood, "
                                              "discrepancy (deviance per pixel <= 1 + tol; image "
                                              "in photons), or none.")
    tol: float = Field(default=1e-3, gt=0.0, lt=1.0,
                       description="Tolerance of the stopping rule (dimensionless).")
    boundary: Boundary = Field(default="auto",
                               description="pad: no wrap-around, borders fitted "
                                           "(Bertero-Boccacci); periodic: circular convolution, "
                                           "about 2x faster; auto: periodic when every border "
                                           "is dark, else pad.")
    fft_backend: Literal["auto", "pyfftw", "scipy"] = Field(
        default="auto", description="FFT implementation (results agree to float32 rounding).")
    threads: int | None = Field(default=None, ge=1,
                                description="FFT threads (default: all available cores).")


class RichardsonLucyTVConfig(RichardsonLucyConfig):
    """Configuration of :class:`RichardsonLucyTV`: as RL, with a positive TV weight."""

    tv_weight: float = Field(default=0.002, gt=0.0, lt=1.0 / 6.0,
                             description="Total-variation weight (dimensionless; Dey et al. use "
                                         "0.002; must be below 1/(2*ndim)).")


class _RLBase(Method):
    kind: ClassVar[str] = "deconvolve"
    block_progress: ClassVar[bool] = True
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)

    def __init__(self, config: MethodConfig | None = None, *, psf: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        arr = np.asarray(psf) if psf is not None else None
        ndim = arr.ndim if arr is not None and arr.ndim in (2, 3) else 3
        self.psf = check_psf(psf, ndim).astype(np.float32)
        self.last_result_: DeconvolutionInfo | None = None

    @property
    def receptive_field(self) -> int | None:
        """Practical overlap for tiling: the half-width of :math:`H^T H` (twice the PSF's).

        Strictly, RL's output depends on the whole image; with ``boundary="pad"`` tiles
        overlapping by this much agree with whole-image results to within a few percent.
        """
        return int(2 * (max(self.psf.shape) // 2))

    def predict_block(self, block: np.ndarray, axes: str, *,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Deconvolve one ``"YX"``/``"ZYX"`` block; sets :attr:`last_result_`.

        ``progress(done, total)`` is called after each iteration.
        """
        if self.psf.ndim != block.ndim:
            check_psf(self.psf, block.ndim)  # raises the one-line DataError
        cfg = self.config
        res = richardson_lucy_result(
            block, self.psf, iterations=cfg.iterations, tv_weight=cfg.tv_weight,
            acceleration=cfg.acceleration, background=cfg.background, stop=cfg.stop,
            tol=cfg.tol, boundary=cfg.boundary, fft_backend=cfg.fft_backend,
            threads=cfg.threads, progress=progress)
        self.last_result_ = res.info
        return res.image


@register
class RichardsonLucy(_RLBase):
    """Richardson-Lucy deconvolution (Poisson maximum likelihood), optionally accelerated.

    Parameters
    ----------
    config : RichardsonLucyConfig, optional
        Validated config; alternatively pass its fields as keywords.
    psf : numpy.ndarray
        PSF with one axis per spatial axis of the images (``"YX"`` or ``"ZYX"``), on the
        image pixel grid, centred at ``shape // 2``. Not part of the JSON config.
    **kwargs
        Fields of :class:`RichardsonLucyConfig`.

    Attributes
    ----------
    last_result_ : DeconvolutionInfo or None
        Iterations run, stop reason and final relative change of the last block processed.

    Examples
    --------
    >>> from fluorecon.methods import create
    >>> from fluorecon.simulate.psf import gaussian_psf
    >>> rl = create("rl", psf=gaussian_psf((9, 9), 1.5), iterations=10)
    >>> out = rl.predict(np.full((16, 16), 5.0, np.float32), axes="YX")
    >>> rl.last_result_.iterations
    10
    """

    name: ClassVar[str] = "rl"
    Config: ClassVar[type[MethodConfig]] = RichardsonLucyConfig
    summary: ClassVar[str] = "Richardson-Lucy deconvolution (needs a PSF)."


@register
class RichardsonLucyTV(_RLBase):
    """Richardson-Lucy with total-variation regularisation (Dey et al. 2006).

    Same parameters as :class:`RichardsonLucy`; ``tv_weight`` defaults to 0.002.
    """

    name: ClassVar[str] = "rl-tv"
    Config: ClassVar[type[MethodConfig]] = RichardsonLucyTVConfig
    summary: ClassVar[str] = "Richardson-Lucy with total-variation regularisation (needs a PSF)."
