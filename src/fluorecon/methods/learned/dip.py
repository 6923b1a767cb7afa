"""Deep Image Prior with a self-supervised stopping rule.

A randomly initialised U-Net is fitted to one noisy image from a fixed random input. Early
in the fit the network reproduces the image's structure, later also its noise; where to
stop is usually hand-picked. Here it is chosen on the image itself: a random subset of
pixels is held out of the fit, and the fit stops when the loss on those pixels stops
improving.

References
----------
.. [1] D. Ulyanov, A. Vedaldi, V. Lempitsky, "Deep image prior", CVPR 2018 (and IJCV 128,
   1867-1888, 2020).
.. [2] J. Batson, L. Royer, "Noise2Self: blind denoising by self-supervision", ICML 2019.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from fluorecon.core.axes import check_axes
from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import ConfigError, DataError, message
from fluorecon.core.heap import heap_reuse
from fluorecon.methods.base import Method, MethodConfig
from fluorecon.methods.learned._base import configure_threads
from fluorecon.methods.learned.inference import autocast_context
from fluorecon.methods.learned.training import training_precision
from fluorecon.methods.learned.unet import UNet, UNetConfig
from fluorecon.normalize import compute_norm_params


class DIPConfig(MethodConfig):
    """Settings of :class:`DeepImagePrior`."""

    depth: int = Field(default=3, ge=1, le=5, description="U-Net depth (2x downsamplings).")
    base_filters: int = Field(default=16, ge=1, le=256, description="U-Net filters at the "
                                                                    "top level.")
    norm: Literal["none", "batch"] = Field(default="batch", description="Normalisation "
                                           "layers (batch: statistics of the one image, as in "
                                           "the original DIP; none often stalls).")
    input_channels: int = Field(default=8, ge=1, le=64, description="Channels of the fixed "
                                                                    "random network input.")
    input_scale: float = Field(default=0.1, gt=0, description="The input is uniform on "
                                                             "[0, input_scale].")
    input_noise_std: float = Field(default=1 / 30, ge=0, description="Std of fresh Gaussian "
                                   "noise added to the input at every iteration "
                                   "(regularises the fit; 0: none).")
    learning_rate: float = Field(default=0.01, gt=0, le=1, description="Adam learning rate.")
    max_iterations: int = Field(default=3000, ge=1, description="Upper bound on iterations.")
    holdout_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="Fraction of "
                                    "pixels held out of the fit to decide when to stop.")
    patience: int | None = Field(default=200, ge=1, description="Stop after this many "
                                 "iterations without a lower held-out loss; None runs all "
                                 "max_iterations.")
    min_iterations: int = Field(default=50, ge=0, description="Iterations before the "
                                "stopping rule starts watching.")
    ema_decay: float = Field(default=0.99, ge=0, lt=1, description="Decay of the exponential "
                             "moving average of outputs (0: no averaging).")
    keep_best: bool = Field(default=True, description="Return the averaged output of the "
                            "iteration with the lowest held-out loss, not of the last.")
    norm_low: float = Field(default=1.0, ge=0, le=100, description="Low percentile of the "
                                                                   "normalisation.")
    norm_high: float = Field(default=99.8, ge=0, le=100, description="High percentile of the "
                                                                     "normalisation.")
    seed: int = Field(default=0, ge=0, description="Seed of weights, input and held-out set.")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        default="fp32", description="Arithmetic of the network's forward pass: fp32, bf16 "
        "(autocast; weights, Adam, losses and the averaged output stay fp32), or auto "
        "(bf16 where the device computes it natively: AMX CPUs, CUDA GPUs with bf16).")

    @model_validator(mode="after")
    def _check(self) -> "DIPConfig":
        if self.norm_low >= self.norm_high:
            raise ValueError(f"norm_low {self.norm_low} must be below norm_high "
                             f"{self.norm_high}")
        if self.min_iterations >= self.max_iterations:
            raise ValueError(f"min_iterations {self.min_iterations} must be below "
                             f"max_iterations {self.max_iterations}")
        return self


@dataclass(repr=False)
class DIPResult:
    """Outcome of one Deep Image Prior fit (one spatial block).

    Attributes
    ----------
    iterations : int
        Iterations run.
    best_iteration : int
        Iteration whose averaged output had the lowest held-out loss (1-based).
    best_holdout_loss : float
        That loss: mean squared difference to the held-out noisy pixels, in normalised
        units (it includes the noise variance, see :class:`DeepImagePrior`).
    stopped_early : bool
        True if the stopping rule ended the fit before ``max_iterations``.
    returned : {"best", "last"}
        Which iteration's averaged output was returned.
    holdout_loss, fit_loss : ndarray
        Per iteration: held-out loss of the averaged output, and the training loss.
    """

    iterations: int
    best_iteration: int
    best_holdout_loss: float
    stopped_early: bool
    returned: str
    holdout_loss: np.ndarray = field(repr=False)
    fit_loss: np.ndarray = field(repr=False)

    def __str__(self) -> str:
        how = "stopped" if self.stopped_early else "ran"
        if self.returned == "best":
            it, loss = self.best_iteration, self.best_holdout_loss
        else:
            it, loss = self.iterations, float(self.holdout_loss[-1])
        return (f"{how} at iteration {self.iterations}, returned the average at iteration "
                f"{it} (held-out loss {loss:.4g})")

    def __repr__(self) -> str:
        return f"DIPResult({self})"


@heap_reuse()
def deep_image_prior(image: np.ndarray, *, config: DIPConfig | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     device: str | None = None,
                     monitor: Callable[[int, np.ndarray], None] | None = None,
                     monitor_every: int = 1) -> tuple[np.ndarray, DIPResult]:
    """Denoise one 2D or 3D image by Deep Image Prior with a held-out stopping rule.

    Parameters
    ----------
    image : ndarray, ``(Y, X)`` or ``(Z, Y, X)``
        Noisy image, any supported dtype (computed in float32). Not modified.
    config : DIPConfig, optional
        Default ``DIPConfig()``.
    progress : callable, optional
        ``progress(iteration, max_iterations)`` after every iteration (and
        ``progress(max_iterations, max_iterations)`` when stopped early).
    device : str, optional
        torch device; default CUDA if available, else CPU.
    monitor : callable, optional
        ``monitor(iteration, averaged)`` every ``monitor_every`` iterations with the
        averaged output so far (float32, the image's shape and units): to study the
        stopping rule against a reference (``benchmarks/bench_dip.py``). Costs a copy
        per call.
    monitor_every : int, default 1

    Returns
    -------
    restored : ndarray, float32
        Same shape and units as ``image``.
    result : DIPResult

    Notes
    -----
    The image :math:`y` is percentile-normalised and reflect-padded to a multiple of
    :math:`2^{depth}`. A fixed input :math:`z \\sim U(0, 0.1)^{C \\times \\ldots}` and a
    seeded random U-Net :math:`f_\\theta` (batch normalisation over the one image, always
    in training mode) start the fit [1]_. A random set :math:`H` of
    ``holdout_fraction`` of the pixels is held out; Adam minimises the squared error on
    the others, :math:`\\sum_{i \\notin H} (f_\\theta(z + \\eta_t)_i - y_i)^2`, with fresh
    input noise :math:`\\eta_t \\sim N(0, \\sigma_z^2)` each iteration. The outputs are
    averaged by an exponential moving average :math:`\\bar f_t` (bias-corrected).

    Stopping rule. The output at a held-out pixel is never fitted to that pixel's value,
    and the network input is independent of the image noise, so :math:`\\bar f_{t,i}` is
    independent of the noise :math:`n_i` at :math:`i \\in H` (J-invariance on :math:`H`,
    as in Noise2Self [2]_). For zero-mean noise,

    .. math::

        \\mathbb{E} \\frac{1}{|H|}\\sum_{i \\in H} (\\bar f_{t,i} - y_i)^2
        = \\mathbb{E} \\frac{1}{|H|}\\sum_{i \\in H} (\\bar f_{t,i} - s_i)^2 + \\sigma^2,

    the held-out loss tracks the error to the clean signal :math:`s` up to a constant. It
    falls while the network learns structure and rises once it starts to reproduce noise
    (at the fitted pixels, and with them the interpolation at held-out ones). The fit
    stops after ``patience`` iterations without a new minimum and returns the averaged
    output :math:`\\bar f_{t^*}` of the minimum (``keep_best``). Held-out pixels get the
    network's prediction from their neighbours.

    Cost: one forward and backward pass of the whole image per iteration, in a 2D
    network's channels-last layout and under heap reuse (as the training engine), with
    the forward pass in bf16 when ``precision`` asks for it.
    """
    cfg = config if config is not None else DIPConfig()
    if int(monitor_every) < 1:
        raise ConfigError(message(f"monitor_every={monitor_every!r}", "a positive integer",
                                "Pass monitor_every >= 1."))
    x = as_float32(image)
    if x.ndim not in (2, 3):
        raise DataError(message(f"an image of shape {x.shape}", "a 2D or 3D image",
                                "Pass one spatial block."))
    norm = compute_norm_params(x, low=cfg.norm_low, high=cfg.norm_high)
    xn = np.asarray(norm.normalize(x), np.float32)
    div = 2 ** cfg.depth
    shape = x.shape
    pads = [(0, (-n) % div) for n in shape]
    mode = "reflect" if all(n > p for n, (_, p) in zip(shape, pads)) else "symmetric"
    xp = np.pad(xn, pads, mode=mode) if any(p for _, p in pads) else xn
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    valid = np.zeros(xp.shape, bool)
    valid[tuple(slice(0, n) for n in shape)] = True
    n_valid = int(np.prod(shape))
    n_hold = max(1, int(round(cfg.holdout_fraction * n_valid)))
    if n_valid - n_hold < 1:
        raise DataError(message(f"an image of {n_valid} pixels", "enough pixels to hold "
                                "some out", "Pass a larger image."))
    hold_flat = np.zeros(n_valid, bool)
    hold_flat[rng.choice(n_valid, size=n_hold, replace=False)] = True
    hold = np.zeros(xp.shape, bool)
    hold[tuple(slice(0, n) for n in shape)] = hold_flat.reshape(shape)
    fit = valid & ~hold
    z_np = rng.uniform(0, cfg.input_scale, size=(1, cfg.input_channels) + xp.shape)

    configure_threads()
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    ucfg = UNetConfig(ndim=x.ndim, in_channels=cfg.input_channels, out_channels=1,
                      depth=cfg.depth, base_filters=cfg.base_filters, norm=cfg.norm)
    # NHWC is faster for 2D convolutions with oneDNN (as in the training engine)
    layout = torch.channels_last if x.ndim == 2 else torch.contiguous_format
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = UNet(ucfg).to(dev, memory_format=layout)
    autocast = autocast_context(training_precision(cfg.precision, dev), dev)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed + 1)
    target = torch.from_numpy(xp)[None, None].to(dev)
    w_fit = torch.from_numpy(fit.astype(np.float32))[None, None].to(dev)
    w_hold = torch.from_numpy(hold.astype(np.float32))[None, None].to(dev)
    z = torch.from_numpy(z_np.astype(np.float32)).to(dev).contiguous(memory_format=layout)
    n_fit, n_h = float(w_fit.sum()), float(w_hold.sum())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)

    holdout_hist: list[float] = []
    fit_hist: list[float] = []
    ema = torch.zeros_like(target)
    best_loss, best_it, bad = math.inf, 0, 0
    best_out: torch.Tensor | None = None
    stopped = False
    it = 0
    net.train()
    for it in range(1, cfg.max_iterations + 1):
        zin = z
        if cfg.input_noise_std > 0:
            zin = z + cfg.input_noise_std * torch.randn(z.shape, generator=gen, device=dev)
        with autocast:
            out = net(zin)
        out = out.float()
        loss = (((out - target) ** 2) * w_fit).sum() / n_fit
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            o = out.detach()
            ema.mul_(cfg.ema_decay).add_(o, alpha=1 - cfg.ema_decay)
            avg = ema / (1 - cfg.ema_decay ** it) if cfg.ema_decay > 0 else o
            hl = float((((avg - target) ** 2) * w_hold).sum() / n_h)
        lv = float(loss.detach())
        if not (math.isfinite(lv) and math.isfinite(hl)):
            raise DataError(message(f"a non-finite loss at iteration {it}", "finite losses",
                                    "Lower learning_rate."))
        fit_hist.append(lv)
        holdout_hist.append(hl)
        if monitor is not None and it % monitor_every == 0:
            crop = avg[0, 0].float().cpu().numpy()[tuple(slice(0, n) for n in shape)]
            monitor(it, np.asarray(norm.denormalize(crop), np.float32))
        if progress is not None:
            progress(it, cfg.max_iterations)
        if it > cfg.min_iterations:
            if hl < best_loss:
                best_loss, best_it, bad = hl, it, 0
                if cfg.keep_best:
                    best_out = avg.clone()
            else:
                bad += 1
                if cfg.patience is not None and bad >= cfg.patience:
                    stopped = True
                    break
    if stopped and progress is not None:
        progress(cfg.max_iterations, cfg.max_iterations)
    with torch.no_grad():
        final = ema / (1 - cfg.ema_decay ** it) if cfg.ema_decay > 0 else out.detach()
    returned = "last"
    if cfg.keep_best and best_out is not None:
        final, returned = best_out, "best"
    if not math.isfinite(best_loss):  # stopping rule never ran (max_iterations small)
        best_loss, best_it = holdout_hist[-1], it
    res = final[0, 0].float().cpu().numpy()[tuple(slice(0, n) for n in shape)]
    restored = np.asarray(norm.denormalize(res), np.float32)
    result = DIPResult(iterations=it, best_iteration=best_it, best_holdout_loss=best_loss,
                       stopped_early=stopped, returned=returned,
                       holdout_loss=np.asarray(holdout_hist, np.float64),
                       fit_loss=np.asarray(fit_hist, np.float64))
    return restored, result


class DeepImagePrior(Method):
    """Deep Image Prior denoising [1]_ that decides itself when to stop.

    Parameters
    ----------
    config : DIPConfig, optional
    **kwargs
        Config fields, e.g. ``max_iterations=2000, patience=200``.

    Notes
    -----
    Each spatial block (each channel, time point, ...) is fitted on its own by
    :func:`deep_image_prior`; see there for the stopping rule. :meth:`fit` runs the fits
    on an image and keeps the result, which :meth:`predict` returns for the same image;
    :meth:`predict` on any other image fits again. The outcome of the last fits is in
    :attr:`last_result_` (one :class:`DIPResult` per block). There is no model to save:
    the network is specific to the image. The receptive field is the whole block, so
    tiled prediction runs whole blocks.

    Examples
    --------
    >>> dip = DeepImagePrior(max_iterations=1500)                  # doctest: +SKIP
    >>> restored = dip.fit(noisy, "YX").predict(noisy, "YX")      # doctest: +SKIP
    >>> print(dip.last_result_[0])                                # doctest: +SKIP
    stopped at iteration 731, returned best (iteration 531, held-out loss 0.01234)
    """

    name: ClassVar[str] = "dip"
    kind: ClassVar[str] = "denoise"
    Config: ClassVar[type[DIPConfig]] = DIPConfig
    summary: ClassVar[str] = "Deep Image Prior: per-image U-Net fit, self-supervised stop."
    block_progress: ClassVar[bool] = True
    config: DIPConfig

    def __init__(self, config: DIPConfig | None = None, *, device: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.device = device
        self.last_result_: list[DIPResult] = []
        self._fitted: tuple[str, np.ndarray] | None = None

    @staticmethod
    def _key(image: Any, axes: str) -> str:
        arr = np.ascontiguousarray(as_float32(image))
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{check_axes(axes)}{arr.shape}".encode())
        h.update(memoryview(arr).cast("B"))
        return h.hexdigest()

    def fit(self, image: Any, axes: str, *,
            progress: Callable[[int, int], None] | None = None) -> "DeepImagePrior":
        """Fit every spatial block of ``image`` and keep the restored image.

        Returns
        -------
        DeepImagePrior
            ``self``; :meth:`predict` on the same ``image`` and ``axes`` returns the fit.
        """
        self.last_result_ = []
        out = super().predict(image, axes, progress=progress)
        self._fitted = (self._key(image, axes), out)
        return self

    def predict(self, image: Any, axes: str, *,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Return the fitted result for the image given to :meth:`fit`, else fit ``image``.

        Returns
        -------
        ndarray, float32
            Same shape and units as ``image``.
        """
        if self._fitted is not None and self._fitted[0] == self._key(image, axes):
            if progress is not None:
                progress(1, 1)
            return self._fitted[1].copy()
        self.last_result_ = []
        return super().predict(image, axes, progress=progress)

    def predict_block(self, block: np.ndarray, axes: str, *,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Fit one ``"YX"``/``"ZYX"`` block and return the restored block (float32)."""
        restored, result = deep_image_prior(block, config=self.config, progress=progress,
                                            device=self.device)
        self.last_result_.append(result)
        return restored
