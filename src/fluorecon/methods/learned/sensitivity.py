"""Sensitivity of a trained network to small input perturbations bounded by the noise.

The review's adversarial-fragility check [1]_: if an input change no larger than the
camera noise (which the measurement cannot distinguish from another noise draw) moves the
output by much more than a random noise-sized change does, the output's details are not
determined by the data. :func:`perturbation_sensitivity` finds such a change by projected
gradient ascent [2]_ within a per-pixel box ``|delta_i| <= epsilon sigma_i`` where
``sigma_i = sqrt(a x_i + b)`` is the Poisson-Gaussian noise std of the input, and compares
the output change with that of random perturbations of the same box.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fluorecon.core.axes import check_axes, spatial_axes
from fluorecon.core.dtypes import as_float32
from fluorecon.core.errors import AxesError, ConfigError, message
from fluorecon.core.rng import SeedLike, make_rng
from fluorecon.methods.classical.denoising.noise import NoiseModel, estimate_noise_model
from fluorecon.methods.learned._base import LearnedMethod, configure_threads

__all__ = ["SensitivityResult", "perturbation_sensitivity"]


@dataclass(frozen=True)
class SensitivityResult:
    """Outcome of :func:`perturbation_sensitivity` (arrays of the block's shape, float32).

    Attributes
    ----------
    change : ndarray
        ``|f(x + delta) - f(x)|`` for the adversarial ``delta`` (output units).
    delta : ndarray
        The adversarial perturbation (input units), ``|delta| <= epsilon sigma``.
    rms_change, max_change : float
        RMS and maximum of ``change``.
    random_rms_change : float
        Mean RMS output change over random sign perturbations of the same box.
    fragility : float
        ``rms_change / random_rms_change``: how much more a worst-case noise-sized change
        moves the output than a typical one (1 for a linear filter with a symmetric box;
        large values flag outputs not determined by the data).
    relative_change : float
        ``max_change`` over the output's 0.1-99.9 percentile range.
    epsilon : float
        Box half-width in noise standard deviations.
    noise : NoiseModel
    """

    change: np.ndarray = field(repr=False)
    delta: np.ndarray = field(repr=False)
    rms_change: float
    max_change: float
    random_rms_change: float
    fragility: float
    relative_change: float
    epsilon: float
    noise: NoiseModel


def perturbation_sensitivity(method: LearnedMethod, block: Any, axes: str, *,
                             noise: NoiseModel | None = None, epsilon: float = 1.0,
                             steps: int = 10, step_fraction: float = 0.25,
                             n_random: int = 4, seed: SeedLike = 0,
                             progress: Callable[[int, int], None] | None = None
                             ) -> SensitivityResult:
    """Worst-case output change under an input perturbation within the noise level.

    Parameters
    ----------
    method : LearnedMethod
        A trained single-channel model (CARE, N2N, N2V, N2S).
    block : array_like, ``YX`` or ``ZYX``
        One input block in the training inputs' units (a crop of a large image).
    axes : str
    noise : NoiseModel, optional
        Noise model of the input (input units). Default: estimated from ``block``.
    epsilon : float
        Box half-width per pixel, in units of the noise std (``1``: one standard
        deviation).
    steps : int
        Projected-gradient (L-infinity, sign) ascent steps.
    step_fraction : float
        Step size as a fraction of the box half-width.
    n_random : int
        Random sign perturbations (at the box corners) for the baseline.
    seed : int or Generator
        Seeds the random start and the baseline.
    progress : callable, optional
        ``progress(step, steps)``.

    Returns
    -------
    SensitivityResult

    Notes
    -----
    Maximises :math:`\\|f(x + \\delta) - f(x)\\|_2^2` subject to
    :math:`|\\delta_i| \\le \\epsilon \\sigma_i` by :math:`\\delta \\leftarrow
    \\Pi(\\delta + \\eta\\,\\epsilon\\sigma \\odot \\mathrm{sign}\\nabla)`, starting from a
    corner of the box (the worst of the ``n_random`` random sign perturbations; Madry et
    al. [2]_ start at a random point) and keeping the best iterate, so the result is never
    below the random baseline's maximum. The network runs in its normalised units; the
    perturbation and the output change are reported in input and output units.

    References
    ----------
    .. [1] M. Belthangady, L. A. Royer, Nature Methods 16, 1215 (2019) (instability of
       deep reconstructions to small perturbations); V. Antun et al., "On instabilities of
       deep learning in image reconstruction", PNAS 117, 30088 (2020).
    .. [2] A. Madry et al., "Towards deep learning models resistant to adversarial
       attacks", ICLR 2018.
    """
    net, mc = method._require_trained()
    up = check_axes(axes)
    sp = spatial_axes(up)
    if up != sp or len(sp) != mc.unet.ndim or "C" in mc.axes:
        raise AxesError(message(f"axes {axes!r} for a {mc.unet.ndim}D model with axes "
                                f"{mc.axes!r}", f"one {mc.unet.ndim}D single-channel block",
                                "Pass one YX (or ZYX) block."))
    if not (epsilon > 0 and steps >= 1 and 0 < step_fraction <= 1 and n_random >= 1):
        raise ConfigError(message(f"epsilon={epsilon}, steps={steps}, step_fraction="
                                  f"{step_fraction}, n_random={n_random}",
                                  "epsilon > 0, steps >= 1, 0 < step_fraction <= 1, "
                                  "n_random >= 1", "Pass e.g. epsilon=1, steps=10."))
    x = as_float32(np.asarray(block))
    check_axes(up, ndim=x.ndim)
    nm = noise if noise is not None else estimate_noise_model(x)
    sigma = np.sqrt(np.maximum(nm.variance(x), 1e-12)).astype(np.float32)
    rng = make_rng(seed)
    configure_threads()
    dev = method._device
    lo_in, sc_in = float(mc.input_norm.lo[0]), float(mc.input_norm.scale[0])
    lo_out, sc_out = float(mc.target_norm.lo[0]), float(mc.target_norm.scale[0])
    cout = mc.unet.out_channels
    div = mc.unet.divisible_by
    pads = [(0, (-n) % div) for n in x.shape]
    mode = "reflect" if all(n > p[1] for n, p in zip(x.shape, pads)) else "symmetric"
    xpad = np.pad(x, pads, mode=mode) if any(p[1] for p in pads) else x
    crop = tuple(slice(0, n) for n in x.shape)
    tpad: list[int] = []
    for p in reversed(pads):
        tpad.extend([0, p[1]])
    x_t = torch.from_numpy(np.ascontiguousarray(xpad))[None, None].to(dev)
    box = torch.from_numpy(epsilon * sigma).to(dev)
    was_training = net.training
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)

    def run(delta: torch.Tensor) -> torch.Tensor:
        d = F.pad(delta[None, None], tpad) if any(tpad) else delta[None, None]
        xn = (x_t + d - lo_in) / sc_in
        out = net(xn)[0, :cout]
        return (out * sc_out + lo_out)[0][crop]

    try:
        with torch.no_grad():
            base = run(torch.zeros_like(box))
            rand = []
            best_start, best_rms = None, -1.0
            for _ in range(n_random):
                sgn = torch.from_numpy(rng.choice([-1.0, 1.0], size=x.shape).astype(np.float32))
                d0 = sgn.to(dev) * box
                rms0 = float(torch.sqrt(torch.mean((run(d0) - base) ** 2)))
                rand.append(rms0)
                if rms0 > best_rms:
                    best_start, best_rms = d0, rms0
        assert best_start is not None
        delta = best_start.clone().requires_grad_(True)
        best = (best_rms, best_start.clone())
        for i in range(steps):
            loss = torch.sum((run(delta) - base) ** 2)
            (grad,) = torch.autograd.grad(loss, delta)
            rms_i = float(torch.sqrt(loss.detach() / loss.new_tensor(float(x.size))))
            with torch.no_grad():
                if rms_i > best[0]:
                    best = (rms_i, delta.detach().clone())
                delta += step_fraction * box * torch.sign(grad)
                delta.copy_(torch.maximum(torch.minimum(delta, box), -box))
            if progress is not None:
                progress(i + 1, steps)
        with torch.no_grad():
            final = float(torch.sqrt(torch.mean((run(delta) - base) ** 2)))
            if final > best[0]:
                best = (final, delta.detach().clone())
            change = (run(best[1]) - base).abs().cpu().numpy().astype(np.float32)
            base_np = base.cpu().numpy()
            delta_np = best[1].cpu().numpy().astype(np.float32)
    finally:
        for p in net.parameters():
            p.requires_grad_(True)
        net.train(was_training)
    rms = float(np.sqrt(np.mean(change.astype(np.float64) ** 2)))
    rand_rms = float(np.mean(rand))
    lo, hi = np.percentile(base_np, [0.1, 99.9])
    return SensitivityResult(
        change=change, delta=delta_np, rms_change=rms, max_change=float(change.max()),
        random_rms_change=rand_rms, fragility=rms / max(rand_rms, 1e-30),
        relative_change=float(change.max() / max(hi - lo, 1e-12)), epsilon=float(epsilon),
        noise=nm)
