"""Percentile normalisation (CARE / CSBDeep convention) as a serialisable, invertible map.

The same affine map also carries mean / standard-deviation standardisation (CAREamics'
convention, ``statistic="meanstd"``, computed by
:func:`fluorecon.normalize.standardize.compute_meanstd_params`).

Normalisation is computed **once, on the whole image**, before any tiling, and returned as a
:class:`NormParams` object. The same object normalises the input, maps network outputs back
to the input's intensity units (:meth:`NormParams.denormalize`) and maps predicted scales
(standard deviations, Laplace scales, ...) back too (:meth:`NormParams.denormalize_scale`).
It serialises to JSON so it can be stored next to a model or a prediction.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from fluorecon.core.axes import check_axes
from fluorecon.core.config import BaseConfig
from fluorecon.core.dtypes import check_image_array
from fluorecon.core.errors import AxesError, DataError, message

#: Default upper bound on the number of values (per channel) used to estimate percentiles.
#: 2**22 = 4,194,304, i.e. a 2048 x 2048 plane is always used exactly.
DEFAULT_MAX_SAMPLES = 1 << 22

#: Regulariser of the denominator, as in CSBDeep's ``normalize_mi_ma``.
DEFAULT_EPS = 1e-20


class NormParams(BaseConfig):
    """Parameters of an affine normalisation ``y = (x - lo) / (hi - lo + eps)``.

    Instances are frozen pydantic models: they validate on construction, serialise with
    :meth:`to_json` / :meth:`to_dict` and read back with :meth:`from_json` /
    :meth:`from_dict` exactly (floats are written with full precision).

    Parameters
    ----------
    version : int
        Schema version (1).
    statistic : {"percentile", "meanstd"}
        How ``lo`` and ``hi`` were estimated: ``percentile`` (CSBDeep: ``lo``, ``hi`` are
        the ``low`` and ``high`` percentiles, so the bulk of the image maps to ``[0, 1]``)
        or ``meanstd`` (CAREamics: ``lo`` is the mean and ``hi - lo`` the standard
        deviation, so the image maps to zero mean and unit variance).
    low, high : float or None
        The percentiles (0-100) the values ``lo`` and ``hi`` were taken at (provenance);
        required for ``percentile``, None for ``meanstd``.
    lo, hi : list of float
        Intensity at the low and high percentile (or the mean and the mean plus one
        standard deviation), in the image's own units; one entry per channel when
        normalised per channel, otherwise a single entry.
    axes : str or None
        Axes of the image the parameters were computed on. Needed (and required to contain
        ``C``) only when there is more than one channel, to locate the channel axis.
    eps : float
        Added to ``hi - lo`` so that constant images do not divide by zero.
    clip : bool
        Whether :meth:`normalize` clips its output to ``[0, 1]``.
    n_samples : int
        Number of values per channel the percentiles were estimated from (after any
        subsampling, see :func:`compute_norm_params`).

    Notes
    -----
    With :math:`d_c = hi_c - lo_c + \\varepsilon` for channel :math:`c`,

    .. math::

        y = \\frac{x - lo_c}{d_c}, \\qquad x = y\\, d_c + lo_c, \\qquad
        \\sigma_x = \\sigma_y\\, d_c .

    The last relation is the inverse for predicted scales (standard deviations, Laplace
    or Gaussian scales): an affine map rescales spreads by its slope only, without the
    offset. With ``clip=True`` the map is not invertible outside ``[lo, hi]``:
    :meth:`denormalize` then inverts only the unclipped values exactly.

    Examples
    --------
    >>> p = NormParams(low=1.0, high=99.8, lo=[100.0], hi=[612.0])
    >>> float(p.normalize(np.array([[356.0]]))[0, 0])
    0.5
    >>> float(p.denormalize(np.array([[0.5]]))[0, 0])
    356.0
    >>> round(float(p.denormalize_scale(np.array([[0.01]]))[0, 0]), 4)
    5.12
    """

    version: int = Field(default=1, ge=1, le=1, description="Schema version of NormParams.")
    statistic: Literal["percentile", "meanstd"] = Field(
        default="percentile", description="percentile: lo/hi are percentiles; meanstd: lo "
                                          "is the mean and hi - lo the standard deviation.")
    low: float | None = Field(default=None, ge=0.0, le=100.0,
                              description="Low percentile (0-100); None for meanstd.")
    high: float | None = Field(default=None, ge=0.0, le=100.0,
                               description="High percentile (0-100); None for meanstd.")
    lo: list[float] = Field(min_length=1, description="Intensity at the low percentile, "
                                                       "per channel (image units).")
    hi: list[float] = Field(min_length=1, description="Intensity at the high percentile, "
                                                       "per channel (image units).")
    axes: str | None = Field(default=None, description="Axes of the image the parameters "
                                                       "were computed on.")
    eps: float = Field(default=DEFAULT_EPS, ge=0.0, description="Added to hi - lo.")
    clip: bool = Field(default=False, description="Clip normalised values to [0, 1].")
    n_samples: int = Field(default=0, ge=0, description="Values per channel used to "
                                                        "estimate the percentiles.")

    @field_validator("lo", "hi")
    @classmethod
    def _finite(cls, values: list[float]) -> list[float]:
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"lo and hi must be finite, got {values}")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> "NormParams":
        if self.statistic == "percentile":
            if self.low is None or self.high is None:
                raise ValueError("percentile parameters need the low and high percentiles")
            if self.low >= self.high:
                raise ValueError(f"low percentile {self.low} must be below high {self.high}")
        elif self.low is not None or self.high is not None:
            raise ValueError("meanstd parameters take no low/high percentiles")
        if self.clip and self.statistic != "percentile":
            raise ValueError("clip=True clips to [0, 1], which only percentile "
                             "normalisation maps the image to")
        if len(self.lo) != len(self.hi):
            raise ValueError(f"lo has {len(self.lo)} entries but hi has {len(self.hi)}")
        if any(h < l for l, h in zip(self.lo, self.hi)):
            raise ValueError("hi must be >= lo for every channel")
        if self.axes is not None:
            up = check_axes(self.axes)
            if up != self.axes:
                raise ValueError(f"axes must be upper case, got {self.axes!r} (use {up!r})")
        if len(self.lo) > 1 and (self.axes is None or "C" not in self.axes):
            raise ValueError(f"{len(self.lo)} channels of parameters need axes containing 'C'"
                             f" (got axes={self.axes!r})")
        return self

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON-compatible dict (lists and scalars only)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NormParams":
        """Validate a dict written by :meth:`to_dict` (raises :class:`ConfigError`)."""
        return cls.build(**data)  # type: ignore[return-value]

    @classmethod
    def from_json(cls, text: str) -> "NormParams":
        """Read parameters written by :meth:`to_json`."""
        import json

        return cls.from_dict(json.loads(text))

    # -- structure ---------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        """Number of channels with their own parameters (1 when pooled)."""
        return len(self.lo)

    @property
    def scale(self) -> list[float]:
        """The denominators ``hi - lo + eps``, one per channel (image units)."""
        return [h - l + self.eps for l, h in zip(self.lo, self.hi)]

    def select_channel(self, index: int) -> "NormParams":
        """Parameters of one channel, for a block from which the ``C`` axis was removed.

        With a single (pooled) channel of parameters this returns the parameters with the
        ``C`` axis dropped from :attr:`axes`, whatever ``index`` is.
        """
        axes = None if self.axes is None else self.axes.replace("C", "")
        if self.n_channels == 1:
            return self.model_copy(update={"axes": axes})
        if not -self.n_channels <= index < self.n_channels:
            raise DataError(message(f"channel index {index}",
                                    f"an index below {self.n_channels}",
                                    "Pick an existing channel."))
        return self.model_copy(update={"lo": [self.lo[index]], "hi": [self.hi[index]],
                                       "axes": axes})

    def _broadcast(self, ndim: int, shape: tuple[int, ...],
                   axes: str | None) -> tuple[np.ndarray, np.ndarray]:
        """``lo`` and ``hi - lo + eps`` as float32 arrays broadcastable to ``shape``."""
        lo = np.asarray(self.lo, dtype=np.float64)
        scale = np.asarray(self.scale, dtype=np.float64)
        if self.n_channels == 1:
            return lo.astype(np.float32).reshape(()), scale.astype(np.float32).reshape(())
        use = axes if axes is not None else self.axes
        up = check_axes(use, ndim) if use is not None else None
        if up is None or "C" not in up:
            raise AxesError(message(f"axes {use!r} for per-channel parameters",
                                    "axes with a 'C' axis",
                                    "Pass axes=..., or use select_channel(i) for one "
                                    "channel."))
        c = up.index("C")
        if shape[c] != self.n_channels:
            raise DataError(message(f"{shape[c]} channels along axis C of shape {shape}",
                                    f"{self.n_channels} channels as when the parameters "
                                    "were computed", "Normalise each image with its own "
                                    "parameters."))
        bshape = [1] * ndim
        bshape[c] = self.n_channels
        return (lo.astype(np.float32).reshape(bshape),
                scale.astype(np.float32).reshape(bshape))

    # -- maps --------------------------------------------------------------------------
    def normalize(self, x: Any, *, axes: str | None = None) -> Any:
        """Map intensities to normalised units: ``(x - lo) / (hi - lo + eps)``.

        Parameters
        ----------
        x : array-like
            Image in the original units. A dask array stays lazy; anything else is
            converted to a NumPy array.
        axes : str, optional
            Axes of ``x``, needed only to locate the channel axis when there is more than one
            channel of parameters (defaults to :attr:`axes`).

        Returns
        -------
        ndarray or dask array, float32
            Normalised image, clipped to ``[0, 1]`` when :attr:`clip` is set.
        """
        xf = _as_float32_any(x)
        lo, scale = self._broadcast(xf.ndim, tuple(xf.shape), axes)
        y = (xf - lo) / scale
        if self.clip:
            y = y.clip(0.0, 1.0)
        return y

    def denormalize(self, y: Any, *, axes: str | None = None) -> Any:
        """Inverse of :meth:`normalize`: ``y * (hi - lo + eps) + lo`` (float32)."""
        yf = _as_float32_any(y)
        lo, scale = self._broadcast(yf.ndim, tuple(yf.shape), axes)
        return yf * scale + lo

    def denormalize_scale(self, s: Any, *, axes: str | None = None) -> Any:
        """Map a predicted scale (std, Laplace scale) back: ``s * (hi - lo + eps)``.

        Scales transform with the slope of the affine map only; the offset ``lo`` does not
        enter. Variances transform with the square: apply this twice, or to the std.
        """
        sf = _as_float32_any(s)
        _, scale = self._broadcast(sf.ndim, tuple(sf.shape), axes)
        return sf * scale


class PercentileNormalizer(BaseConfig):
    """Settings of percentile normalisation; :meth:`fit` computes :class:`NormParams`.

    A thin wrapper over :func:`compute_norm_params` and :func:`percentile_normalize`, for
    places (model configs, the CLI) where the settings travel as a validated config.

    Examples
    --------
    >>> norm = PercentileNormalizer(low=1.0, high=99.8)
    >>> x = np.arange(100, dtype=np.uint16).reshape(10, 10)
    >>> y, params = norm(x)
    >>> y.dtype, round(params.lo[0], 2), round(params.hi[0], 3)
    (dtype('float32'), 0.99, 98.802)
    """

    version: int = Field(default=1, ge=1, le=1, description="Schema version.")
    low: float = Field(default=1.0, ge=0.0, le=100.0,
                       description="Low percentile (0-100) mapped to 0.")
    high: float = Field(default=99.8, ge=0.0, le=100.0,
                        description="High percentile (0-100) mapped to 1.")
    per_channel: bool = Field(default=True, description="Separate percentiles for each "
                                                        "channel (axis C).")
    clip: bool = Field(default=False, description="Clip normalised values to [0, 1] (makes "
                                                  "the map non-invertible outside).")
    eps: float = Field(default=DEFAULT_EPS, ge=0.0, description="Added to hi - lo.")
    max_samples: int | None = Field(default=DEFAULT_MAX_SAMPLES, ge=1,
                                    description="Most values per channel used to estimate "
                                                "percentiles (regular-lattice subsampling "
                                                "above it); None uses every value.")

    @model_validator(mode="after")
    def _order(self) -> "PercentileNormalizer":
        if self.low >= self.high:
            raise ValueError(f"low percentile {self.low} must be below high {self.high}")
        return self

    def fit(self, image: Any, *, axes: str | None = None) -> NormParams:
        """Compute the parameters on ``image`` (see :func:`compute_norm_params`)."""
        return compute_norm_params(image, low=self.low, high=self.high, axes=axes,
                                   per_channel=self.per_channel, clip=self.clip, eps=self.eps,
                                   max_samples=self.max_samples)

    def __call__(self, image: Any, *, axes: str | None = None) -> tuple[np.ndarray, NormParams]:
        """Normalise ``image``; returns ``(normalised float32, params)``."""
        params = self.fit(image, axes=axes)
        return np.asarray(params.normalize(image, axes=axes)), params


def compute_norm_params(
    image: Any,
    *,
    low: float = 1.0,
    high: float = 99.8,
    axes: str | None = None,
    per_channel: bool = True,
    clip: bool = False,
    eps: float = DEFAULT_EPS,
    max_samples: int | None = DEFAULT_MAX_SAMPLES,
) -> NormParams:
    """Estimate percentile normalisation parameters of a (possibly large or lazy) image.

    Parameters
    ----------
    image : array-like
        NumPy, dask or zarr array with at least 2 dimensions, any supported dtype. Only a
        subsample is read when the image holds more than ``max_samples`` values per channel.
    low, high : float
        Percentiles (0-100) mapped to 0 and 1. CARE's defaults are 1 and 99.8 (training);
        its evaluation uses 0.1 and 99.9.
    axes : str, optional
        Axes of ``image`` (e.g. ``"CZYX"``). Only its ``C`` axis matters: with
        ``per_channel=True`` each channel gets its own percentiles. ``None`` means the image
        has no channel axis and all values are pooled.
    per_channel : bool
        Separate percentiles per channel when ``axes`` contains ``C``.
    clip : bool
        Stored in the parameters: :meth:`NormParams.normalize` clips to ``[0, 1]``.
    eps : float
        Added to ``hi - lo``.
    max_samples : int or None
        Largest number of values per channel used for the percentile estimate. Above it,
        a regular lattice of the image is read: every ``s_i``-th element along each
        non-channel axis, starting at index 0, with strides chosen greedily (the axis with
        most remaining samples is thinned first) so that at most ``max_samples`` values per
        channel remain. ``None`` reads every value.

    Returns
    -------
    NormParams
        With one ``lo``/``hi`` pair per channel, or a single pair.

    Raises
    ------
    DataError
        If the sampled values contain NaN or infinity, or the image is empty.
    AxesError
        If ``axes`` does not match the image.

    Notes
    -----
    Percentiles use NumPy's default linear interpolation (as CSBDeep does), computed in
    float64. With subsampling the estimate is that of the lattice sample: for 4 million
    samples the rank error of the 99.8th percentile is about
    :math:`\\sqrt{n p (1-p)} \\approx 90` ranks, i.e. 0.002 percentile points, far below
    anything that matters for normalisation. A lattice (rather than random) sample reads
    whole chunks of zarr/dask arrays sequentially; it could alias with structures periodic
    at exactly the stride, which microscope images practically never have.

    References
    ----------
    .. [1] M. Weigert et al., "Content-aware image restoration: pushing the limits of
       fluorescence microscopy", Nature Methods 15, 1090-1097 (2018).
    """
    check_image_array(image, finite=False)
    if not low < high:
        raise DataError(message(f"low={low}, high={high}", "low < high",
                                "Swap the percentiles."))
    per_c, up = sample_per_channel(image, axes=axes, per_channel=per_channel,
                                   max_samples=max_samples, purpose="compute percentiles")
    lo, hi = np.percentile(per_c, [low, high], axis=1)
    return NormParams(low=float(low), high=float(high), lo=[float(v) for v in lo],
                      hi=[float(v) for v in hi], axes=up, eps=float(eps), clip=bool(clip),
                      n_samples=int(per_c.shape[1]))


def percentile_normalize(
    image: Any,
    *,
    low: float = 1.0,
    high: float = 99.8,
    axes: str | None = None,
    per_channel: bool = True,
    clip: bool = False,
    eps: float = DEFAULT_EPS,
    max_samples: int | None = DEFAULT_MAX_SAMPLES,
) -> tuple[np.ndarray, NormParams]:
    """Percentile-normalise an image (CARE/CSBDeep convention) and return the parameters.

    ``y = (x - p_low) / (p_high - p_low + eps)``, computed in float32; the percentiles
    come from :func:`compute_norm_params` (same parameters).

    Returns
    -------
    normalized : ndarray, float32, same shape as ``image``
        The normalised image (the whole image is read).
    params : NormParams
        Serialisable, invertible parameters: ``params.denormalize(normalized)`` restores
        ``image`` up to float32 rounding.

    Examples
    --------
    >>> x = np.linspace(0, 1000, 10001, dtype=np.float32).reshape(73, 137)
    >>> y, p = percentile_normalize(x, low=1, high=99)
    >>> round(float(np.percentile(y, 1)), 6), round(float(np.percentile(y, 99)), 6)
    (0.0, 1.0)
    >>> bool(np.allclose(p.denormalize(y), x, atol=1e-3))
    True
    """
    params = compute_norm_params(image, low=low, high=high, axes=axes,
                                 per_channel=per_channel, clip=clip, eps=eps,
                                 max_samples=max_samples)
    return np.asarray(params.normalize(image, axes=axes)), params


# -- helpers -----------------------------------------------------------------------------
def _as_float32_any(x: Any) -> Any:
    """float32 by value; dask arrays stay lazy."""
    if hasattr(x, "map_blocks") and hasattr(x, "compute"):
        return x.astype(np.float32)
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DataError(message(f"an array of dtype {arr.dtype}", "a numeric array",
                                "Pass image data."))
    return arr.astype(np.float32, copy=False)


def lattice_strides(shape: tuple[int, ...], skip_axis: int | None,
                    max_samples: int | None) -> tuple[int, ...]:
    """Strides (1 on ``skip_axis``) leaving at most ``max_samples`` values per channel.

    Greedy: the axis with the most remaining samples has its stride raised until the
    product of ``ceil(n_i / s_i)`` fits.
    """
    strides = [1] * len(shape)
    if max_samples is None:
        return tuple(strides)
    axes = [i for i in range(len(shape)) if i != skip_axis]

    def count(i: int) -> int:
        return -(-shape[i] // strides[i])

    while math.prod(count(i) for i in axes) > max_samples:
        i = max(axes, key=count)
        if count(i) == 1:  # cannot thin further
            break
        # jump straight to the smallest stride that reduces this axis' count
        n = count(i)
        strides[i] = -(-shape[i] // (n - 1))
    return tuple(strides)


def sample_per_channel(image: Any, *, axes: str | None, per_channel: bool,
                       max_samples: int | None, purpose: str
                       ) -> tuple[np.ndarray, str | None]:
    """A regular-lattice sample of ``image`` as float64 ``(channels, values)``.

    One row per channel when ``per_channel`` and ``axes`` has ``C``, else one pooled row;
    at most ``max_samples`` values per row (see :func:`lattice_strides`). Returns the
    sample and the checked axes. Raises :class:`DataError` (naming ``purpose``) when the
    sample holds NaN or infinity.
    """
    shape = tuple(int(s) for s in image.shape)
    up = check_axes(axes, len(shape)) if axes is not None else None
    c_axis = up.index("C") if (up is not None and "C" in up and per_channel) else None
    sample = _lattice_sample(image, shape, c_axis, max_samples)
    if c_axis is None:
        per_c = sample.reshape(1, -1)
    else:
        per_c = np.moveaxis(sample, c_axis, 0).reshape(shape[c_axis], -1)
    per_c = per_c.astype(np.float64, copy=False)
    if not np.isfinite(per_c).all():
        raise DataError(message("an image containing NaN or infinite values",
                                f"finite values to {purpose}",
                                "Replace or mask the invalid pixels first."))
    return per_c, up


def _lattice_sample(image: Any, shape: tuple[int, ...], c_axis: int | None,
                    max_samples: int | None) -> np.ndarray:
    strides = lattice_strides(shape, c_axis, max_samples)
    if all(s == 1 for s in strides):
        return np.asarray(image)
    return np.asarray(image[tuple(slice(None, None, s) for s in strides)])
